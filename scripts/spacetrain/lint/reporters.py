"""Reporters: pure functions from a LintReport to text. One model, four formats.

``text`` for people, ``json`` (the architecture's contract plus ``schema_version``), ``sarif``
2.1.0 with a ``rules`` array from the registry (so code scanning shows each rule's help),
and ``github`` workflow commands. Nothing here prints or touches the environment; the
command decides where the text goes.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from spacetrain import __version__
from spacetrain.lint.model import Finding, LintReport, Severity
from spacetrain.lint.registry import REGISTRY, RuleMeta, load_rules

SCHEMA_VERSION = 1
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://huggingface.co/docs/hub/spaces-sdks-docker"


def _where(finding: Finding) -> str:
    return f"{finding.path}:{finding.line}" if finding.line is not None else finding.path


def render_text(report: LintReport) -> str:
    """``space/Dockerfile:12: error [pip-unpinned] trl is not pinned with ==`` + a hint line."""
    out = []
    for f in report.findings:
        out.append(f"{_where(f)}: {f.severity} [{f.rule}] {f.message}")
        if f.hint:
            out.append(f"    hint: {f.hint}")
    for s in report.suppressed:
        f = s.finding
        out.append(f"{_where(f)}: suppressed [{f.rule}] {f.message} (reason: {s.reason})")
    out.append(report.summary())
    return "\n".join(out) + "\n"


def render_json(report: LintReport) -> str:
    """The findings contract (docs/architecture.md), versioned, with counts and suppressions."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "path": report.root,
        "findings": [f.to_json() for f in report.findings],
        "errors": report.errors,
        "warnings": report.warnings,
        "suppressed": len(report.suppressed),
        "suppressed_findings": [
            {**s.finding.to_json(), "reason": s.reason, "source": s.source}
            for s in report.suppressed
        ],
        "files": report.checked,
        "rules": report.rules_run,
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _sarif_level(severity: Severity) -> str:
    return "error" if severity is Severity.ERROR else "warning"


def _sarif_rule(meta: RuleMeta) -> dict[str, object]:
    help_md = f"{meta.summary}\n\n{meta.doc}\n\n**Fix:** {meta.fix_title}"
    return {
        "id": meta.id,
        "name": "".join(part.capitalize() for part in meta.id.split("-")),
        "shortDescription": {"text": meta.summary},
        "fullDescription": {"text": meta.section("What it does") or meta.summary},
        "help": {
            "text": f"{meta.section('Why is this bad?')}\n\nFix: {meta.fix_title}",
            "markdown": help_md,
        },
        "helpUri": meta.url,
        "defaultConfiguration": {"level": _sarif_level(meta.severity)},
        "properties": {"tags": ["spacetrain", meta.family]},
    }


def _sarif_result(finding: Finding, index: dict[str, int]) -> dict[str, object]:
    location: dict[str, object] = {"artifactLocation": {"uri": finding.path}}
    if finding.line is not None:
        location["region"] = {"startLine": finding.line}
    message = finding.message + (f"\nFix: {finding.hint}" if finding.hint else "")
    return {
        "ruleId": finding.rule,
        "ruleIndex": index[finding.rule],
        "level": _sarif_level(finding.severity),
        "message": {"text": message},
        "locations": [{"physicalLocation": location}],
    }


def render_sarif(report: LintReport) -> str:
    """SARIF 2.1.0: ``tool.driver.rules`` lists every rule; suppressed results carry why."""
    registry = load_rules() or REGISTRY
    rules = [_sarif_rule(meta) for meta in registry.values()]
    index = {meta_id: n for n, meta_id in enumerate(registry)}
    results = [_sarif_result(f, index) for f in report.findings]
    for s in report.suppressed:
        result = _sarif_result(s.finding, index)
        kind = "inSource" if s.source == "inline" else "external"
        result["suppressions"] = [{"kind": kind, "justification": s.reason}]
        results.append(result)
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "spacetrain",
                        "fullName": "spacetrain lint (Hugging Face Docker Space policy)",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def escape_data(text: str) -> str:
    """Workflow-command message escaping (actions/toolkit ``escapeData``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Workflow-command property escaping (``escapeProperty``): also ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(report: LintReport) -> str:
    """``::error file=…,line=…,title=<rule>::message`` per finding, then one summary line.

    GitHub shows only 10 annotations of each kind per step; all are printed anyway
    (the rest stay in the log) and the summary line gives the totals.
    """
    out = []
    for f in report.findings:
        props = [f"file={escape_property(f.path)}"]
        if f.line is not None:
            props.append(f"line={f.line}")
        props.append(f"title={escape_property(f.rule)}")
        message = f.message + (f"\nhint: {f.hint}" if f.hint else "")
        out.append(f"::{_sarif_level(f.severity)} {','.join(props)}::{escape_data(message)}")
    out.append(f"spacetrain lint: {report.summary()}")
    return "\n".join(out) + "\n"


def render_markdown(report: LintReport) -> str:
    """A findings table for ``$GITHUB_STEP_SUMMARY`` (GitHub-flavoured Markdown)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out = ["### spacetrain lint", "", report.summary(), ""]
    rows = [(f, "") for f in report.findings] + [(s.finding, s.reason) for s in report.suppressed]
    if rows:
        out += ["| severity | rule | where | message |", "|---|---|---|---|"]
        for f, reason in rows:
            severity = f"suppressed ({cell(reason)})" if reason else str(f.severity)
            rule_link = f"[{f.rule}]({REGISTRY[f.rule].url})" if f.rule in REGISTRY else f.rule
            out.append(f"| {severity} | {rule_link} | `{_where(f)}` | {cell(f.message)} |")
    return "\n".join(out) + "\n"


REPORTERS: dict[str, Callable[[LintReport], str]] = {
    "text": render_text,
    "json": render_json,
    "sarif": render_sarif,
    "github": render_github,
}


def rules_table() -> str:
    """The README's rule table, generated from REGISTRY (a test keeps them equal)."""
    out = ["| rule | severity | what it checks |", "|---|---|---|"]
    for meta in load_rules().values():
        opt = " (opt-in: `--resolve`)" if meta.opt_in else ""
        out.append(f"| `{meta.id}` | {meta.severity} | {meta.summary}{opt} |")
    return "\n".join(out) + "\n"


def explain_rule(meta: RuleMeta) -> str:
    """What ``spacetrain rule ID`` prints: the rule's documentation as Markdown."""
    opt = "\nOpt-in: runs only with `spacetrain lint --resolve`.\n" if meta.opt_in else ""
    return (
        f"# {meta.id} ({meta.severity})\n\n{meta.summary}\n{opt}\n{meta.doc}\n\n"
        f"Fix: {meta.fix_title}\nSee: {meta.url}\n"
    )
