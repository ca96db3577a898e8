"""A Dockerfile read the way Docker reads it: instructions, stages, RUN commands, lines.

Docker's own rules, not a general-purpose parser: a line ending in the escape character
continues the instruction, blank and comment lines inside a continuation are dropped,
BuildKit flags (``--mount=…``) may sit on any continued line, and a heredoc (``<<EOF``)
takes the following lines up to its terminator: a shell script for ``RUN``, data for
``COPY``/``ADD`` (never instructions). The shell text of a ``RUN`` goes to
:mod:`spacetrain.shell` with the physical line of every row, so a finding about
``trl`` points at the line that holds ``trl``, not at the ``RUN``.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from spacetrain import shell
from spacetrain.errors import InputFileError
from spacetrain.inputs import parse_json, read_bytes
from spacetrain.pipcli import PipInstall, PipRequirement, parse_requirement, pip_install
from spacetrain.shell import Word

__all__ = [
    "Dockerfile",
    "Instruction",
    "PipInstall",
    "PipRequirement",
    "RunCommand",
    "Stage",
    "Word",
    "expand",
    "parse_requirement",
    "split_reference",
]

# Not after a word character or "<": $((1<<2)) and <<<"here-string" are no heredocs.
_HEREDOC = re.compile(r"(?<![\w<])<<(-?)([\"']?)([A-Za-z0-9_.-]+)\2")
_DIRECTIVE = re.compile(r"^#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$")
_FLAGGED = {"RUN", "COPY", "ADD"}
_LEADING_HEREDOC = re.compile(r"^\s*(<<-?([\"']?)[A-Za-z0-9_.-]+\2)\s+(\S.*)$")
_VAR = re.compile(
    r"\$(?:\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-+])(?P<word>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction; lines are 1-based and physical (heredoc bodies included)."""

    keyword: str
    value: str
    line: int
    end_line: int
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    """A ``FROM``: the image reference split into its parts."""

    index: int
    line: int
    reference: str
    image: str
    tag: str | None
    digest: str | None
    alias: str | None
    from_stage: bool  # FROM <an earlier stage's alias>
    has_variable: bool  # FROM ${BASE}: unknown until build time


@dataclass(frozen=True)
class RunCommand:
    """One simple command of a ``RUN`` (inside ``&&``, ``if``, ``for``, ``$(…)``, ``sh -c``)."""

    words: tuple[Word, ...]
    instruction: Instruction
    stage: int
    stdin: tuple[Word, ...] = ()  # a heredoc body fed to the command: data, not shell

    @property
    def argv(self) -> tuple[Word, ...]:
        """The command a wrapper runs (``A=1 sudo -H pip …`` -> ``pip …``)."""
        return shell.unwrap(self.words)


@dataclass(frozen=True)
class _Raw:
    """One instruction as Docker's reader sees it, before its keyword is interpreted."""

    rows: list[tuple[int, str]]  # its own physical lines, escape character removed
    end: int
    heredocs: list[list[tuple[int, str]]]  # each body with its terminator line last


@dataclass
class Dockerfile:
    """A parsed Dockerfile. ``problems`` holds what could not be parsed, with lines."""

    path: str
    text: str
    lines: list[str]
    instructions: list[Instruction] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    commands: list[RunCommand] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: str | Path, *, display: str | None = None) -> Dockerfile:
        """Read and parse ``path``; unreadable or non-UTF-8 is an :class:`InputFileError`."""
        shown = display or str(path)
        try:
            raw = read_bytes(path)  # a FIFO is refused at once, never waited on
        except InputFileError as exc:
            raise InputFileError(shown, exc.detail) from None
        return cls.parse(raw, path=shown)

    @classmethod
    def parse(cls, raw: bytes | str, *, path: str = "Dockerfile") -> Dockerfile:
        """Parse Dockerfile text; raises :class:`InputFileError` for binary or non-UTF-8 input."""
        if isinstance(raw, bytes):
            if b"\x00" in raw:
                raise InputFileError(path, "is a binary file, not a Dockerfile")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = raw[: exc.start].count(b"\n") + 1
                raise InputFileError(
                    path, "is not valid UTF-8; save it as UTF-8", line=line
                ) from None
        else:
            text = raw
        text = text.removeprefix("\ufeff")
        doc = cls(path=path, text=text, lines=text.splitlines())
        doc._build()
        return doc

    # -------------------------------------------------------------- queries

    def find(self, *keywords: str) -> list[Instruction]:
        """Instructions whose keyword is one of ``keywords`` (upper case), in order."""
        wanted = {k.upper() for k in keywords}
        return [i for i in self.instructions if i.keyword in wanted]

    def pip_installs(self) -> list[PipInstall]:
        """Every pip/uv pip install of every ``RUN``, in file order."""
        installs = []
        for command in self.commands:
            install = pip_install(command.words, command.stage)
            if install is not None:
                installs.append(install)
        return installs

    def global_args(self) -> dict[str, str | None]:
        """``ARG``s declared before the first ``FROM`` (what ``FROM ${X}`` can use).

        ``ARG X=""`` is an empty default (``""``); ``ARG X`` has none (None).
        """
        found: dict[str, str | None] = {}
        for instruction in self.instructions:
            if instruction.keyword == "FROM":
                break
            if instruction.keyword == "ARG":
                found.update(_key_values(instruction.value))
        return found

    def scope(self, line: int) -> dict[str, str | None]:
        """Variables an instruction at ``line`` sees: its stage's ARG/ENV before it.

        ``ARG X`` inside a stage takes the global default, as Docker does.
        """
        global_args = self.global_args()
        found: dict[str, str | None] = {}
        for instruction in self.instructions:
            if instruction.line >= line:
                break
            if instruction.keyword == "FROM":
                found = {}
            elif instruction.keyword in {"ARG", "ENV"} and self.stages:
                if instruction.line < self.stages[0].line:
                    continue
                for name, value in _key_values(instruction.value):
                    if instruction.keyword == "ENV":
                        value = expand(value or "", found) or value
                    elif value is None:
                        value = found.get(name, global_args.get(name))
                    else:
                        value = expand(value, found) or value
                    found[name] = value
        return found

    def env(self) -> dict[str, tuple[str, int]]:
        """Variables set by ``ENV``/``ARG`` defaults: name -> (value, line). Last one wins."""
        found: dict[str, tuple[str, int]] = {}
        for instruction in self.find("ENV", "ARG"):
            for name, value in _key_values(instruction.value):
                found[name] = (value or "", instruction.line)
        return found

    # -------------------------------------------------------------- parsing

    def _build(self) -> None:
        stage = -1
        aliases: set[str] = set()
        for raw in _read_instructions(self.lines):
            first = raw.rows[0]
            word = first[1].split(None, 1)[0]
            keyword = word.upper()
            rows = [(first[0], first[1].lstrip()[len(word) :]), *raw.rows[1:]]
            flags: list[str] = []
            if keyword in _FLAGGED:
                rows = _take_flags(rows, flags)
            value = "".join(text for _, text in rows).strip()
            line = raw.rows[0][0]
            if keyword in _FLAGGED and not raw.heredocs and _HEREDOC.search(value):
                self.problems.append((line, "heredoc is never closed"))
            instruction = Instruction(keyword, value, line, raw.end, tuple(flags))
            self.instructions.append(instruction)
            if keyword == "FROM":
                stage += 1
                parsed = _parse_from(value, stage, line, aliases, self.global_args())
                if parsed is None:
                    self.problems.append((line, "FROM names no image"))
                else:
                    self.stages.append(parsed)
                    if parsed.alias:
                        aliases.add(parsed.alias.lower())
            elif keyword == "RUN":
                self._split_run(instruction, rows, raw.heredocs, max(stage, 0))

    def _split_run(
        self,
        instruction: Instruction,
        rows: list[tuple[int, str]],
        heredocs: list[list[tuple[int, str]]],
        stage: int,
    ) -> None:
        if instruction.value.startswith("[") and not heredocs:
            argv = _exec_form(instruction.value)
            if argv is not None:
                words = tuple(Word(a, instruction.line) for a in argv)
                self.commands.append(RunCommand(words, instruction, stage))
                return
        rows = [(n, t) for n, t in rows if t.strip() or n == rows[0][0]] or rows[:1]
        lead = _LEADING_HEREDOC.match(rows[0][1])
        if lead and heredocs:  # RUN <<EOT bash: the shell's ``bash <<EOT``
            rows[0] = (rows[0][0], f"{lead.group(3)} {lead.group(1)}")
        if heredocs and re.fullmatch(r"\s*<<-?([\"']?)[A-Za-z0-9_.-]+\1\s*", rows[0][1]):
            rows, heredocs = heredocs[0][:-1], heredocs[1:]  # RUN <<EOF: the body is the script
            text = "\n".join(t for _, t in rows)
        else:
            text = "\\\n".join(t for _, t in rows)
        numbers = [n for n, _ in rows]
        for body in heredocs:
            text += "\n" + "\n".join(t for _, t in body)
            numbers += [n for n, _ in body]
        commands, error = shell.parse(text + "\n", numbers or [instruction.line])
        if error and _unbalanced(text):
            self.problems.append(
                (instruction.line, "RUN cannot be parsed as shell: no closing quotation")
            )
        for command in commands:
            self.commands.append(RunCommand(command.words, instruction, stage, command.stdin))


# ------------------------------------------------------------------ helpers


def _read_instructions(lines: list[str]) -> list[_Raw]:
    """Docker's reader: directives, continuations (blank/comment lines dropped), heredocs."""
    escape = "\\"
    i = 0
    while i < len(lines):  # parser directives: only at the very top
        match = _DIRECTIVE.match(lines[i].strip())
        if not match:
            break
        if match.group(1).lower() == "escape" and match.group(2) in {"`", "\\"}:
            escape = match.group(2)
        i += 1
    out: list[_Raw] = []
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        rows: list[tuple[int, str]] = []
        while True:
            text = lines[i].rstrip()
            continued = text.endswith(escape)
            rows.append((i + 1, text[:-1] if continued else text))
            i += 1
            if not continued:
                break
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1  # Docker drops blank and comment lines inside a continuation
            if i >= len(lines):
                break
        end = rows[-1][0]
        keyword = rows[0][1].split(None, 1)[0].upper() if rows[0][1].split() else ""
        heredocs: list[list[tuple[int, str]]] = []
        if keyword in _FLAGGED:
            for match in _HEREDOC.finditer(" ".join(t for _, t in rows)):
                strip_tabs, terminator = match.group(1) == "-", match.group(3)
                body: list[tuple[int, str]] = []
                while i < len(lines):
                    text = lines[i]
                    body.append((i + 1, text))
                    i += 1
                    if (text.lstrip("\t") if strip_tabs else text).rstrip("\r") == terminator:
                        heredocs.append(body)
                        end = body[-1][0]
                        break
                else:
                    break  # never closed: _build reports it
        out.append(_Raw(rows, end, heredocs))
    return out


def _take_flags(rows: list[tuple[int, str]], flags: list[str]) -> list[tuple[int, str]]:
    """Remove leading ``--flag`` words, on whichever continued line they sit."""
    rows = list(rows)
    while rows:
        number, text = rows[0]
        stripped = text.lstrip()
        if not stripped:
            if len(rows) == 1:
                break
            rows.pop(0)
            continue
        if not stripped.startswith("--"):
            rows[0] = (number, " " * (len(text) - len(stripped)) + stripped)
            break
        flag, _, rest = stripped.partition(" ")
        flag, tab, after = flag.partition("\t")
        flags.append(flag)
        rows[0] = (number, after + tab + rest if tab else rest)
    return rows


def _unbalanced(text: str) -> bool:
    """A quote left open: the one shell error Docker's build would always hit."""
    try:
        shlex.split(_HEREDOC_BODY.sub("", text), comments=True)
    except ValueError:
        return True
    return False


_HEREDOC_BODY = re.compile(r"<<-?[\"']?(\w+)[\"']?.*?\n.*?^\s*\1$", re.S | re.M)


def _exec_form(value: str) -> list[str] | None:
    try:
        argv = parse_json(value)
    except json.JSONDecodeError:
        return None
    if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
        return argv
    return None


def expand(text: str, variables: dict[str, str | None]) -> str | None:
    """Docker's ``$X``/``${X}``/``${X:-w}``/``${X-w}``/``${X:+w}`` expansion; None when a
    variable is unknown (not declared, or declared without a default)."""
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group("name") or match.group("bare")
        op, word = match.group("op"), match.group("word") or ""
        value = variables.get(name)
        if op in {":-", "-"}:
            use_word = value is None or (op == ":-" and value == "")
            return word if use_word else str(value)
        if op in {":+", "+"}:
            return word if value is not None and (op == "+" or value) else ""
        if value is None:
            missing = True
            return ""
        return value

    filled = _VAR.sub(fill, text)
    return None if missing else filled


def _parse_from(
    value: str, index: int, line: int, aliases: set[str], args: dict[str, str | None]
) -> Stage | None:
    words = [w for w in value.split() if not w.startswith("--")]
    if not words:
        return None
    reference = words[0]
    alias = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
    image, tag, digest = split_reference(reference)
    return Stage(
        index=index,
        line=line,
        reference=reference,
        image=image,
        tag=tag,
        digest=digest,
        alias=alias,
        # FROM ${PLATFORM} with ARG PLATFORM=xpu, an earlier stage: a stage, not an image
        from_stage=(expand(reference, args) or reference).lower() in aliases,
        has_variable="$" in reference,
    )


def split_reference(reference: str) -> tuple[str, str | None, str | None]:
    """``repo/image:tag@digest`` -> (``repo/image``, tag or None, digest or None)."""
    digest = None
    rest = reference
    if "@" in rest:
        rest, digest = rest.split("@", 1)
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        image, tag = rest.rsplit(":", 1)
    else:
        image = rest
    return image, tag, digest


def _key_values(value: str) -> list[tuple[str, str | None]]:
    """``ARG A=1 B`` / ``ENV A=1 B="x y"`` / legacy ``ENV A 1``: (name, value or None)."""
    try:
        words = shlex.split(value, comments=False)
    except ValueError:
        return []
    if len(words) >= 2 and "=" not in words[0]:  # legacy ``ENV NAME value``
        return [(words[0], " ".join(words[1:]))]
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        name, eq, val = word.partition("=")
        pairs.append((name, val if eq else None))
    return pairs
