"""Evaluation suites, checks, scoring, the gate and its reports.

Library use::

    from spacetrain.evaluate import load_suite, load_gate, Generator
    suite, policy = load_suite("policy/evals/kwanzaa.yaml"), load_gate("policy/gate.yaml")

Importing this package loads no model library: torch and transformers are imported by
:class:`Generator` when it loads a model, so ``spacetrain gate`` stays light.
"""

from spacetrain.evaluate.gate import GatePolicy, Thresholds, decide, load_gate
from spacetrain.evaluate.generate import Generator, ModelSource
from spacetrain.evaluate.report import build_report, load_report, regate, render_markdown
from spacetrain.evaluate.runner import EvaluateOptions, EvaluationCrashed, evaluate
from spacetrain.evaluate.scoring import CaseResult, Scores, aggregate, score_case
from spacetrain.evaluate.suite import Case, Suite, load_suite

__all__ = [
    "Case",
    "CaseResult",
    "EvaluateOptions",
    "EvaluationCrashed",
    "GatePolicy",
    "Generator",
    "ModelSource",
    "Scores",
    "Suite",
    "Thresholds",
    "aggregate",
    "build_report",
    "decide",
    "evaluate",
    "load_gate",
    "load_report",
    "load_suite",
    "regate",
    "render_markdown",
    "score_case",
]
