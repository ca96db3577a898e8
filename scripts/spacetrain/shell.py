"""A RUN's shell text turned into simple commands, each word on its physical line.

tree-sitter-bash parses the text (if/for/while/case, subshells, ``{ }``, pipelines,
``&&``/``||``, redirections, heredocs, ``$(…)``): splitting words by hand read
``2>&1`` as a package and missed installs after ``then``/``do``. The parser is
error-tolerant, so a construct it does not know costs that construct, not the RUN.
The caller passes the physical line of every row of the text, so a finding about a
word points at the Dockerfile line that holds it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache

import tree_sitter
import tree_sitter_bash

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash"})
_ARG_NODES = frozenset({
    "word", "string", "raw_string", "concatenation", "number", "simple_expansion",
    "expansion", "command_substitution", "ansi_c_string", "translated_string",
    "process_substitution", "arithmetic_expansion",
})  # fmt: skip
_CONTINUATION = re.compile(r"\\\r?\n")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_IN_DOUBLE_QUOTES = re.compile(r"\\([$`\"\\])")
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Wrappers that run the command after their own options: option -> takes a value.
_WRAPPERS: dict[str, frozenset[str]] = {
    "sudo": frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T", "-R"}),
    "env": frozenset({"-u", "-C", "-S", "--unset", "--chdir", "--split-string"}),
    "exec": frozenset({"-a"}),
    "nice": frozenset({"-n", "--adjustment"}),
    "nohup": frozenset(),
    "time": frozenset({"-f", "-o"}),
    "command": frozenset(),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
    "timeout": frozenset({"-s", "--signal", "-k", "--kill-after"}),
    "xargs": frozenset({"-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--delimiter"}),
}


@dataclass(frozen=True)
class Word:
    """One shell word after quote removal, with the physical line it sits on."""

    text: str
    line: int


@dataclass(frozen=True)
class SimpleCommand:
    """One simple command: its words (redirections removed) and the data fed to it."""

    words: tuple[Word, ...]
    stdin: tuple[Word, ...] = ()  # heredoc body lines given to the command (data)


@cache
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bash.language()))


def parse(text: str, rows: Sequence[int]) -> tuple[list[SimpleCommand], bool]:
    """Simple commands of ``text`` (row i lies on physical line ``rows[i]``), in order.

    The flag says whether the parser met an error (an unterminated quote, or shell
    it does not know); the commands around the error are still returned.
    """
    tree = _parser().parse(text.encode("utf-8"))
    lines = list(rows) or [1]
    out: list[SimpleCommand] = []
    _walk(tree.root_node, lines, out)
    return out, tree.root_node.has_error


def unwrap(words: Sequence[Word]) -> tuple[Word, ...]:
    """The command a wrapper runs: ``A=1 sudo -H env B=2 exec pip …`` -> ``pip …``."""
    rest = list(words)
    while rest:
        if _ENV_ASSIGNMENT.match(rest[0].text):
            rest.pop(0)
            continue
        head = rest[0].text.rsplit("/", 1)[-1]
        if head not in _WRAPPERS:
            break
        takes_value = _WRAPPERS[head]
        rest.pop(0)
        while rest and rest[0].text.startswith("-") and rest[0].text != "-":
            option = rest.pop(0).text
            if option == "--":
                break
            if option in takes_value and rest:
                rest.pop(0)
        if head == "timeout" and rest:
            rest.pop(0)  # the duration
    return tuple(rest)


def shell_script(words: Sequence[Word]) -> Word | None:
    """The script of ``sh -c 'script'`` / ``bash -ec "…"``, else None."""
    if not words or words[0].text.rsplit("/", 1)[-1] not in SHELLS:
        return None
    for index, word in enumerate(words[1:], start=1):
        text = word.text
        if text.startswith("-") and not text.startswith("--") and "c" in text[1:]:
            return words[index + 1] if index + 1 < len(words) else None
        if not text.startswith("-"):
            return None
    return None


def reads_script_from_stdin(words: Sequence[Word]) -> bool:
    """``bash``, ``sh -ex``, ``bash -s``: a heredoc given to it is a shell script."""
    if not words or words[0].text.rsplit("/", 1)[-1] not in SHELLS:
        return False
    return all(w.text.startswith("-") and "c" not in w.text for w in words[1:])


# ------------------------------------------------------------------ tree walk


def _walk(node: tree_sitter.Node, lines: list[int], out: list[SimpleCommand]) -> None:
    if node.type == "command":
        _command(node, (), (), lines, out)
        return
    if node.type == "redirected_statement":
        body = node.child_by_field_name("body")
        extra: list[Word] = []
        stdin: list[Word] = []
        for child in node.children:
            if child is body:
                continue
            _redirect(child, lines, extra, stdin, out)
        if body is not None and body.type == "command":
            _command(body, tuple(extra), tuple(stdin), lines, out)
        elif body is not None:
            _walk(body, lines, out)
        return
    for child in node.children:
        _walk(child, lines, out)


def _redirect(
    node: tree_sitter.Node,
    lines: list[int],
    extra: list[Word],
    stdin: list[Word],
    out: list[SimpleCommand],
) -> None:
    """A redirection's target is no argument; words after it are (``2>&1 pkg``)."""
    if node.type == "heredoc_body":
        first = lines[min(node.start_point[0], len(lines) - 1)]
        text = node.text.decode("utf-8", "replace") if node.text else ""
        stdin.extend(Word(t, first + i) for i, t in enumerate(text.splitlines()))
        return
    if node.type not in {"file_redirect", "heredoc_redirect", "herestring_redirect"}:
        return
    seen_target = False
    for child in node.children:
        if child.type in {"file_redirect", "heredoc_body"}:
            _redirect(child, lines, extra, stdin, out)
        elif child.type in _ARG_NODES and node.type == "file_redirect":
            if child.type in {"command_substitution", "process_substitution"}:
                _walk(child, lines, out)
            if seen_target:
                extra.append(_word(child, lines))
            seen_target = True


def _command(
    node: tree_sitter.Node,
    extra: tuple[Word, ...],
    stdin: tuple[Word, ...],
    lines: list[int],
    out: list[SimpleCommand],
) -> None:
    words: list[Word] = []
    last_end = -1
    for child in node.children:
        if child.type == "variable_assignment":
            words.append(_word(child, lines))
        elif child.type == "command_name":
            words.append(_word(child.children[0] if child.children else child, lines))
        elif child.type in _ARG_NODES:
            word = _word(child, lines)
            if words and child.start_byte == last_end:  # .[$A,$B]: one word, two nodes
                words[-1] = Word(words[-1].text + word.text, words[-1].line)
            else:
                words.append(word)
        elif child.type in {"file_redirect", "herestring_redirect", "heredoc_redirect"}:
            more: list[Word] = []
            data: list[Word] = []
            _redirect(child, lines, more, data, out)
            words.extend(more)
            stdin = (*stdin, *data)
        last_end = child.end_byte
        if child.type in {"command_substitution", "process_substitution", "string",
                          "concatenation"}:  # fmt: skip
            for inner in _substitutions(child):
                _walk(inner, lines, out)
    words.extend(extra)
    if not words:
        return
    out.append(SimpleCommand(tuple(words), stdin))
    argv = unwrap(words)
    script = shell_script(argv)
    if script is not None:
        out.extend(_nested(script.text, script.line))
    elif stdin and reads_script_from_stdin(argv):
        out.extend(_nested("\n".join(w.text for w in stdin), stdin[0].line))


def _nested(text: str, first_line: int) -> list[SimpleCommand]:
    commands, _error = parse(text, range(first_line, first_line + text.count("\n") + 1))
    return commands


def _substitutions(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    if node.type in {"command_substitution", "process_substitution"}:
        yield from node.children
        return
    for child in node.children:
        yield from _substitutions(child)


def _word(node: tree_sitter.Node, lines: list[int]) -> Word:
    row = min(node.start_point[0], len(lines) - 1)
    return Word(_unquote(node), lines[row])


def _unquote(node: tree_sitter.Node) -> str:
    """The word as the shell passes it on: quotes and escapes removed, ``$`` kept."""
    raw = _CONTINUATION.sub("", node.text.decode("utf-8", "replace") if node.text else "")
    kind = node.type
    if kind == "raw_string":
        return raw[1:-1]
    if kind == "string":
        return _IN_DOUBLE_QUOTES.sub(r"\1", raw[1:-1])
    if kind == "ansi_c_string":
        return raw[2:-1]
    if kind == "concatenation":
        return "".join(_unquote(c) for c in node.children)
    if kind in {"word", "number"}:
        return _ESCAPED.sub(r"\1", raw)
    if kind == "variable_assignment":
        name = node.child_by_field_name("name")
        value = node.child_by_field_name("value")
        left = name.text.decode() if name is not None and name.text else ""
        return f"{left}={_unquote(value) if value is not None else ''}"
    return raw
