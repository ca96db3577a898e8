"""Scores: per case, per category, overall, and the share of outputs free of attribution.

case score = passed checks / checks; category score = mean of its cases' scores;
overall = mean of all cases' scores (every case weighs the same, whatever its
category); attribution_clean = outputs without AI-attribution text / outputs.
Scores are rounded to :data:`DIGITS` decimals when stored and compared, so
float error never decides a gate: 3 of 4 is exactly 0.75.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from spacetrain.evaluate.suite import Case

DIGITS = 6


def rounded(value: float) -> float:
    """A score as stored and compared: rounded to :data:`DIGITS` decimals."""
    return round(float(value), DIGITS)


def at_least(value: float, threshold: float) -> bool:
    """``value >= threshold`` after rounding both, so 0.75 passes 0.75 and 0.7499 does not."""
    return rounded(value) >= rounded(threshold)


def mean(values: Iterable[float]) -> float:
    """Exact-as-possible mean (``math.fsum``); raises on an empty input."""
    items = list(values)
    if not items:
        raise ValueError("mean of nothing")
    return math.fsum(items) / len(items)


def attribution_hits(text: str, patterns: Sequence[re.Pattern[str]]) -> list[str]:
    """The attribution patterns that match ``text``, by their source."""
    return [p.pattern for p in patterns if p.search(text)]


@dataclass(frozen=True)
class CaseResult:
    """One case scored: the model's output and which checks it failed."""

    id: str
    category: str
    score: float
    output: str
    failed_checks: tuple[str, ...] = ()
    checks: int = 1
    attribution: tuple[str, ...] = ()

    def to_json(self) -> dict:
        """The report's ``cases[]`` entry (the contract plus ``checks``, ``attribution``)."""
        return {
            "id": self.id,
            "category": self.category,
            "score": rounded(self.score),
            "output": self.output,
            "failed_checks": list(self.failed_checks),
            "checks": self.checks,
            "attribution": list(self.attribution),
        }


@dataclass(frozen=True)
class Scores:
    """Aggregates of a set of case results."""

    overall: float
    categories: dict[str, float]
    attribution_clean: float
    counts: dict[str, int] = field(default_factory=dict)
    attributed: tuple[str, ...] = ()  # ids of cases whose output carries attribution text

    @property
    def n(self) -> int:
        """Number of cases scored."""
        return sum(self.counts.values())

    def to_json(self) -> dict:
        """``overall``, ``categories`` and ``attribution_clean``, rounded."""
        return {
            "overall": rounded(self.overall),
            "categories": {k: rounded(v) for k, v in self.categories.items()},
            "attribution_clean": rounded(self.attribution_clean),
        }


def score_case(case: Case, output: str, patterns: Sequence[re.Pattern[str]]) -> CaseResult:
    """Run every check of ``case`` on ``output`` and look for attribution text."""
    failed = tuple(c.describe() for c in case.checks if not c.passes(output))
    total = len(case.checks)
    return CaseResult(
        id=case.id,
        category=case.category,
        score=(total - len(failed)) / total,
        output=output,
        failed_checks=failed,
        checks=total,
        attribution=tuple(attribution_hits(output, patterns)),
    )


def aggregate(results: Sequence[CaseResult]) -> Scores:
    """Category means, the overall mean and ``attribution_clean`` of ``results``.

    Raises:
        ValueError: no results (a gate over nothing must not pass).
    """
    if not results:
        raise ValueError("no cases to score")
    by_category: dict[str, list[float]] = {}
    for r in results:
        by_category.setdefault(r.category, []).append(r.score)
    attributed = tuple(r.id for r in results if r.attribution)
    return Scores(
        overall=mean(r.score for r in results),
        categories={k: mean(v) for k, v in by_category.items()},
        attribution_clean=(len(results) - len(attributed)) / len(results),
        counts={k: len(v) for k, v in by_category.items()},
        attributed=attributed,
    )


__all__ = [
    "DIGITS",
    "CaseResult",
    "Scores",
    "aggregate",
    "at_least",
    "attribution_hits",
    "mean",
    "rounded",
    "score_case",
]
