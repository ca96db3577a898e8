"""A Space folder read once: every file's bytes, the parsed Dockerfile, README front matter
and Python modules. Rules read only this object, so they do no I/O and are trivial to test.

Parse failures are kept, not raised: an empty Dockerfile or a README with broken YAML is
something the Space build would trip over, so it becomes a finding on that file.
"""

from __future__ import annotations

import ast
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spacetrain.dockerfile import Dockerfile
from spacetrain.errors import InputFileError
from spacetrain.inputs import read_bytes
from spacetrain.lint.globs import glob_match
from spacetrain.lint.policy import Policy
from spacetrain.yamlfile import LineDict, YamlProblem, parse_yaml

if TYPE_CHECKING:
    from spacetrain.lint.resolver import Resolution
    from spacetrain.lint.suppressions import Suppression


MAX_READ = 10 << 20  # the Hub's own threshold for large files (LFS/Xet)


@dataclass(frozen=True)
class SourceFile:
    """One file of the Space: raw bytes, and text when it is UTF-8."""

    rel: str  # relative to the Space folder, posix ("Dockerfile", "sub/x.py")
    raw: bytes
    text: str | None  # None for binary or non-UTF-8
    problem: tuple[int | None, str] | None  # (line, detail) when text is None

    @property
    def lines(self) -> list[str]:
        """The text's lines (empty for a file that is not text)."""
        return self.text.splitlines() if self.text is not None else []

    @property
    def lossy_text(self) -> str:
        """Text even for non-UTF-8 files (bad bytes replaced), for secret scanning."""
        return self.text if self.text is not None else self.raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class FrontMatter:
    """README.md's YAML block: data, or the first problem with its line."""

    data: dict[str, Any] | None
    problem: tuple[int, str] | None
    key_lines: dict[str, int] = field(default_factory=dict)
    first_line: int = 1
    last_line: int = 1  # the closing ``---``

    def line_of(self, key: str) -> int:
        """The line of ``key``, or the opening ``---`` when it is absent."""
        return self.key_lines.get(key, self.first_line)


@dataclass(frozen=True)
class PythonModule:
    """A ``.py`` file parsed with ``ast``, or why it could not be."""

    tree: ast.Module | None
    problem: tuple[int | None, str] | None


def decode(rel: str, raw: bytes) -> SourceFile:
    """Bytes to a SourceFile; NUL bytes mean binary, bad UTF-8 names its line."""
    if b"\x00" in raw:
        return SourceFile(rel, raw, None, (None, "is a binary file"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return SourceFile(rel, raw, None, (line, "is not valid UTF-8; save it as UTF-8"))
    return SourceFile(rel, raw, text.removeprefix("\ufeff"), None)


class SpaceFolder:
    """Everything rules may look at; built by :meth:`read` (the only place with I/O)."""

    def __init__(
        self,
        *,
        shown_root: str,
        files: dict[str, SourceFile],
        policy: Policy,
        resolution: Resolution | None = None,
    ) -> None:
        self.shown_root = shown_root.rstrip("/") or "."
        self.files = dict(sorted(files.items()))
        self.policy = policy
        self.resolution = resolution

    @classmethod
    def read(
        cls,
        root: str | Path,
        policy: Policy,
        *,
        shown_root: str | None = None,
        resolution: Resolution | None = None,
    ) -> SpaceFolder:
        """Read every file under ``root`` except the policy's ``files.ignore`` globs.

        Raises:
            InputFileError: ``root`` is not a folder (exit 2).
        """
        root = Path(root)
        shown = shown_root if shown_root is not None else shown_path(root)
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            raise InputFileError(shown, f"{what}; pass the Space folder (default: space/)")
        ignore = policy["files"]["ignore"]
        files: dict[str, SourceFile] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            base = Path(dirpath).relative_to(root).as_posix()
            prefix = "" if base == "." else base + "/"
            dirnames[:] = sorted(
                d for d in dirnames if not any(glob_match(prefix + d + "/x", p) for p in ignore)
            )
            for name in filenames:
                rel = prefix + name
                if any(glob_match(rel, p) for p in ignore):
                    continue
                try:  # a FIFO in the folder would block a plain open() forever
                    raw = read_bytes(Path(dirpath) / name, limit=MAX_READ + 1)
                except InputFileError as exc:
                    detail = f"cannot be read: {exc.detail}"
                    files[rel] = SourceFile(rel, b"", None, (None, detail))
                    continue
                if len(raw) > MAX_READ:  # weights or data: no Space source is this big
                    detail = f"is larger than {MAX_READ >> 20} MiB; only its start was read"
                    files[rel] = SourceFile(rel, raw[:MAX_READ], None, (None, detail))
                    continue
                files[rel] = decode(rel, raw)
        return cls(shown_root=shown, files=files, policy=policy, resolution=resolution)

    # ------------------------------------------------------------ paths

    def shown(self, rel: str) -> str:
        """The path a user (and GitHub) sees: ``space/Dockerfile``."""
        return rel if self.shown_root == "." else f"{self.shown_root}/{rel}"

    def text_of(self, rel: str) -> SourceFile | None:
        """The file, if the Space has it."""
        return self.files.get(rel)

    # ------------------------------------------------------------ parsed views

    @functools.cached_property
    def dockerfile_result(self) -> tuple[Dockerfile | None, tuple[int | None, str] | None]:
        """(parsed Dockerfile, None) or (None, (line, problem)); (None, None) when absent."""
        source = self.files.get("Dockerfile")
        if source is None:
            return None, None
        try:
            doc = Dockerfile.parse(source.raw, path=self.shown("Dockerfile"))
        except InputFileError as exc:
            return None, (exc.line, exc.detail)
        except Exception as exc:  # a parser crash is still the file's fault
            return None, (None, f"cannot be parsed: {exc}")
        if not doc.instructions:
            return None, (None, "is empty: a Docker Space needs FROM, the install steps and CMD")
        if not doc.stages:
            first = doc.instructions[0].line
            return None, (first, "has no FROM instruction: nothing to build from")
        return doc, None

    @property
    def dockerfile(self) -> Dockerfile | None:
        """The parsed Dockerfile when it exists and parses (else rules about it stay quiet)."""
        return self.dockerfile_result[0]

    @functools.cached_property
    def front_matter(self) -> FrontMatter | None:
        """README.md's YAML block; None when there is no README.md."""
        source = self.files.get("README.md")
        if source is None:
            return None
        if source.text is None:
            line, detail = source.problem or (None, "cannot be read")
            return FrontMatter(None, (line or 1, detail))
        return parse_front_matter(source.text)

    @functools.cached_property
    def python(self) -> dict[str, PythonModule]:
        """Every ``.py`` file, parsed."""
        out = {}
        for rel, source in self.files.items():
            if rel.endswith(".py"):
                out[rel] = parse_python(source)
        return out

    @functools.cached_property
    def suppressions(self) -> list[Suppression]:
        """Every ``spacetrain: ignore[...]`` comment of the Space's text files."""
        from spacetrain.lint.suppressions import parse_suppressions

        return parse_suppressions(self)

    def env(self) -> dict[str, tuple[str, int]]:
        """ENV/ARG values of the Dockerfile (name -> (value, line)); empty without one."""
        doc = self.dockerfile
        return doc.env() if doc is not None else {}


def parse_python(source: SourceFile) -> PythonModule:
    """``ast.parse`` with the failure kept as (line, message)."""
    if source.text is None:
        return PythonModule(None, source.problem)
    try:
        return PythonModule(ast.parse(source.text, filename=source.rel), None)
    except SyntaxError as exc:
        return PythonModule(None, (exc.lineno, f"does not parse as Python: {exc.msg}"))
    except ValueError as exc:  # e.g. null bytes
        return PythonModule(None, (None, f"does not parse as Python: {exc}"))


def parse_front_matter(text: str) -> FrontMatter:
    """The ``---`` YAML block at the top of a README, with each top-level key's line."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return FrontMatter(None, (1, "has no YAML front matter: start it with a --- line"))
    end = next((n for n in range(1, len(lines)) if lines[n].rstrip() == "---"), None)
    if end is None:
        return FrontMatter(None, (1, "front matter is never closed with a --- line"))
    body = "\n".join(lines[1:end])
    try:  # the Hub allows any YAML key (``1:``), so keys need not be text here
        data = parse_yaml(body, first_line=2, string_keys=False)
    except YamlProblem as exc:
        detail = f"front matter is not valid YAML: {exc.detail}"
        if not exc.syntax and "appears twice" in exc.detail:
            detail += " (the Hub rejects it)"
        return FrontMatter(None, (exc.line or 2, detail), {}, 1, end + 1)
    if not isinstance(data, LineDict):
        return FrontMatter(
            None, (2, "front matter must be a YAML mapping (key: value)"), {}, 1, end + 1
        )
    key_lines = {str(key): line for key, line in data.lines.items()}
    return FrontMatter(dict(data), None, key_lines, 1, end + 1)


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when under it (so annotations attach)."""
    try:
        rel = os.path.relpath(path.resolve(), Path.cwd().resolve())
    except ValueError:  # another drive on Windows
        return path.as_posix()
    if rel.startswith(".."):
        return path.resolve().as_posix()
    return Path(rel).as_posix()
