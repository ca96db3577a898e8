"""The evaluation report: JSON (DESIGN.md contract), reading it back, and Markdown.

The JSON carries every case's output, so ``spacetrain gate`` can re-derive the
scores from the cases (and re-scan the outputs with today's attribution
patterns) instead of trusting the stored aggregates; a report whose stored
scores disagree with its own cases is refused. The Markdown is one page fit for
``$GITHUB_STEP_SUMMARY`` and a pull-request comment.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spacetrain.errors import EXIT_FAILED, EXIT_OK, CheckFailed, InputFileError
from spacetrain.evaluate.gate import GatePolicy, decide, fmt
from spacetrain.evaluate.scoring import (
    CaseResult,
    Scores,
    aggregate,
    attribution_hits,
    rounded,
)
from spacetrain.inputs import parse_json, read_text

SCHEMA_VERSION = 1
_OUTPUT_SHOWN = 160  # characters of an output shown in the Markdown


class ReportHasNoCases(CheckFailed):
    """A report without cases proves nothing, so the gate fails (exit 1)."""


# DESIGN.md's report contract: these keys, this meaning (the rest of a report is context).
CONTRACT_KEYS = (
    "passed",
    "overall",
    "categories",
    "attribution_clean",
    "thresholds",
    "failures",
    "base_model",
    "adapter",
    "base",
    "cases",
)


@dataclass(frozen=True)
class EvaluationReport:
    """The evaluation report, typed: what ``evaluate`` returns and ``gate`` reads back.

    ``to_json()`` is the report file: DESIGN.md's contract keys (``passed``, ``overall``,
    ``categories``, ``attribution_clean``, ``thresholds``, ``failures``, ``base_model``,
    ``adapter``, ``base``, ``cases``) plus the context in ``extra`` (``schema_version``,
    ``counts``, ``suite``, ``generation``, ``device``, ``versions``, ``timings`` ...), in
    the order they were built or read; ``from_json(to_json())`` gives the same report.

    Attributes:
        passed: the gate's verdict.
        failures: why it did not pass (one sentence each).
        cases: each case's JSON (``id``, ``category``, ``score``, ``output``, ...).
        overall, categories, attribution_clean: the scores (None: a crashed evaluation).
        thresholds: the gate's thresholds applied.
        base_model, adapter: what was evaluated (``adapter``: ``repo``, ``revision``, ...).
        base: the base model's scores on the same suite (``--compare-base``), or None.
        extra: every other key of the report, as given.
    """

    passed: bool
    failures: tuple[str, ...] = ()
    cases: tuple[dict[str, Any], ...] = ()
    overall: float | None = None
    categories: dict[str, float] | None = None
    attribution_clean: float | None = None
    thresholds: dict[str, float] | None = None
    base_model: str | None = None
    adapter: dict[str, Any] | None = None
    base: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    keys: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvaluationReport:
        """A report from its JSON object (shapes are checked by :func:`load_report`)."""
        return cls(
            passed=data.get("passed") is True,
            failures=tuple(data.get("failures") or ()),
            cases=tuple(data.get("cases") or ()),
            overall=data.get("overall"),
            categories=data.get("categories"),
            attribution_clean=data.get("attribution_clean"),
            thresholds=data.get("thresholds"),
            base_model=data.get("base_model"),
            adapter=data.get("adapter"),
            base=data.get("base"),
            extra={k: v for k, v in data.items() if k not in CONTRACT_KEYS},
            keys=tuple(data),
        )

    @property
    def exit_code(self) -> int:
        """DESIGN.md's: 0 when the gate passed, 1 when it said no."""
        return EXIT_OK if self.passed else EXIT_FAILED

    def to_json(self) -> dict[str, Any]:
        """The report file's JSON object (DESIGN.md's contract)."""
        own: dict[str, Any] = {
            "passed": self.passed,
            "overall": self.overall,
            "categories": self.categories,
            "attribution_clean": self.attribution_clean,
            "thresholds": self.thresholds,
            "failures": list(self.failures),
            "base_model": self.base_model,
            "adapter": self.adapter,
            "base": self.base,
            "cases": list(self.cases),
        }
        always = ("passed", "failures", "base_model", "adapter")  # null when not known
        keys = self.keys or tuple(
            [k for k in CONTRACT_KEYS[:-1] if own[k] is not None or k in always]
            + list(self.extra)
            + ["cases"]
        )
        return {key: own[key] if key in own else self.extra[key] for key in keys}


def build_report(
    *,
    policy: GatePolicy,
    results: list[CaseResult],
    base_results: list[CaseResult] | None = None,
    baseline: Scores | None = None,
    meta: dict[str, Any] | None = None,
    adapter_present: bool = True,
) -> dict[str, Any]:
    """Score ``results``, apply the gate and lay out the report JSON.

    ``meta`` holds what describes the run (``base_model``, ``adapter``, ``suite``,
    ``generation``, ``device``, ``versions``, ``timings``, ``baseline_report``); it is
    merged in as given.
    """
    # Attribution is judged by this policy's patterns, whoever scored the cases.
    results = [
        replace(r, attribution=tuple(attribution_hits(r.output, policy.attribution_patterns)))
        for r in results
    ]
    scores = aggregate(results)
    failures = decide(scores, policy.thresholds, baseline=baseline, adapter_present=adapter_present)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "passed": not failures,
        **scores.to_json(),
        "counts": dict(scores.counts),
        "thresholds": policy.thresholds.to_json(),
        "failures": failures,
        "gate_file": policy.path,
        "base_model": None,
        "adapter": None,
    }
    if base_results is not None:
        report["base"] = aggregate(base_results).to_json()
        report["base_cases"] = [
            {"id": r.id, "score": rounded(r.score), "output": r.output} for r in base_results
        ]
    if baseline is not None:
        report["baseline"] = baseline.to_json()
    report.update(meta or {})
    report["cases"] = [r.to_json() for r in results]
    return report


def crash_report(reason: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report written when evaluation could not finish: failed, and without cases."""
    return {
        "schema_version": SCHEMA_VERSION,
        "passed": False,
        "failures": [reason],
        **(meta or {}),
        "cases": [],
    }


def write_json(path: str | Path, report: dict[str, Any]) -> None:
    """Write the report (UTF-8, indented, trailing newline), creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ reading back


@dataclass(frozen=True)
class SavedReport:
    """A report read from disk, its cases parsed back into results."""

    path: str
    report: EvaluationReport
    cases: list[CaseResult]

    @property
    def raw(self) -> dict[str, Any]:
        """The report's JSON object, as read."""
        return self.report.to_json()

    @property
    def adapter_present(self) -> bool:
        """Whether the report is about an adapter (not the base model alone)."""
        return bool(self.report.adapter)


def load_report(path: str | Path, policy: GatePolicy) -> SavedReport:
    """Read a report and re-derive its case results (attribution with ``policy``'s patterns).

    Raises:
        InputFileError: unreadable, not JSON, not a report, or stored scores that do
            not match its own cases (exit 2).
        ReportHasNoCases: a report without cases (exit 1: fail closed).
    """
    path = Path(path)
    try:
        raw = parse_json(read_text(path))
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(raw, dict) or "cases" not in raw:
        raise InputFileError(path, "not an evaluation report (no 'cases')")
    items = raw["cases"]
    if not isinstance(items, list):
        raise InputFileError(path, "'cases' must be a list")
    if not items:
        raise ReportHasNoCases(f"{path}: the report has no cases, so it cannot pass the gate")
    cases = [_case(item, i, path, policy) for i, item in enumerate(items)]
    saved = SavedReport(str(path), EvaluationReport.from_json(raw), cases)
    _check_consistent(saved)
    return saved


def _case(item: Any, index: int, path: Path, policy: GatePolicy) -> CaseResult:
    where = f"cases[{index}]"
    if not isinstance(item, dict):
        raise InputFileError(path, f"{where}: must be an object")
    for key, kind in (("id", str), ("category", str), ("output", str)):
        if not isinstance(item.get(key), kind):
            raise InputFileError(path, f"{where}: '{key}' must be a string")
    score = item.get("score")
    if (
        isinstance(score, bool)
        or not isinstance(score, int | float)
        or not math.isfinite(score)
        or not 0 <= score <= 1
    ):
        raise InputFileError(path, f"{where} ({item['id']}): 'score' must be a number from 0 to 1")
    failed = item.get("failed_checks", [])
    if not isinstance(failed, list) or not all(isinstance(f, str) for f in failed):
        raise InputFileError(path, f"{where} ({item['id']}): 'failed_checks' must be strings")
    return CaseResult(
        id=item["id"],
        category=item["category"],
        score=float(score),
        output=item["output"],
        failed_checks=tuple(failed),
        checks=int(item.get("checks", 1) or 1),
        attribution=tuple(attribution_hits(item["output"], policy.attribution_patterns)),
    )


def _check_consistent(saved: SavedReport) -> None:
    scores = aggregate(saved.cases)
    stored_overall = saved.raw.get("overall")
    if (
        isinstance(stored_overall, int | float)
        and not isinstance(stored_overall, bool)
        and abs(rounded(stored_overall) - rounded(scores.overall)) > 1e-6
    ):
        raise InputFileError(
            saved.path,
            f"'overall' {stored_overall} does not match its cases "
            f"({fmt(scores.overall)}): the report was edited or is corrupt",
        )
    stored = saved.raw.get("categories")
    if isinstance(stored, dict):
        for name, value in stored.items():
            now = scores.categories.get(name)
            if now is None or not isinstance(value, int | float):
                raise InputFileError(saved.path, f"category {name!r} does not match its cases")
            if abs(rounded(value) - rounded(now)) > 1e-6:
                raise InputFileError(
                    saved.path,
                    f"category {name!r} {value} does not match its cases ({fmt(now)})",
                )


def regate(
    saved: SavedReport, policy: GatePolicy, baseline: Scores | None = None
) -> EvaluationReport:
    """Re-apply ``policy`` to a saved report: the same report with new scores and verdict."""
    raw = saved.raw
    meta = {k: v for k, v in raw.items() if k not in _DERIVED}
    report = build_report(
        policy=policy,
        results=saved.cases,
        baseline=baseline,
        meta=meta,
        adapter_present=saved.adapter_present,
    )
    for key in ("base", "base_cases"):
        if key in raw:
            report[key] = raw[key]
    report["cases"] = [r.to_json() for r in saved.cases]
    return EvaluationReport.from_json(report)


_DERIVED = {
    "schema_version",
    "passed",
    "overall",
    "categories",
    "attribution_clean",
    "counts",
    "thresholds",
    "failures",
    "gate_file",
    "baseline",
    "cases",
}


# ---------------------------------------------------------------------- Markdown


def _cell(text: str, limit: int = _OUTPUT_SHOWN) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("`", "'") or "*(empty)*"


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def render_markdown(report: dict[str, Any], *, worst: int = 5) -> str:
    """One Markdown page: verdict, a table of categories (base vs adapter, gain), failures,
    and the worst cases with their output."""
    t = report.get("thresholds", {})
    verdict = "PASSED ✅" if report.get("passed") else "FAILED ❌"
    suite = report.get("suite") or {}
    title = suite.get("name") or "evaluation"
    lines = [f"## Evaluation `{title}`: {verdict}", ""]
    adapter = report.get("adapter") or {}
    who = (
        f"adapter `{adapter.get('repo')}`"
        + (f" @ `{adapter['revision']}`" if adapter.get("revision") else "")
        if adapter
        else "**no adapter**"
    )
    base_name = report.get("base_model")
    if report.get("base_revision"):
        base_name = f"{base_name}@{report['base_revision']}"
    gen = report.get("generation") or {}
    setting = ", ".join(
        str(x)
        for x in (
            report.get("device"),
            gen.get("dtype"),
            "merged" if gen.get("merged") else None,
            f"batch {gen['batch_size']}" if gen.get("batch_size") else None,
            "greedy",
            f"{gen['max_new_tokens']} new tokens" if gen.get("max_new_tokens") else None,
        )
        if x
    )
    lines += [
        f"{who} on base `{base_name}`; {len(report.get('cases', []))} cases; {setting}.",
        "",
    ]
    cases = report.get("cases") or []
    if not cases:
        lines += ["**No cases were scored.**", ""]
        lines += _failures(report)
        return "\n".join(lines) + "\n"

    base = report.get("base") or {}
    baseline = report.get("baseline") or {}
    counts = report.get("counts") or {}
    header = ["category", "n"]
    if base:
        header.append("base")
    header.append("adapter" if adapter else "score")
    if base:
        header.append("gain")
    if baseline:
        header += ["baseline", "Δ baseline"]
    header += ["threshold", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(
        name: str, value: float, before: float | None, prev: float | None, n: int | str, thr: float
    ) -> str:
        cells = [name, str(n)]
        if base:
            cells.append(fmt(before) if before is not None else "-")
        cells.append(f"**{fmt(value)}**")
        if base:
            cells.append(f"{value - before:+.2f}" if before is not None else "-")
        if baseline:
            cells.append(fmt(prev) if prev is not None else "-")
            cells.append(f"{value - prev:+.2f}" if prev is not None else "-")
        cells += [fmt(thr), _mark(rounded(value) >= rounded(thr))]
        return "| " + " | ".join(cells) + " |"

    for name, value in report.get("categories", {}).items():
        lines.append(
            row(
                name,
                value,
                (base.get("categories") or {}).get(name),
                (baseline.get("categories") or {}).get(name),
                counts.get(name, "?"),
                t.get("category", 0.7),
            )
        )
    lines.append(
        row(
            "**overall**",
            report["overall"],
            base.get("overall"),
            baseline.get("overall"),
            len(cases),
            t.get("overall", 0.75),
        )
    )
    clean = report.get("attribution_clean", 0.0)
    clean_thr = t.get("attribution_clean", 1.0)
    n_dirty = sum(1 for c in cases if c.get("attribution"))
    lines += [
        "",
        f"Attribution-clean outputs: **{fmt(clean)}** ({len(cases) - n_dirty}/{len(cases)}; "
        f"threshold {fmt(clean_thr)}) {_mark(rounded(clean) >= rounded(clean_thr))}",
        "",
    ]
    lines += _failures(report)
    ranked = sorted(
        (c for c in cases if c.get("score", 0) < 1 or c.get("attribution")),
        key=lambda c: (c.get("score", 0), c.get("id", "")),
    )[:worst]
    if ranked:
        lines += [
            f"### Worst {len(ranked)} case(s)",
            "",
            "| case | category | score | failed checks | output |",
            "|---|---|---|---|---|",
        ]
        for c in ranked:
            failed = list(c.get("failed_checks", []))
            if c.get("attribution"):
                failed.append("attribution text")
            lines.append(
                f"| `{c['id']}` | {c['category']} | {fmt(c['score'])} | "
                f"{_cell('; '.join(failed), 80)} | {_cell(c.get('output', ''))} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def render_text(report: dict[str, Any]) -> str:
    """A few lines for the terminal and CI log: scores against thresholds, then the verdict."""
    t = report.get("thresholds", {})
    name = (report.get("suite") or {}).get("name") or "evaluation"
    lines = []
    if report.get("cases"):
        base = report.get("base") or {}
        base_cats = base.get("categories") or {}

        def vs(value: float, before: float | None) -> str:
            if before is None:
                return ""
            return f"  (base {fmt(before)}, gain {value - before:+.2f})"

        lines.append(
            f"{name}: overall {fmt(report['overall'])} (needs {fmt(t.get('overall', 0.75))})"
            + vs(report["overall"], base.get("overall"))
        )
        width = max(len(c) for c in report.get("categories", {"": 0}))
        for cat, value in report.get("categories", {}).items():
            lines.append(
                f"  {cat:<{width}}  {fmt(value)} (needs {fmt(t.get('category', 0.7))})"
                + vs(value, base_cats.get(cat))
            )
        lines.append(
            f"  attribution_clean {fmt(report['attribution_clean'])} "
            f"(needs {fmt(t.get('attribution_clean', 1.0))})"
        )
    lines.extend(f"  FAIL {f}" for f in report.get("failures", []))
    lines.append("gate: PASSED" if report.get("passed") else "gate: FAILED")
    return "\n".join(lines) + "\n"


def _failures(report: dict[str, Any]) -> list[str]:
    failures = report.get("failures") or []
    if not failures:
        return []
    return ["### Failures", "", *(f"- {f}" for f in failures), ""]


__all__ = [
    "CONTRACT_KEYS",
    "SCHEMA_VERSION",
    "EvaluationReport",
    "ReportHasNoCases",
    "SavedReport",
    "build_report",
    "crash_report",
    "load_report",
    "regate",
    "render_markdown",
    "render_text",
    "write_json",
]
