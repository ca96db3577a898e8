"""The Space policy linter: rules over a parsed Space folder, suppressions, reporters.

Library use::

    from spacetrain.lint import lint_folder, load_policy
    report = lint_folder("space", load_policy("policy/space.yaml"))
    for finding in report.findings: ...
"""

from spacetrain.lint.engine import lint_folder, run_rules
from spacetrain.lint.model import Finding, LintReport, Severity, exit_code
from spacetrain.lint.policy import Policy, load_policy
from spacetrain.lint.registry import REGISTRY, RuleMeta, load_rules

__all__ = [
    "REGISTRY",
    "Finding",
    "LintReport",
    "Policy",
    "RuleMeta",
    "Severity",
    "exit_code",
    "lint_folder",
    "load_policy",
    "load_rules",
    "run_rules",
]
