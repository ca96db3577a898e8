"""A Dockerfile read for policy checks: instructions, stages and pip installs, with lines.

dockerfile-parse finds the instructions; it drops comment lines inside a continued
``RUN`` and knows nothing of heredocs, so the shell text of every ``RUN`` is rebuilt
here from the physical lines. Every word keeps the physical line it came from, so a
finding about ``trl`` points at the line that holds ``trl``, not at the ``RUN``.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from spacetrain.errors import InputFileError
from spacetrain.inputs import parse_json

_HEREDOC = re.compile(r"<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ";;", "(", ")", "|&"}
_REDIRECTIONS = {">", ">>", "<", "<<", ">&", "<&", "&>", "&>>", ">|", "<>"}
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

# pip/uv options that consume the next word (so it is not taken for a requirement).
_PIP_OPTIONS_WITH_VALUE = {
    "-r", "--requirement", "-c", "--constraint", "--build-constraint", "-e", "--editable",
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-t", "--target",
    "--prefix", "--root", "--platform", "--python-version", "--implementation", "--abi",
    "--src", "--upgrade-strategy", "--progress-bar", "--cache-dir", "--trusted-host",
    "--proxy", "--timeout", "--retries", "--log", "--log-file", "--config-settings", "-C",
    "--global-option", "--no-binary", "--only-binary", "--exists-action", "--cert",
    "--client-cert", "--report", "--python", "-p", "--index-strategy", "--extra-index",
    "--index", "--default-index", "--resolution", "--prerelease", "--override",
    "--keyring-provider", "--group", "--extra", "--link-mode", "--compile-bytecode-timeout",
    "--reinstall-package", "--upgrade-package", "-P", "--no-build-isolation-package",
    "--exclude-newer", "--torch-backend", "--python-platform", "--config-file", "--excludes",
}  # fmt: skip


@dataclass(frozen=True)
class Word:
    """One shell word after quote removal, with the physical line it sits on."""

    text: str
    line: int


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction; lines are 1-based and physical."""

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
class PipRequirement:
    """One requirement given to an install command."""

    text: str
    line: int
    name: str | None  # canonical name; None for URLs, paths and unparsable text
    extras: tuple[str, ...]
    specifier: str
    pinned_version: str | None  # set only for one exact ``==``/``===`` pin without wildcard
    kind: str  # "requirement" | "url" | "path" | "file" (-r) | "editable" | "invalid" | "variable"


@dataclass(frozen=True)
class PipInstall:
    """One ``pip install`` / ``uv pip install`` invocation inside a ``RUN``."""

    line: int
    tool: str  # "pip" or "uv pip"
    requirements: tuple[PipRequirement, ...]
    index_urls: tuple[Word, ...]  # -i/--index-url/--default-index/--index
    extra_index_urls: tuple[Word, ...]
    stage: int


@dataclass(frozen=True)
class RunCommand:
    """One simple command of a ``RUN`` (split on ``&&``, ``;``, ``|``, newlines)."""

    words: tuple[Word, ...]
    instruction: Instruction
    stage: int


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
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise InputFileError(shown, f"cannot read: {exc.strerror or exc}") from None
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
            install = _as_pip_install(command)
            if install is not None:
                installs.append(install)
        return installs

    def global_args(self) -> dict[str, str]:
        """``ARG`` defaults declared before the first ``FROM`` (what ``FROM ${X}`` can use)."""
        found: dict[str, str] = {}
        for instruction in self.instructions:
            if instruction.keyword == "FROM":
                break
            if instruction.keyword == "ARG":
                found.update(_key_values(instruction.value))
        return found

    def env(self) -> dict[str, tuple[str, int]]:
        """Variables set by ``ENV``/``ARG`` defaults: name -> (value, line). Last one wins."""
        found: dict[str, tuple[str, int]] = {}
        for instruction in self.find("ENV", "ARG"):
            for name, value in _key_values(instruction.value):
                found[name] = (value, instruction.line)
        return found

    # -------------------------------------------------------------- parsing

    def _build(self) -> None:
        parser = DockerfileParser(fileobj=io.BytesIO(self.text.encode("utf-8")))
        structure = parser.structure
        stage = -1
        aliases: set[str] = set()
        i = 0
        while i < len(structure):
            item = structure[i]
            i += 1
            keyword = item["instruction"].upper()
            if keyword == "COMMENT":
                continue
            start, end = item["startline"] + 1, item["endline"] + 1
            value = item["value"]
            flags, value = _split_flags(value) if keyword in {"RUN", "COPY", "ADD"} else ((), value)
            if keyword == "FROM":
                stage += 1
                parsed = _parse_from(value, stage, start, aliases)
                if parsed is None:
                    self.problems.append((start, "FROM names no image"))
                else:
                    self.stages.append(parsed)
                    if parsed.alias:
                        aliases.add(parsed.alias.lower())
            own_end = end
            heredoc_body: list[tuple[int, str]] = []
            if keyword == "RUN":
                match = _HEREDOC.search(value)
                if match:  # dockerfile-parse reads the body as instructions: take them back
                    terminator = match.group(3)
                    while i < len(structure):
                        body = structure[i]
                        i += 1
                        for offset, text in enumerate(body["content"].splitlines()):
                            if text.strip() == terminator:
                                break
                            heredoc_body.append((body["startline"] + 1 + offset, text))
                        else:
                            continue
                        end = body["endline"] + 1
                        break
                    else:
                        self.problems.append((start, f"heredoc <<{terminator} is never closed"))
            instruction = Instruction(keyword, value, start, end, tuple(flags))
            self.instructions.append(instruction)
            if keyword == "RUN":
                self._split_run(instruction, own_end, max(stage, 0), heredoc_body)

    def _split_run(
        self,
        instruction: Instruction,
        own_end: int,
        stage: int,
        heredoc_body: list[tuple[int, str]],
    ) -> None:
        if instruction.value.lstrip().startswith("["):
            try:
                argv = parse_json(instruction.value)
            except json.JSONDecodeError:
                argv = None
            if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
                words = tuple(Word(a, instruction.line) for a in argv)
                self.commands.append(RunCommand(words, instruction, stage))
                return
        numbered = self._run_lines(instruction, own_end)
        # A heredoc body is a script: each of its lines ends a command.
        numbered += [(line, f"{text} ;") for line, text in heredoc_body]
        by_line = dict(numbered)
        last = max(by_line)
        text = "\n".join(by_line.get(n, "") for n in range(instruction.line, last + 1))
        try:
            words = _tokenize(text, first_line=instruction.line)
        except ValueError as exc:
            self.problems.append((instruction.line, f"RUN cannot be parsed as shell: {exc}"))
            return
        for command in _split_commands(words):
            self.commands.append(RunCommand(tuple(command), instruction, stage))

    def _run_lines(self, instruction: Instruction, own_end: int) -> list[tuple[int, str]]:
        """The RUN's own physical lines, keyword, flags, continuations and comments removed."""
        out = []
        for number in range(instruction.line, own_end + 1):
            text = self.lines[number - 1] if number - 1 < len(self.lines) else ""
            if number == instruction.line:
                text = re.sub(r"^\s*RUN\s*", "", text, flags=re.IGNORECASE)
                for flag in instruction.flags:
                    text = text.replace(flag, " " * len(flag), 1)
            elif text.lstrip().startswith("#"):
                text = ""  # Docker drops comment lines inside a continued instruction
            if text.rstrip().endswith("\\"):
                text = text.rstrip()[:-1]
            out.append((number, text))
        return out


# ------------------------------------------------------------------ helpers


def _tokenize(text: str, *, first_line: int) -> list[Word]:
    """Shell words with their physical lines; a bare newline becomes a ``;``."""
    # Inside a RUN, Docker has already joined continued lines, so the newlines left in
    # ``text`` are only line markers; a trailing space makes shlex end each word before
    # it counts the newline, so ``lineno`` is the word's own line.
    lexer = shlex.shlex(text.replace("\n", " \n"), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = []
    while (token := lexer.get_token()) is not None:
        words.append(Word(token, first_line + lexer.lineno - 1))
    return words


def _split_commands(words: list[Word]) -> list[list[Word]]:
    commands: list[list[Word]] = []
    current: list[Word] = []
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        if word.text in _SHELL_OPERATORS:
            if current:
                commands.append(current)
            current = []
        elif word.text in _REDIRECTIONS:
            skip_next = True  # the redirection target is not an argument
        else:
            current.append(word)
    if current:
        commands.append(current)
    return commands


def _as_pip_install(command: RunCommand) -> PipInstall | None:
    words = list(command.words)
    while words and (_ENV_ASSIGNMENT.match(words[0].text) or words[0].text in {"sudo", "env"}):
        words.pop(0)
    if not words:
        return None
    head = words[0].text.rsplit("/", 1)[-1]
    tool = None
    if re.fullmatch(r"pip(3(\.\d+)?)?", head) and len(words) > 1 and words[1].text == "install":
        tool, rest = "pip", words[2:]
    elif re.fullmatch(r"python(3(\.\d+)?)?", head):
        if [w.text for w in words[1:4]] == ["-m", "pip", "install"]:
            tool, rest = "pip", words[4:]
        elif [w.text for w in words[1:5]] == ["-m", "uv", "pip", "install"]:
            tool, rest = "uv pip", words[5:]
    elif head == "uv" and [w.text for w in words[1:3]] == ["pip", "install"]:
        tool, rest = "uv pip", words[3:]
    if tool is None:
        return None
    requirements: list[PipRequirement] = []
    index_urls: list[Word] = []
    extra_index_urls: list[Word] = []
    it = iter(rest)
    for word in it:
        text = word.text
        option, eq, inline_value = text.partition("=")
        if text.startswith("-") and option in _PIP_OPTIONS_WITH_VALUE:
            value = Word(inline_value, word.line) if eq else next(it, None)
            if value is None:
                continue
            if option in {"-r", "--requirement"}:
                requirements.append(_special(value, "file"))
            elif option in {"-e", "--editable"}:
                requirements.append(_special(value, "editable"))
            elif option in {"-i", "--index-url", "--default-index", "--index"}:
                index_urls.append(value)
            elif option in {"--extra-index-url", "--extra-index"}:
                extra_index_urls.append(value)
            continue
        if text.startswith("-"):
            continue
        requirements.append(parse_requirement(text, word.line))
    return PipInstall(
        line=command.words[0].line,
        tool=tool,
        requirements=tuple(requirements),
        index_urls=tuple(index_urls),
        extra_index_urls=tuple(extra_index_urls),
        stage=command.stage,
    )


def _special(word: Word, kind: str) -> PipRequirement:
    return PipRequirement(word.text, word.line, None, (), "", None, kind)


def parse_requirement(text: str, line: int) -> PipRequirement:
    """Classify one requirement word: a name with specifiers, a URL, a path or junk."""
    if "$" in text:
        return PipRequirement(text, line, None, (), "", None, "variable")
    if "://" in text or text.startswith("git+"):
        return PipRequirement(text, line, None, (), "", None, "url")
    if "/" in text or text.endswith((".whl", ".tar.gz", ".zip")) or text in {".", ".."}:
        return PipRequirement(text, line, None, (), "", None, "path")
    try:
        req = Requirement(text)
    except InvalidRequirement:
        return PipRequirement(text, line, None, (), "", None, "invalid")
    name = canonicalize_name(req.name)
    if req.url:
        return PipRequirement(text, line, name, tuple(sorted(req.extras)), "", None, "url")
    specs = list(req.specifier)
    pinned = None
    if len(specs) == 1 and specs[0].operator in {"==", "==="} and "*" not in specs[0].version:
        pinned = specs[0].version
    return PipRequirement(
        text, line, name, tuple(sorted(req.extras)), str(req.specifier), pinned, "requirement"
    )


def _split_flags(value: str) -> tuple[list[str], str]:
    flags = []
    rest = value.lstrip()
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.lstrip()
    return flags, rest


def _parse_from(value: str, index: int, line: int, aliases: set[str]) -> Stage | None:
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
        from_stage=reference.lower() in aliases,
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


def _key_values(value: str) -> list[tuple[str, str]]:
    try:
        words = shlex.split(value, comments=False)
    except ValueError:
        return []
    if len(words) >= 2 and "=" not in words[0]:  # legacy ``ENV NAME value``
        return [(words[0], " ".join(words[1:]))]
    pairs = []
    for word in words:
        name, eq, val = word.partition("=")
        pairs.append((name, val if eq else ""))
    return pairs
