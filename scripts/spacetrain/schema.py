"""The one validator of settings files: a schema is a table, and one walk checks a document.

The project config (``[tool.spacetrain]``), the lint policy, the gate and evaluation
suites each declare what they accept as data (:class:`Table` of :class:`Field`, with
types, ranges, choices, defaults and a hint), and :meth:`Document.validate` walks the
loaded document against it. Every problem is one :class:`InputFileError` (exit 2):

    FILE:LINE: WHERE: what is wrong; what to do

``WHERE`` names the entry (``thresholds.overall``, ``case 'a': checks[0]``); an unknown
key gets a did-you-mean. Checks that are not schema-shaped (a case id used twice, a
rule id the registry lacks) stay with their file's loader and report through
:meth:`Document.fail`, so they read the same.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from spacetrain.errors import InputFileError
from spacetrain.yamlfile import LineDict, LineList

Path_ = tuple[Any, ...]  # keys and list indexes from the document's root
_ABSENT: Any = object()


class _Reject(Exception):
    """Raised by a spec: ``problem`` (and ``hint``) for the entry at ``at``."""

    def __init__(
        self, at: Path_, problem: str, hint: str = "", line_at: Path_ | None = None
    ) -> None:
        super().__init__(problem)
        self.at, self.problem, self.hint = at, problem, hint
        self.line_at = at if line_at is None else line_at


def shown(value: Any) -> str:
    """A value as an error shows it: ``'text'``, ``75``, ``true``, ``null``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, int) and value.bit_length() > 128:  # repr() has a digit limit
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word: Any, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a close match, else nothing."""
    close = difflib.get_close_matches(str(word), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _or(words: Sequence[str]) -> str:
    quoted = [repr(w) for w in words]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


# ------------------------------------------------------------------------ specs


class Spec:
    """What one value must be. :meth:`fits` says whether it has the right type (and range);
    :meth:`convert` checks the rest and returns the value to keep; :meth:`describe` reads
    after "must be" in the error."""

    what = "a value"
    hint = ""

    def fits(self, value: Any) -> bool:
        """Whether ``value`` has this spec's type (and, for scalars, range)."""
        return True

    def convert(self, value: Any, at: Path_) -> Any:
        """A fitting ``value`` checked further and converted; raises :class:`_Reject`."""
        return value

    def describe(self) -> str:
        """What a value must be, as a phrase ("a number from 0 to 1")."""
        return self.what

    def check(self, value: Any, at: Path_) -> Any:
        """``value`` (at ``at``) checked and converted; raises :class:`_Reject`."""
        if not self.fits(value):
            raise _Reject(at, f"must be {self.describe()}, not {shown(value)}", self.hint)
        return self.convert(value, at)


@dataclass(frozen=True)
class Anything(Spec):
    """Any value, kept as written (free-text notes)."""


@dataclass(frozen=True)
class Text(Spec):
    """A string, non-empty (after stripping) unless ``empty``; one of ``choices``, or
    matching ``pattern``, when given."""

    what: str = ""
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    empty: bool = False
    hint: str = ""

    def fits(self, value: Any) -> bool:
        return (
            isinstance(value, str)
            and (self.empty or bool(value.strip()))
            and (self.pattern is None or re.fullmatch(self.pattern, value) is not None)
        )

    def describe(self) -> str:
        if self.what:
            return self.what
        if self.choices:
            return _or(self.choices)
        return "a string" if self.empty else "a non-empty string"

    def convert(self, value: Any, at: Path_) -> Any:
        if self.choices and value not in self.choices:
            close = did_you_mean(value, self.choices)
            raise _Reject(at, f"must be {self.describe()}, not {shown(value)}{close}", self.hint)
        return value


@dataclass(frozen=True)
class Number(Spec):
    """An int or float (never a boolean) in ``[low, high]``; ``whole`` wants an int;
    ``also`` lists values allowed outside the range (``-1`` for "never")."""

    low: float | None = None
    high: float | None = None
    whole: bool = False
    also: tuple[int, ...] = ()
    what: str = ""
    hint: str = ""

    def fits(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.whole else int | float):
            return False
        return value in self.also or (
            (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        )

    def describe(self) -> str:
        if self.what:
            return self.what
        kind = "a whole number" if self.whole else "a number"
        if self.low is not None and self.high is not None:
            return f"{kind} from {self.low:g} to {self.high:g}"
        return f"{kind} >= {self.low:g}" if self.low is not None else kind


@dataclass(frozen=True)
class Flag(Spec):
    """``true`` or ``false``."""

    what: str = "true or false"

    def fits(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Pattern(Spec):
    """A Python regular expression that compiles (kept as its source string)."""

    flags: int = 0
    what: str = "a regular expression string"

    def fits(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value)

    def convert(self, value: Any, at: Path_) -> Any:
        try:
            re.compile(value, self.flags)
        except re.error as exc:
            raise _Reject(at, f"bad regular expression {value!r}: {exc}") from None
        return value


@dataclass(frozen=True)
class Nullable(Spec):
    """``null`` or what ``inner`` accepts; ``label`` replaces "<inner> or null" in errors."""

    inner: Spec
    label: str = ""

    def fits(self, value: Any) -> bool:
        return value is None or self.inner.fits(value)

    def describe(self) -> str:
        return self.label or f"{self.inner.describe()} or null"

    def convert(self, value: Any, at: Path_) -> Any:
        return None if value is None else self.inner.check(value, at)


@dataclass(frozen=True)
class Custom(Spec):
    """``func(value)`` returns the value to keep or raises ``ValueError(problem)``:
    for checks owned elsewhere (a hyper-parameter's rules, a check type's parser)."""

    func: Callable[[Any], Any]
    hint: str = ""

    def convert(self, value: Any, at: Path_) -> Any:
        try:
            return self.func(value)
        except ValueError as exc:
            raise _Reject(at, str(exc), self.hint) from None


@dataclass(frozen=True)
class Items(Spec):
    """A list of ``item``; ``nonempty`` refuses ``[]``."""

    item: Spec
    nonempty: bool = False
    what: str = ""

    def fits(self, value: Any) -> bool:
        return isinstance(value, list) and (bool(value) or not self.nonempty)

    def describe(self) -> str:
        return self.what or ("a non-empty list" if self.nonempty else "a list")

    def convert(self, value: Any, at: Path_) -> Any:
        return [self.item.check(item, (*at, n)) for n, item in enumerate(value)]


@dataclass(frozen=True)
class Mapping(Spec):
    """A mapping with free keys (each checked by ``key``) and values checked by ``value``."""

    value: Spec
    key: Text = field(default_factory=Text)
    what: str = "a mapping"

    def fits(self, value: Any) -> bool:
        return isinstance(value, dict)

    def convert(self, value: Any, at: Path_) -> Any:
        out = {}
        for key, item in value.items():
            try:
                self.key.check(key, (*at, key))
            except _Reject as exc:
                raise _Reject((*at, key), f"the key {exc.problem}", exc.hint) from None
            out[key] = self.value.check(item, (*at, key))
        return out


@dataclass(frozen=True)
class Field:
    """One key of a :class:`Table`: its spec, whether it must be there, its default, and
    the hint shown when it is missing."""

    name: str
    spec: Spec
    required: bool = False
    default: Any = _ABSENT
    hint: str = ""


@dataclass(frozen=True)
class Table(Spec):
    """A mapping with known keys. Unknown keys are refused with a did-you-mean; absent
    keys take their default (or are left out); each ``one_of`` group needs exactly one
    key; ``single`` wants exactly one key (a check: ``- contains: "unity"``)."""

    fields: tuple[Field, ...]
    what: str = "a mapping"
    hint: str = ""
    noun: str = "key"  # "unknown check type 'x'" reads better than "unknown key 'x'"
    one_of: tuple[tuple[str, ...], ...] = ()
    single: bool = False

    def fits(self, value: Any) -> bool:
        return isinstance(value, dict)

    def convert(self, value: Any, at: Path_) -> Any:
        if self.single and len(value) != 1:
            raise _Reject(at, f"must be {self.what}, not {len(value)} keys", self.hint)
        known = {f.name: f for f in self.fields}
        for key in value:
            if key not in known:
                raise _Reject(
                    at,
                    f"unknown {self.noun} {shown(key)}{did_you_mean(key, known)}",
                    f"expected one of {', '.join(sorted(known))}",
                    line_at=(*at, key),
                )
        for group in self.one_of:
            if sum(name in value for name in group) != 1:
                raise _Reject(at, f"needs exactly one of {_or(group)}", self.hint)
        out = {}
        for name, spec in known.items():
            if name in value:
                out[name] = spec.spec.check(value[name], (*at, name))
            elif spec.required:
                hint = spec.hint or self.hint
                raise _Reject(at, f"missing {name!r}", hint, line_at=(*at, name))
            elif spec.default is not _ABSENT:
                out[name] = spec.default
        return out


@dataclass(frozen=True)
class AnyOf(Spec):
    """The first of ``options`` whose type fits the value (a list *or* a mapping)."""

    options: tuple[Spec, ...]
    what: str = "a value"

    def fits(self, value: Any) -> bool:
        return any(option.fits(value) for option in self.options)

    def convert(self, value: Any, at: Path_) -> Any:
        return next(o for o in self.options if o.fits(value)).check(value, at)


# --------------------------------------------------------------------- documents


def yaml_line(root: Any, at: Path_) -> int | None:
    """The line of the entry at ``at`` in a document from :mod:`spacetrain.yamlfile`: a
    key's line, a list item's line, or, for an absent entry, where its container starts."""
    node, line = root, getattr(root, "line", None)
    for step in at:
        if isinstance(node, LineDict) and step in node:
            line, node = node.lines.get(step, node.line), node[step]
        elif isinstance(node, LineList) and isinstance(step, int) and 0 <= step < len(node):
            line, node = node.lines[step], node[step]
        else:
            return getattr(node, "line", line)
    return line


def dotted(at: Path_) -> str:
    """``thresholds.overall``, ``ignore[0].reason``: how an entry is named by default."""
    out = ""
    for step in at:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


@dataclass
class Document:
    """A loaded settings file: where it came from, how to find lines and name entries.

    Args:
        path: the file, as errors show it.
        data: the loaded document.
        root: how errors name the document itself ("the suite", "[tool.spacetrain]").
        line: ``at -> line`` (default: :func:`yaml_line` over ``data``).
        name: ``at -> "WHERE"`` (default: :func:`dotted`).
    """

    path: str
    data: Any
    root: str = "the file"
    line: Callable[[Path_], int | None] | None = None
    name: Callable[[Path_], str] | None = None

    def line_of(self, at: Path_) -> int | None:
        """The line of the entry at ``at`` (best known)."""
        return self.line(at) if self.line is not None else yaml_line(self.data, at) or 1

    def where(self, at: Path_) -> str:
        """How an error names the entry at ``at``."""
        if not at:
            return self.root
        return self.name(at) if self.name is not None else dotted(at)

    def fail(
        self, at: Path_, problem: str, hint: str = "", *, line_at: Path_ | None = None
    ) -> NoReturn:
        """Raise the one-line error for the entry at ``at`` (exit 2); the line is that of
        ``line_at`` when given (a missing key: where its table starts).

        Raises:
            InputFileError: always.
        """
        detail = f"{self.where(at)}: {problem}"
        if hint:
            detail += f"; {hint}"
        line = self.line_of(at if line_at is None else line_at)
        raise InputFileError(self.path, detail, line=line)

    def validate(self, spec: Spec) -> Any:
        """The document checked against ``spec``: plain dicts and lists, defaults filled in.

        Raises:
            InputFileError: the first entry that does not match, with its line (exit 2).
        """
        try:
            return spec.check(_EmptyFile() if self.data is None else self.data, ())
        except _Reject as exc:
            self.fail(exc.at, exc.problem, exc.hint, line_at=exc.line_at)


class _EmptyFile:
    """An empty document, shown as such ("must be a mapping, not an empty file")."""

    def __repr__(self) -> str:
        return "an empty file"


__all__ = [
    "AnyOf",
    "Anything",
    "Custom",
    "Document",
    "Field",
    "Flag",
    "Items",
    "Mapping",
    "Nullable",
    "Number",
    "Pattern",
    "Spec",
    "Table",
    "Text",
    "did_you_mean",
    "dotted",
    "shown",
    "yaml_line",
]
