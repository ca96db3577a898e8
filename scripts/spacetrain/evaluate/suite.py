"""Evaluation suites (``policy/evals/<adapter>.yaml``): load, validate, describe.

The format is DESIGN.md's contract. Validation is strict because a typo in a
suite silently weakens the gate: an unknown key, a case without checks, a bad
regex or a duplicate id is exit 2 with one line naming the file, the line, the
case and the field. A suite with no cases loads as an error of its own that
exits 1: there is nothing to gate on, and the gate fails closed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacetrain import schema
from spacetrain.errors import CheckFailed
from spacetrain.evaluate.checks import REGISTRY, CheckType
from spacetrain.yamlfile import load_yaml

ROLES = ("system", "user", "assistant")
DEFAULT_MAX_NEW_TOKENS = 48
DEFAULT_BATCH_SIZE = 8
MAX_NEW_TOKENS_LIMIT = 4096


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


def _case_id(value: Any) -> str:
    """A case id: a non-empty string, or a number (``id: 7``) read as its text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, not {schema.shown(value)}")
    return value.strip()


def _check_types() -> schema.Table:
    """A check: a one-key mapping whose key is a registered type and whose value its
    parser accepts (the parser's own words say what is wrong)."""
    return schema.Table(
        tuple(schema.Field(name, schema.Custom(kind.parse)) for name, kind in REGISTRY.items()),
        what='a one-key mapping such as `- contains: "unity"`',
        noun="check type",
        single=True,
    )


_MESSAGE = schema.Table(
    (
        schema.Field("role", schema.Text(choices=ROLES), required=True),
        schema.Field("content", schema.Text(), required=True),
    ),
    what="a mapping with 'role' and 'content'",
)


def suite_schema() -> schema.Table:
    """DESIGN.md's suite contract, as a table (check types come from the registry)."""
    case = schema.Table(
        (
            schema.Field(
                "id", schema.Custom(_case_id), required=True, hint="give each case a unique id"
            ),
            schema.Field("category", schema.Text(), required=True, hint="add category: <name>"),
            schema.Field("prompt", schema.Text()),
            schema.Field(
                "messages",
                schema.Items(_MESSAGE, nonempty=True, what="a non-empty list of {role, content}"),
            ),
            schema.Field(
                "checks",
                schema.Items(_check_types(), nonempty=True, what="a non-empty list of checks"),
                required=True,
                hint='add checks: [contains: "..."]',
            ),
            schema.Field("notes", schema.Anything()),
        ),
        what="a mapping with id, category, prompt, checks",
        one_of=(("prompt", "messages"),),
    )
    generation = schema.Table(
        (
            schema.Field(
                "max_new_tokens",
                schema.Number(low=1, high=MAX_NEW_TOKENS_LIMIT, whole=True),
                default=DEFAULT_MAX_NEW_TOKENS,
            ),
            schema.Field("system_prompt", schema.Nullable(schema.Text()), default=None),
            schema.Field(
                "batch_size",
                schema.Number(low=1, high=1024, whole=True),
                default=DEFAULT_BATCH_SIZE,
            ),
        )
    )
    return schema.Table(
        (
            schema.Field("name", schema.Text()),
            schema.Field("description", schema.Anything()),
            schema.Field("generation", schema.Nullable(generation, label="a mapping")),
            schema.Field(
                "cases",
                schema.Nullable(
                    schema.Items(case, what="a list of cases"), label="a list of cases"
                ),
            ),
        ),
        what="a mapping with 'cases'",
        hint="see DESIGN.md 'Evaluation suite and gate files'",
    )


def _namer(doc: Any) -> Callable[[tuple[Any, ...]], str]:
    """Name entries under ``cases`` by the case's id: ``case 'umoja': checks[1]``."""

    def name(at: tuple[Any, ...]) -> str:
        if len(at) < 2 or at[0] != "cases" or not isinstance(at[1], int):
            return schema.dotted(at)
        raw = doc["cases"][at[1]]
        ident = raw.get("id") if isinstance(raw, dict) else None
        try:
            label = f"case {_case_id(ident)!r}"
        except ValueError:
            label = f"case #{at[1] + 1}"
        return f"{label}: {schema.dotted(at[2:])}" if len(at) > 2 else label

    return name


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file.

    Raises:
        InputFileError: unreadable, invalid YAML, or not the suite format (exit 2).
        EmptySuite: the suite has no cases (exit 1).
    """
    path = Path(path)
    raw = load_yaml(path)
    doc = schema.Document(str(path), raw, root="the suite", name=_namer(raw))
    data = doc.validate(suite_schema())
    if not data.get("cases"):
        raise EmptySuite(f"{path}: the suite has no cases, so there is nothing to gate on")
    cases: list[Case] = []
    seen: dict[str, int | None] = {}
    for index, case in enumerate(data["cases"]):
        at = ("cases", index)
        line = doc.line_of(at)
        if case["id"] in seen:
            doc.fail(at, f"duplicate id (first at line {seen[case['id']]})", "ids must be unique")
        seen[case["id"]] = line
        messages = _messages(doc, at, case)
        checks = []
        for n, check in enumerate(case["checks"]):
            ((kind, parsed),) = check.items()
            arg = raw["cases"][index]["checks"][n][kind]
            plain = list(arg) if isinstance(arg, list) else arg
            checks.append(Check(kind, plain, parsed, line=doc.line_of((*at, "checks", n))))
        cases.append(Case(case["id"], case["category"].strip(), messages, tuple(checks), line))
    generation = data.get("generation") or {}
    return Suite(
        name=data.get("name", path.stem).strip(),
        path=str(path),
        generation=Generation(**generation),
        cases=tuple(cases),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        categories=tuple(dict.fromkeys(c.category for c in cases)),
    )


def _messages(
    doc: schema.Document, at: tuple[Any, ...], case: dict[str, Any]
) -> tuple[dict[str, str], ...]:
    """The case's chat; a system message only first, the user's last (the model answers it)."""
    if "prompt" in case:
        return ({"role": "user", "content": case["prompt"]},)
    msgs = case["messages"]
    for i, msg in enumerate(msgs):
        if msg["role"] == "system" and i != 0:
            doc.fail((*at, "messages", i), "a system message may only come first")
    if msgs[-1]["role"] != "user":
        doc.fail(
            (*at, "messages"),
            "the last message must be the user's: the model answers it",
            line_at=(*at, "messages", len(msgs) - 1),
        )
    return tuple({"role": m["role"], "content": m["content"]} for m in msgs)


__all__ = ["Case", "Check", "EmptySuite", "Generation", "Suite", "load_suite"]
