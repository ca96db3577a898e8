"""The gate: thresholds and attribution patterns (``policy/gate.yaml``) and the verdict.

An adapter passes only when overall >= thresholds.overall, every category >=
thresholds.category and attribution_clean >= thresholds.attribution_clean, and,
given a baseline report and ``max_regression``, neither overall nor any shared
category fell by more than that. Attribution patterns are built in; the gate
file adds to them and cannot remove them. All patterns are case-insensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from spacetrain import schema
from spacetrain.evaluate.scoring import Scores, at_least, rounded
from spacetrain.yamlfile import load_yaml

DEFAULT_GATE_PATH = Path("policy/gate.yaml")

# Text a model only writes because its training data carried it. Training on it
# teaches it, and the seed demands zero such outputs.
BUILTIN_ATTRIBUTION_PATTERNS: tuple[str, ...] = (
    r"generated\s+(with|by)\s+(claude|chatgpt|gpt-?\d|openai|copilot|gemini)",
    r"co-authored-by:\s*(claude|chatgpt|copilot|gemini|openai)",
    r"co-authored-by:.*noreply@anthropic\.com",
    r"\U0001f916\s*generated\s+with",
    r"as\s+an\s+ai\s+(language\s+)?model",
    r"as\s+a\s+large\s+language\s+model",
    r"i\s+am\s+an\s+ai\s+(language\s+model|assistant)\s+(created|developed|made|trained)\s+by",
    r"(written|created|produced)\s+(with|by)\s+(the\s+help\s+of\s+)?(claude|chatgpt|an\s+ai)\b",
    r"claude\.ai/code",
)


@dataclass(frozen=True)
class Thresholds:
    """What a report must reach; ``max_regression`` only applies against a baseline."""

    overall: float = 0.75
    category: float = 0.70
    attribution_clean: float = 1.0
    max_regression: float | None = None

    def to_json(self) -> dict[str, float]:
        """The report's ``thresholds`` object."""
        out = {
            "overall": self.overall,
            "category": self.category,
            "attribution_clean": self.attribution_clean,
        }
        if self.max_regression is not None:
            out["max_regression"] = self.max_regression
        return out


@dataclass(frozen=True)
class GatePolicy:
    """A loaded gate file (or the built-in defaults when there is none)."""

    thresholds: Thresholds
    attribution_patterns: tuple[re.Pattern[str], ...]
    path: str | None = None


def compile_patterns(sources: list[str] | tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """Case-insensitive patterns, built-ins first, duplicates dropped."""
    unique = dict.fromkeys([*BUILTIN_ATTRIBUTION_PATTERNS, *sources])
    return tuple(re.compile(s, re.IGNORECASE) for s in unique)


def default_policy() -> GatePolicy:
    """The seed's bar: overall 0.75, categories 0.70, no attribution at all."""
    return GatePolicy(Thresholds(), compile_patterns(()), None)


_FRACTION = schema.Number(low=0, high=1)

# DESIGN.md's gate file contract, as a table.
GATE_SCHEMA = schema.Table(
    (
        schema.Field(
            "thresholds",
            schema.Table(
                (
                    schema.Field("overall", _FRACTION, required=True, hint="add overall: 0.75"),
                    schema.Field("category", _FRACTION, required=True, hint="add category: 0.70"),
                    schema.Field(
                        "attribution_clean",
                        _FRACTION,
                        required=True,
                        hint="add attribution_clean: 1.0",
                    ),
                    schema.Field("max_regression", _FRACTION),
                ),
                hint="e.g. {overall: 0.75, category: 0.70, attribution_clean: 1.0}",
            ),
            required=True,
            hint="add thresholds: {overall: 0.75, category: 0.70, attribution_clean: 1.0}",
        ),
        schema.Field(
            "attribution_patterns",
            schema.Items(schema.Pattern(flags=re.IGNORECASE), what="a list of regular expressions"),
            default=[],
        ),
    ),
    what="a mapping with 'thresholds'",
    hint="see DESIGN.md 'Evaluation suite and gate files'",
)


def load_gate(path: str | Path | None) -> GatePolicy:
    """Load ``path``; with ``None``, ``policy/gate.yaml`` when it exists, else the defaults.

    Raises:
        InputFileError: missing (when named), unreadable or malformed file (exit 2).
    """
    if path is None:
        if not DEFAULT_GATE_PATH.is_file():
            return default_policy()
        path = DEFAULT_GATE_PATH
    doc = schema.Document(str(path), load_yaml(path), root="the gate file")
    data = doc.validate(GATE_SCHEMA)
    thresholds = Thresholds(**{k: float(v) for k, v in data["thresholds"].items()})
    return GatePolicy(thresholds, compile_patterns(data["attribution_patterns"]), str(path))


def fmt(value: float, other: float | None = None) -> str:
    """A score with up to four decimals (at least two), more when needed to differ from
    ``other``: 0.875, 0.6667, 0.75 vs 0.7499, 0.749999 vs 0.75."""
    text = f"{value:.6f}"
    for digits in range(4, 7):
        text = f"{value:.{digits}f}"
        if other is None or text != f"{other:.{digits}f}" or rounded(value) == rounded(other):
            break
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals[:2]}{decimals[2:].rstrip('0')}"


def decide(
    scores: Scores,
    thresholds: Thresholds,
    *,
    baseline: Scores | None = None,
    adapter_present: bool = True,
) -> list[str]:
    """Every reason the gate fails, in a stable order; empty means it passes."""
    failures: list[str] = []
    if not adapter_present:
        failures.append("no adapter was evaluated: the gate only passes an adapter")
    if scores.n == 0:
        failures.append("no cases were scored")
        return failures
    if not at_least(scores.overall, thresholds.overall):
        failures.append(
            f"overall {fmt(scores.overall, thresholds.overall)} < "
            f"{fmt(thresholds.overall, scores.overall)}"
        )
    for name, value in scores.categories.items():
        if not at_least(value, thresholds.category):
            failures.append(
                f"category {name} {fmt(value, thresholds.category)} < "
                f"{fmt(thresholds.category, value)}"
            )
    if not at_least(scores.attribution_clean, thresholds.attribution_clean):
        shown = ", ".join(scores.attributed[:5]) + (", …" if len(scores.attributed) > 5 else "")
        failures.append(
            f"attribution_clean {fmt(scores.attribution_clean, thresholds.attribution_clean)} < "
            f"{fmt(thresholds.attribution_clean, scores.attribution_clean)} "
            f"({len(scores.attributed)} output(s) with AI-attribution text: {shown})"
        )
    if baseline is not None and thresholds.max_regression is not None:
        failures.extend(_regressions(scores, baseline, thresholds.max_regression))
    return failures


def _regressions(scores: Scores, baseline: Scores, limit: float) -> list[str]:
    pairs = [("overall", scores.overall, baseline.overall)]
    pairs += [
        (f"category {k}", v, baseline.categories[k])
        for k, v in scores.categories.items()
        if k in baseline.categories
    ]
    out = []
    for name, now, before in pairs:
        drop = rounded(before) - rounded(now)
        if rounded(drop) > rounded(limit):
            out.append(
                f"{name} fell {fmt(drop)} from the baseline's {fmt(before)} "
                f"to {fmt(now)} (max_regression {fmt(limit)})"
            )
    return out


__all__ = [
    "BUILTIN_ATTRIBUTION_PATTERNS",
    "DEFAULT_GATE_PATH",
    "GatePolicy",
    "Thresholds",
    "compile_patterns",
    "decide",
    "default_policy",
    "fmt",
    "load_gate",
]
