"""Evaluation suites (``policy/evals/<adapter>.yaml``): load, validate, describe.

The format is DESIGN.md's contract. Validation is strict because a typo in a
suite silently weakens the gate: an unknown key, a case without checks, a bad
regex or a duplicate id is exit 2 with one line naming the file, the line, the
case and the field. A suite with no cases loads as an error of its own that
exits 1: there is nothing to gate on, and the gate fails closed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacetrain.errors import CheckFailed, InputFileError
from spacetrain.evaluate.checks import REGISTRY, CheckType
from spacetrain.evaluate.yamlfile import LineDict, LineList, line_of, load_yaml

ROLES = ("system", "user", "assistant")
DEFAULT_MAX_NEW_TOKENS = 48
DEFAULT_BATCH_SIZE = 8
MAX_NEW_TOKENS_LIMIT = 4096

_SUITE_KEYS = {"name", "description", "generation", "cases"}
_GENERATION_KEYS = {"max_new_tokens", "system_prompt", "batch_size"}
_CASE_KEYS = {"id", "category", "prompt", "messages", "checks", "notes"}


class EmptySuite(CheckFailed):
    """The suite has no cases: nothing to score, so the gate cannot pass (exit 1)."""


@dataclass(frozen=True)
class Check:
    """One check of a case, parsed and ready to run."""

    kind: str
    arg: Any  # as written in the suite, for reports
    parsed: Any
    line: int | None = None

    @property
    def type(self) -> CheckType:
        """The registered check type."""
        return REGISTRY[self.kind]

    def passes(self, output: str) -> bool:
        """Whether ``output`` satisfies this check."""
        return bool(self.type.test(output, self.parsed))

    def describe(self) -> str:
        """``contains: 'unity'``: how the suite wrote it, for failure lists."""
        return f"{self.kind}: {self.arg!r}"


@dataclass(frozen=True)
class Case:
    """A prompt (as chat messages) and the checks its answer must pass."""

    id: str
    category: str
    messages: tuple[dict[str, str], ...]
    checks: tuple[Check, ...]
    line: int | None = None

    @property
    def prompt(self) -> str:
        """The last user message: the question this case asks."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


@dataclass(frozen=True)
class Generation:
    """Suite-level generation settings; decoding is always greedy."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    system_prompt: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE


@dataclass(frozen=True)
class Suite:
    """A validated evaluation suite."""

    name: str
    path: str
    generation: Generation
    cases: tuple[Case, ...]
    sha256: str = ""
    categories: tuple[str, ...] = field(default=())

    def conversations(self) -> list[list[dict[str, str]]]:
        """Each case's chat, with the suite's system prompt first when it has none of its own."""
        system = self.generation.system_prompt
        out = []
        for case in self.cases:
            msgs = [dict(m) for m in case.messages]
            if system and msgs[0]["role"] != "system":
                msgs.insert(0, {"role": "system", "content": system})
            out.append(msgs)
        return out


class _Where:
    """Builds InputFileErrors that name the file, line, case and field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(
        self, detail: str, *, line: int | None, case: str | None = None, fld: str | None = None
    ) -> InputFileError:
        prefix = ""
        if case is not None:
            prefix += f"case {case!r}: "
        if fld is not None:
            prefix += f"{fld}: "
        return InputFileError(self.path, prefix + detail, line=line)


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file.

    Raises:
        InputFileError: unreadable, invalid YAML, or not the suite format (exit 2).
        EmptySuite: the suite has no cases (exit 1).
    """
    path = Path(path)
    doc = load_yaml(path)
    where = _Where(path)
    if not isinstance(doc, LineDict):
        raise where.error(
            "a suite is a mapping with 'cases' (see DESIGN.md)", line=line_of(doc, default=1)
        )
    for key in doc:
        if key not in _SUITE_KEYS:
            raise where.error(
                f"unknown key {key!r} (expected one of {', '.join(sorted(_SUITE_KEYS))})",
                line=line_of(doc, key),
            )
    name = doc.get("name", path.stem)
    if not _nonempty_str(name):
        raise where.error("'name' must be a non-empty string", line=line_of(doc, "name"))
    generation = _generation(doc.get("generation"), where, line_of(doc, "generation"))
    raw_cases = doc.get("cases")
    if raw_cases is None or (isinstance(raw_cases, LineList) and not raw_cases):
        raise EmptySuite(f"{path}: the suite has no cases, so there is nothing to gate on")
    if not isinstance(raw_cases, LineList):
        raise where.error("'cases' must be a list of cases", line=line_of(doc, "cases"))
    cases: list[Case] = []
    seen: dict[str, int | None] = {}
    for index, raw in enumerate(raw_cases):
        case = _case(raw, where, line_of(raw_cases, index), index)
        if case.id in seen:
            raise where.error(
                f"duplicate id (first at line {seen[case.id]})", line=case.line, case=case.id
            )
        seen[case.id] = case.line
        cases.append(case)
    categories = tuple(dict.fromkeys(c.category for c in cases))
    return Suite(
        name=name.strip(),
        path=str(path),
        generation=generation,
        cases=tuple(cases),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        categories=categories,
    )


def _generation(raw: Any, where: _Where, line: int | None) -> Generation:
    if raw is None:
        return Generation()
    if not isinstance(raw, LineDict):
        raise where.error("must be a mapping", line=line, fld="generation")
    for key in raw:
        if key not in _GENERATION_KEYS:
            raise where.error(
                f"unknown key {key!r} (expected one of {', '.join(sorted(_GENERATION_KEYS))})",
                line=line_of(raw, key),
                fld="generation",
            )
    values: dict[str, Any] = {}
    for key, upper in (("max_new_tokens", MAX_NEW_TOKENS_LIMIT), ("batch_size", 1024)):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
                raise where.error(
                    f"must be a whole number from 1 to {upper}, not {value!r}",
                    line=line_of(raw, key),
                    fld=f"generation.{key}",
                )
            values[key] = value
    if "system_prompt" in raw:
        value = raw["system_prompt"]
        if value is not None and not _nonempty_str(value):
            raise where.error(
                "must be a non-empty string",
                line=line_of(raw, "system_prompt"),
                fld="generation.system_prompt",
            )
        values["system_prompt"] = value
    return Generation(**values)


def _case(raw: Any, where: _Where, line: int | None, index: int) -> Case:
    if not isinstance(raw, LineDict):
        raise where.error(
            f"case #{index + 1} must be a mapping with id, category, prompt, checks", line=line
        )
    ident = raw.get("id")
    if not _nonempty_str(ident) and not isinstance(ident, int):
        raise where.error(
            f"case #{index + 1} needs an 'id' (a non-empty string)", line=line_of(raw, "id")
        )
    ident = str(ident).strip()
    for key in raw:
        if key not in _CASE_KEYS:
            raise where.error(
                f"unknown key {key!r} (expected one of {', '.join(sorted(_CASE_KEYS))})",
                line=line_of(raw, key),
                case=ident,
            )
    category = raw.get("category")
    if not _nonempty_str(category):
        raise where.error(
            "needs a non-empty string", line=line_of(raw, "category"), case=ident, fld="category"
        )
    messages = _messages(raw, where, ident)
    raw_checks = raw.get("checks")
    if not isinstance(raw_checks, LineList) or not raw_checks:
        raise where.error(
            "needs a non-empty list of checks",
            line=line_of(raw, "checks"),
            case=ident,
            fld="checks",
        )
    checks = tuple(
        _check(item, where, line_of(raw_checks, i), ident, i) for i, item in enumerate(raw_checks)
    )
    return Case(ident, category.strip(), messages, checks, line=line)


def _messages(raw: LineDict, where: _Where, ident: str) -> tuple[dict[str, str], ...]:
    has_prompt, has_messages = "prompt" in raw, "messages" in raw
    if has_prompt == has_messages:
        raise where.error("needs exactly one of 'prompt' or 'messages'", line=raw.line, case=ident)
    if has_prompt:
        prompt = raw["prompt"]
        if not _nonempty_str(prompt):
            raise where.error(
                "must be a non-empty string", line=line_of(raw, "prompt"), case=ident, fld="prompt"
            )
        return ({"role": "user", "content": prompt},)
    msgs = raw["messages"]
    if not isinstance(msgs, LineList) or not msgs:
        raise where.error(
            "must be a non-empty list of {role, content}",
            line=line_of(raw, "messages"),
            case=ident,
            fld="messages",
        )
    out: list[dict[str, str]] = []
    for i, msg in enumerate(msgs):
        fld = f"messages[{i}]"
        mline = line_of(msgs, i)
        if not isinstance(msg, LineDict) or set(msg) != {"role", "content"}:
            raise where.error(
                "must be a mapping with exactly 'role' and 'content'",
                line=mline,
                case=ident,
                fld=fld,
            )
        if msg["role"] not in ROLES:
            raise where.error(
                f"role must be one of {', '.join(ROLES)}, not {msg['role']!r}",
                line=line_of(msg, "role"),
                case=ident,
                fld=fld,
            )
        if msg["role"] == "system" and i != 0:
            raise where.error(
                "a system message may only come first", line=mline, case=ident, fld=fld
            )
        if not _nonempty_str(msg["content"]):
            raise where.error(
                "content must be a non-empty string",
                line=line_of(msg, "content"),
                case=ident,
                fld=fld,
            )
        out.append({"role": msg["role"], "content": msg["content"]})
    if out[-1]["role"] != "user":
        raise where.error(
            "the last message must be the user's: the model answers it",
            line=line_of(msgs, len(msgs) - 1),
            case=ident,
            fld="messages",
        )
    return tuple(out)


def _check(item: Any, where: _Where, line: int | None, ident: str, index: int) -> Check:
    fld = f"checks[{index}]"
    if not isinstance(item, LineDict) or len(item) != 1:
        raise where.error(
            'each check is a one-key mapping such as `- contains: "unity"`',
            line=line,
            case=ident,
            fld=fld,
        )
    ((kind, arg),) = item.items()
    if kind not in REGISTRY:
        raise where.error(
            f"unknown check type {kind!r} (known: {', '.join(sorted(REGISTRY))})",
            line=line,
            case=ident,
            fld=fld,
        )
    try:
        parsed = REGISTRY[kind].parse(arg)
    except ValueError as exc:
        raise where.error(f"{kind} {exc}", line=line, case=ident, fld=fld) from None
    plain = list(arg) if isinstance(arg, list) else arg
    return Check(kind, plain, parsed, line=line)


__all__ = ["Case", "Check", "EmptySuite", "Generation", "Suite", "load_suite"]
