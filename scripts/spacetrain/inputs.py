"""What the user hands us, checked before any work: files to read, places to write, JSON.

Bad input is exit 2 with one line naming the file (and line), never a traceback and
never found only after an hour of training. Every command reads and checks through
these few functions, so the same mistake gets the same sentence everywhere:

- :func:`read_bytes` / :func:`read_text`: a regular file only (a FIFO would block
  forever, a folder is a mistake), UTF-8 with the line of the first bad byte;
- :func:`parse_json`: ``json.loads`` whose too-deep document is a ``JSONDecodeError``
  (which every caller already turns into one line), not a ``RecursionError``;
- :func:`writable_file` / :func:`writable_dir`: an output path that can be written,
  checked up front (``--report``, ``--markdown``, ``--dest``, ``--workdir``, ...);
- :func:`github_file`: ``$GITHUB_OUTPUT`` / ``$GITHUB_STEP_SUMMARY``, checked alike.

YAML (too deep, duplicate keys, alias bombs) is :mod:`spacetrain.yamlfile`'s, and what a
settings file may contain is checked by :mod:`spacetrain.schema`.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from spacetrain.errors import InputFileError, UsageError

DEFAULT_ENDPOINT = "https://huggingface.co"
ENDPOINT_ENV = "HF_ENDPOINT"
# Deeper than any file spacetrain reads; well under where Python's parsers recurse out.
MAX_JSON_DEPTH = 512

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_bytes(path: str | Path, *, limit: int | None = None) -> bytes:
    """The bytes of a regular file (at most ``limit``), refusing anything else at once.

    The file is opened non-blocking and checked with ``fstat`` before one byte is read:
    reading a FIFO nobody writes to would wait forever.

    Raises:
        InputFileError: no such file, not a regular file, or unreadable (exit 2).
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except IsADirectoryError:
        raise InputFileError(path, "is a folder; give a file") from None
    except NotADirectoryError:
        raise InputFileError(path, "no such file (a folder on its path is a file)") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise InputFileError(path, "is a folder; give a file")
        raise InputFileError(path, f"is {_kind(mode)}, not a file: give a regular file")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read() if limit is None else handle.read(limit)
        except OSError as exc:
            raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None


def decode_utf8(path: str | Path, raw: bytes) -> str:
    """``raw`` as UTF-8; a bad byte is one line naming the file and its line (exit 2)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputFileError(
            path, f"not UTF-8 text (byte {column} of the line); save it as UTF-8", line=line
        ) from None


def read_text(path: str | Path) -> str:
    """A regular file's UTF-8 text (see :func:`read_bytes` and :func:`decode_utf8`)."""
    return decode_utf8(path, read_bytes(path))


def _deep_at(text: str, limit: int) -> int:
    """The offset where ``text`` first opens its ``limit + 1``-th nested array or object."""
    depth = 0
    in_string = escaped = False
    for offset, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return offset
        elif char in "]}":
            depth -= 1
    return 0


def parse_json(text: str) -> Any:
    """``json.loads(text)``, where a document nested too deeply is a ``JSONDecodeError``.

    Python's parser recurses once per ``[`` or ``{``; a 100k-deep document (a
    fuzzer's favourite) raises ``RecursionError``, which no caller expects. As a
    ``JSONDecodeError`` it gets each caller's usual one-line message, with a line.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(
            f"nested more than {MAX_JSON_DEPTH} levels deep", text, _deep_at(text, MAX_JSON_DEPTH)
        ) from None


def check_endpoint(url: str, name: str = ENDPOINT_ENV) -> str:
    """``url`` if it is an http(s) URL with a host; otherwise exit 2 naming ``name``.

    A malformed endpoint is bad input, not an outage: without this check every call
    fails as a "connection error" and is retried until the deadline (minutes).

    Raises:
        UsageError: not ``http://`` or ``https://``, no host, a bad port or IPv6
            address, or whitespace or control characters in it (exit 2).
    """
    problem = None
    if any(c.isspace() or not c.isprintable() for c in url):
        problem = "contains whitespace or a control character"
    else:
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError for a port out of range or not a number
        except ValueError as exc:
            problem = f"is not a URL ({exc})"
        else:
            if parts.scheme not in ("http", "https"):
                problem = "must start with http:// or https://"
            elif not parts.hostname:
                problem = "has no host"
    if problem:
        raise UsageError(f"{name}={url!r} {problem}; set it to a URL like {DEFAULT_ENDPOINT}")
    return url


def sendable_token(token: str) -> bool:
    """One word of printable ASCII: what an ``Authorization`` header can carry."""
    return not any(c.isspace() or not (c.isascii() and c.isprintable()) for c in token)


def check_token(token: str, name: str) -> str:
    """``token`` if it is one word of printable ASCII; otherwise exit 2 naming ``name``,
    never the value (a header with a newline in it cannot be sent: it would only be
    retried until the deadline, then reported as "unreachable").

    Raises:
        UsageError: whitespace, a control or a non-ASCII character in the token (exit 2).
    """
    if not sendable_token(token):
        raise UsageError(
            f"{name} contains whitespace, a newline, a control character or a non-ASCII "
            "character; set it to the token alone"
        )
    return token


def check_environment() -> None:
    """Check ``HF_ENDPOINT`` before anything imports huggingface_hub: a malformed one
    (``http://[::1``) breaks that import with a traceback, in every command.

    Raises:
        UsageError: ``HF_ENDPOINT`` is set but is not an http(s) URL (exit 2).
    """
    value = os.environ.get(ENDPOINT_ENV)
    if value:
        check_endpoint(value)


def _where(flag: str, path: Path) -> str:
    """``--report out.json`` for a flag, ``GITHUB_OUTPUT=/x`` for an environment variable."""
    return f"{flag} {path}" if flag.startswith("-") else f"{flag}={path}"


def _creatable(path: Path, flag: str) -> None:
    """``path`` does not exist yet: its nearest existing ancestor must be a writable folder."""
    ancestor = path.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(
            f"{_where(flag, path)}: {ancestor} is a file, so nothing can be created under it; "
            "choose another path"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{_where(flag, path)}: cannot create anything in {ancestor}")


def writable_file(path: str | Path, flag: str) -> Path:
    """Check that the output file ``path`` (``flag`` names it) can be written, up front.

    Nothing is created: the command makes the folders when it writes, after its work.

    Raises:
        UsageError: a folder, not writable, or under a file (exit 2).
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{_where(flag, path)} is a folder; name a file")
    if os.path.lexists(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{_where(flag, path)} is not writable")
    else:
        _creatable(path, flag)
    return path


def writable_dir(path: str | Path, flag: str) -> Path:
    """Check that the output folder ``path`` exists as a writable folder or can be made.

    Raises:
        UsageError: a file, not writable, or under a file (exit 2).
    """
    path = Path(path)
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{_where(flag, path)}: the folder is not writable")
    elif os.path.lexists(path):
        raise UsageError(f"{_where(flag, path)} is a file, not a folder; name a folder")
    else:
        _creatable(path, flag)
    return path


def github_file(name: str) -> Path | None:
    """The file GitHub Actions names in ``$name`` (``GITHUB_OUTPUT``, ``GITHUB_STEP_SUMMARY``),
    checked writable; ``None`` when the variable is unset or empty.

    Raises:
        UsageError: it names a folder or an unwritable place (exit 2).
    """
    value = os.environ.get(name)
    if not value:
        return None
    return writable_file(value, name)


def append_github_file(name: str, text: str) -> None:
    """Append ``text`` to ``$name`` when it is set; a failure is one line naming it (exit 2)."""
    path = github_file(name)
    if path is None:
        return
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"{name}={path}: cannot append: {exc.strerror or exc}") from None


__all__ = [
    "DEFAULT_ENDPOINT",
    "ENDPOINT_ENV",
    "MAX_JSON_DEPTH",
    "append_github_file",
    "check_endpoint",
    "check_environment",
    "check_token",
    "decode_utf8",
    "github_file",
    "parse_json",
    "read_bytes",
    "read_text",
    "writable_dir",
    "writable_file",
]
