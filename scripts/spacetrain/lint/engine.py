"""Run every registered rule over a SpaceFolder, apply severities and suppressions."""

from __future__ import annotations

from pathlib import Path

from spacetrain.lint.model import Finding, LintReport, Severity
from spacetrain.lint.policy import Policy
from spacetrain.lint.registry import load_rules
from spacetrain.lint.space_folder import SpaceFolder
from spacetrain.lint.suppressions import apply_suppressions


def run_rules(space: SpaceFolder) -> LintReport:
    """Every rule that is on (opt-in rules only with their input), findings sorted."""
    registry = load_rules()
    policy = space.policy
    findings: list[Finding] = []
    rules_run = []
    for meta in registry.values():
        severity = policy.severities.get(meta.id, meta.severity)
        if severity is Severity.OFF or (meta.opt_in and space.resolution is None):
            continue
        rules_run.append(meta.id)
        for hit in meta.check(space):
            findings.append(
                Finding(
                    rule=meta.id,
                    severity=severity,
                    path=space.shown(hit.path),
                    line=hit.line,
                    message=hit.message,
                    hint=hit.hint or meta.fix_title,
                )
            )
    findings = list(dict.fromkeys(findings))  # one rule, one line, one message: once
    kept, suppressed = apply_suppressions(findings, space.suppressions, policy, space=space)
    return LintReport(
        root=space.shown_root,
        findings=sorted(kept, key=lambda f: f.sort_key),
        suppressed=sorted(suppressed, key=lambda s: s.finding.sort_key),
        checked=[space.shown(rel) for rel in space.files],
        rules_run=rules_run,
    )


def lint_folder(
    path: str | Path,
    policy: Policy | None = None,
    *,
    shown_root: str | None = None,
    find_links: list[str] | None = None,
    resolve: bool = False,
) -> LintReport:
    """Read the Space folder at ``path`` and lint it (the library entry point).

    Raises:
        InputFileError: ``path`` is not a folder (exit 2).
        InfraError: with ``resolve``, the package index is unreachable (exit 3).
    """
    policy = policy or Policy.defaults()
    space = SpaceFolder.read(path, policy, shown_root=shown_root)
    notes: list[str] = []
    if (
        resolve
        and space.dockerfile is not None
        and policy.severities.get("pins-unresolvable") is not Severity.OFF
    ):
        from spacetrain.lint.resolver import resolve_pins

        space.resolution = resolve_pins(space.dockerfile, policy, find_links=find_links)
        if space.resolution.note:
            notes.append(f"pins-unresolvable: {space.resolution.note}")
    report = run_rules(space)
    report.notes = notes
    return report
