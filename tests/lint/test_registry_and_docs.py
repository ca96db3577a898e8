"""The registry's guards, the README's rule table and the repository's own policy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacetrain.lint import REGISTRY, Severity, lint_folder, load_policy, load_rules
from spacetrain.lint.model import Hit
from spacetrain.lint.policy import DEFAULTS
from spacetrain.lint.registry import rule
from spacetrain.lint.reporters import explain_rule, rules_table

REPO = Path(__file__).resolve().parents[2]
DESIGN_IDS = {
    "forbidden-file", "unexpected-file", "missing-file", "base-image-unpinned",
    "base-image-untrusted", "pip-unpinned", "torch-cpu-wheel", "hardcoded-token",
    "readme-front-matter", "app-port-mismatch", "healthcheck-missing", "build-time-download",
    "gradio-incompatible", "app-listen-address", "user-not-1000", "pins-unresolvable",
}  # fmt: skip
DOC = """Summary.

## What it does
x
## Why is this bad?
y
## Example
z
"""


def test_every_design_rule_id_is_registered() -> None:
    load_rules()
    assert set(REGISTRY) >= DESIGN_IDS
    assert REGISTRY["user-not-1000"].severity is Severity.WARNING
    assert REGISTRY["pins-unresolvable"].opt_in


def test_every_rule_documents_itself() -> None:
    for meta in load_rules().values():
        text = explain_rule(meta)
        for heading in ("What it does", "Why is this bad?", "Example"):
            assert meta.section(heading), (meta.id, heading)
        assert meta.summary.endswith("."), meta.id
        assert meta.url.startswith("https://"), meta.id
        assert text.startswith(f"# {meta.id} ({meta.severity})")


@pytest.mark.parametrize(
    ("rule_id", "doc", "error"),
    [
        ("pip-unpinned", DOC, "registered twice"),
        ("Bad_Id", DOC, "not kebab-case"),
        ("fresh-rule", "Summary only.", "docstring needs"),
    ],
)
def test_register_guards(rule_id: str, doc: str, error: str) -> None:
    load_rules()

    def fresh(space: object) -> Iterator[Hit]:
        yield from ()

    fresh.__doc__ = doc
    with pytest.raises(ValueError, match=error):
        rule(rule_id, Severity.ERROR, fix_title="x")(fresh)
    assert "fresh-rule" not in REGISTRY


def test_readme_rule_table_matches_the_registry() -> None:
    readme = (REPO / "docs" / "lint.md").read_text()
    match = re.search(r"<!-- rules:start -->\n(.*?)<!-- rules:end -->", readme, re.S)
    assert match, "docs/lint.md needs the rules table between <!-- rules:start/end --> markers"
    assert match.group(1) == rules_table(), "regenerate with spacetrain.lint.reporters.rules_table"


def test_repository_policy_loads_and_restates_the_defaults() -> None:
    policy = load_policy(REPO / "policy" / "space.yaml")
    for section, value in DEFAULTS.items():
        if section not in {"rules", "ignore"}:
            assert policy[section] == value, section
    assert policy.severities == {
        "user-not-1000": Severity.WARNING,
        "healthcheck-missing": Severity.ERROR,
        "base-image-digest": Severity.ERROR,
    }


def test_default_allowlist_is_the_seeds_nvidia_cuda_only() -> None:
    allow = DEFAULTS["base_images"]["allow"]
    assert allow == ["nvidia/cuda:*"]
    assert allow == load_policy(REPO / "policy" / "space.yaml")["base_images"]["allow"]
    assert REGISTRY["base-image-digest"].severity is Severity.WARNING


def test_pre_commit_hook_runs_the_linter() -> None:
    import yaml

    [hook] = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "spacetrain-lint"
    assert hook["entry"] == "spacetrain lint"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False


SPACE = REPO / "space"


@pytest.mark.skipif(
    not all((SPACE / n).is_file() for n in ("README.md", "app.py", "Dockerfile")),
    reason="space/ is still being written",
)
def test_the_real_space_has_no_findings() -> None:
    report = lint_folder(SPACE, load_policy(REPO / "policy" / "space.yaml"), shown_root="space")
    assert [str(f) for f in report.findings] == []
