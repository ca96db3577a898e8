"""Every rule against its good and bad Space folder, and a meta-test that none is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES, assemble

from spacetrain.lint import REGISTRY, lint_folder, load_policy, load_rules

load_rules()
RULES = FIXTURES / "rules"
CASES = sorted(p for p in RULES.glob("*/*") if p.is_dir())


def _case_param(case: Path) -> object:
    """A case that resolves its wheels runs pip: e2e."""
    meta = yaml.safe_load((case / "_case.yaml").read_text()) or {}
    return pytest.param(case, marks=[pytest.mark.e2e] if "resolve" in meta else [])


def _expected(meta: dict, root: Path) -> list[tuple[str, int | None]]:
    """(path, line) of each expected finding; the line is found by its text."""
    out = []
    for item in meta.get("expect", []):
        line = None
        if "line_with" in item:
            lines = (root / item["path"]).read_text().splitlines()
            line = next(n for n, text in enumerate(lines, 1) if item["line_with"] in text)
        out += [(item["path"], line)] * item.get("count", 1)
    return out


@pytest.mark.parametrize(
    "case", [_case_param(c) for c in CASES], ids=lambda p: f"{p.parent.name}-{p.name}"
)
def test_rule_case(case: Path, tmp_path: Path, make_wheels) -> None:
    rule_id, kind = case.parent.name, case.name
    root = tmp_path / "space"
    meta = assemble(case, root)
    policy = None
    if "policy" in meta:
        policy_file = tmp_path / "policy.yaml"
        policy_file.write_text(yaml.safe_dump(meta["policy"]))
        policy = load_policy(policy_file)
    find_links = None
    if "resolve" in meta:
        find_links = [str(make_wheels(meta["resolve"]["wheels"]))]
    report = lint_folder(
        root, policy, shown_root="space", find_links=find_links, resolve=bool(find_links)
    )

    hits = sorted(
        ((f.path.removeprefix("space/"), f.line) for f in report.findings if f.rule == rule_id),
        key=str,
    )
    others = {f.rule for f in report.findings} - {rule_id} - set(meta.get("also", []))
    assert others == set(), [str(f) for f in report.findings if f.rule in others]
    if kind.startswith("good"):
        assert hits == [], report.findings
        assert len(report.suppressed) == meta.get("suppressed", 0)
    else:
        assert hits == sorted(_expected(meta, root), key=str)
        for finding in report.findings:
            assert finding.message and finding.hint
            assert finding.severity == REGISTRY[finding.rule].severity


def test_every_rule_has_a_good_and_a_bad_case() -> None:
    assert {p.name for p in RULES.iterdir()} == set(REGISTRY)
    for rule_id in REGISTRY:
        kinds = {p.name for p in (RULES / rule_id).iterdir()}
        assert {"good", "bad"} <= kinds, rule_id  # good-*/bad-*: one defect class each
        assert all(k.startswith(("good", "bad")) for k in kinds), rule_id
        for kind in kinds:
            meta = yaml.safe_load((RULES / rule_id / kind / "_case.yaml").read_text())
            assert meta.get("description"), f"{rule_id}/{kind} needs a description"
            if kind.startswith("bad"):
                assert meta.get("expect"), f"{rule_id}/bad must say what it expects"


def test_the_base_space_is_clean() -> None:
    report = lint_folder(FIXTURES / "base", load_policy(None))
    assert report.findings == []
    assert report.suppressed == []
    assert len(report.checked) == 5
