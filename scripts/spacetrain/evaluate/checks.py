"""The check types a suite case may use: one function per type, in one registry.

A check is a one-key mapping in the suite (``- contains: "unity"``). Each type has
a *parser*, run once when the suite loads (so a bad regex or a wrong argument type
is exit 2 naming the line), and a *test*, a pure function of the model's output.
Text comparisons fold case and Unicode compatibility forms, so "Umoja" matches
"UMOJA" and a full-width letter matches its plain one; ``regex`` is the exception:
it is Python ``re`` as written (use ``(?i)`` for case-insensitive), searched.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def fold(text: str) -> str:
    """Case- and compatibility-folded text with whitespace runs collapsed to one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def count_words(text: str) -> int:
    """Words as a reader counts them: runs of non-space characters."""
    return len(text.split())


@dataclass(frozen=True)
class CheckType:
    """A registered check type: its name, how to read its argument, how to test an output."""

    name: str
    parse: Callable[[Any], Any]
    test: Callable[[str, Any], bool]
    doc: str


REGISTRY: dict[str, CheckType] = {}


def check(
    name: str, parse: Callable[[Any], Any]
) -> Callable[[Callable[[str, Any], bool]], Callable[[str, Any], bool]]:
    """Register ``func(output, parsed_arg) -> bool`` as check type ``name``."""

    def register(func: Callable[[str, Any], bool]) -> Callable[[str, Any], bool]:
        if name in REGISTRY:
            raise ValueError(f"check type {name!r} registered twice")
        REGISTRY[name] = CheckType(name, parse, func, (func.__doc__ or "").strip())
        return func

    return register


# ------------------------------------------------------------- argument parsers


def _text(arg: Any) -> str:
    if not isinstance(arg, str) or not arg.strip():
        raise ValueError("expects a non-empty string")
    return fold(arg)


def _texts(arg: Any) -> tuple[str, ...]:
    if isinstance(arg, str):
        return (_text(arg),)
    if not isinstance(arg, list) or not arg:
        raise ValueError("expects a non-empty list of strings")
    try:
        return tuple(_text(item) for item in arg)
    except ValueError:
        raise ValueError("expects a non-empty list of non-empty strings") from None


def _pattern(arg: Any) -> re.Pattern[str]:
    if not isinstance(arg, str) or not arg:
        raise ValueError("expects a regular expression as a string")
    try:
        return re.compile(arg)
    except re.error as exc:
        raise ValueError(f"bad regular expression {arg!r}: {exc}") from None


def _count(arg: Any) -> int:
    if isinstance(arg, bool) or not isinstance(arg, int) or arg < 0:
        raise ValueError("expects a whole number >= 0")
    return arg


# ------------------------------------------------------------------- the checks


@check("contains", _text)
def contains(output: str, needle: str) -> bool:
    """The output contains this text (case-insensitive substring)."""
    return needle in fold(output)


@check("contains_any", _texts)
def contains_any(output: str, needles: tuple[str, ...]) -> bool:
    """The output contains at least one of these texts (case-insensitive)."""
    folded = fold(output)
    return any(n in folded for n in needles)


@check("contains_all", _texts)
def contains_all(output: str, needles: tuple[str, ...]) -> bool:
    """The output contains every one of these texts (case-insensitive)."""
    folded = fold(output)
    return all(n in folded for n in needles)


@check("not_contains", _texts)
def not_contains(output: str, needles: tuple[str, ...]) -> bool:
    """The output contains none of these texts (a string or a list; case-insensitive)."""
    folded = fold(output)
    return not any(n in folded for n in needles)


@check("regex", _pattern)
def regex(output: str, pattern: re.Pattern[str]) -> bool:
    """The Python regular expression matches somewhere in the output (``re.search``)."""
    return pattern.search(output) is not None


@check("not_regex", _pattern)
def not_regex(output: str, pattern: re.Pattern[str]) -> bool:
    """The Python regular expression matches nowhere in the output."""
    return pattern.search(output) is None


@check("max_words", _count)
def max_words(output: str, limit: int) -> bool:
    """The output has at most this many words."""
    return count_words(output) <= limit


@check("min_words", _count)
def min_words(output: str, limit: int) -> bool:
    """The output has at least this many words."""
    return count_words(output) >= limit


@check("equals", _text)
def equals(output: str, expected: str) -> bool:
    """The whole output is this text (case-insensitive, surrounding space and end dot ignored)."""
    return fold(output).rstrip(".") == expected.rstrip(".")


@check("starts_with", _text)
def starts_with(output: str, prefix: str) -> bool:
    """The output begins with this text (case-insensitive, leading space ignored)."""
    return fold(output).startswith(prefix)


__all__ = ["REGISTRY", "CheckType", "check", "count_words", "fold"]
