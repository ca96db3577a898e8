"""``spacetrain evaluate`` and ``spacetrain gate``: score an adapter, apply the thresholds.

Both fail closed: no adapter, an empty suite, a report without cases or a crash
while generating never exits 0. Results (the summary) go to stdout, progress to
stderr; the JSON report and the Markdown page are written where asked.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from spacetrain.evaluate.gate import load_gate
from spacetrain.evaluate.report import load_report, regate, render_text
from spacetrain.evaluate.runner import EvaluateOptions, baseline_scores, evaluate
from spacetrain.hub import Hub


def run(args: argparse.Namespace) -> int:
    """Generate answers to the suite with base (+ adapter), score them, apply the gate."""
    names = [f.name for f in dataclasses.fields(EvaluateOptions)]
    options = EvaluateOptions(**{name: getattr(args, name) for name in names})
    report = evaluate(Hub.from_env(), options)
    sys.stdout.write(render_text(report.to_json()))
    return report.exit_code


def gate(args: argparse.Namespace) -> int:
    """Re-apply the gate file's thresholds (and patterns) to a saved report."""
    policy = load_gate(args.gate)
    saved = load_report(args.report, policy)
    baseline, _ = baseline_scores(args.baseline_report, policy)
    report = regate(saved, policy, baseline)
    sys.stdout.write(render_text(report.to_json()))
    return report.exit_code
