"""Suppressions (inline and in the policy), severity overrides, and how they are counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spacetrain.cli import main
from spacetrain.lint import lint_folder, load_policy
from spacetrain.lint.reporters import render_github, render_json, render_sarif, render_text

BASE_DF = (Path(__file__).parent / "fixtures" / "base" / "Dockerfile").read_text()
UNPINNED_RUN = (
    "RUN pip install --no-cache-dir \\\n        gradio==6.31.0 \\\n        huggingface_hub==2.4.0\n"
)


def with_unpinned(comment: str) -> str:
    run = UNPINNED_RUN.replace("huggingface_hub==2.4.0", "huggingface_hub")
    return BASE_DF.replace(UNPINNED_RUN, comment + run)


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def rules_of(report) -> list[tuple[str, int | None]]:
    return [(f.rule, f.line) for f in report.findings]


def test_comment_above_a_continued_run_covers_all_its_lines(space) -> None:
    df = with_unpinned("# spacetrain: ignore[pip-unpinned] hub version comes later\n")
    root = space(Dockerfile=df)
    report = lint_folder(root, load_policy(None))
    assert report.findings == []
    [suppressed] = report.suppressed
    assert suppressed.finding.rule == "pip-unpinned"
    assert suppressed.finding.line == line_of(df, "huggingface_hub")  # 3rd line of the RUN
    assert suppressed.reason == "hub version comes later"
    assert suppressed.source == "inline"


def test_comment_inside_the_continuation_covers_the_next_line(space) -> None:
    df = BASE_DF.replace(
        "        huggingface_hub==2.4.0\n",
        "        # spacetrain: ignore[pip-unpinned] pinned by gradio's own range\n"
        "        huggingface_hub\n",
    )
    report = lint_folder(space(Dockerfile=df), load_policy(None))
    assert report.findings == []
    assert len(report.suppressed) == 1


def test_a_suppression_for_another_rule_does_not_cover(space) -> None:
    df = with_unpinned("# spacetrain: ignore[torch-cpu-wheel] not this rule\n")
    report = lint_folder(space(Dockerfile=df), load_policy(None))
    assert rules_of(report) == [("pip-unpinned", line_of(df, "huggingface_hub"))]
    assert report.suppressed == []


def test_a_suppression_two_code_lines_away_does_not_cover(space) -> None:
    df = BASE_DF.replace(
        "RUN useradd -m -u 1000 user\nUSER user\n",
        "# spacetrain: ignore[user-not-1000] only covers the next instruction\n"
        "RUN useradd -m -u 1000 user\nUSER root\n",
    )
    report = lint_folder(space(Dockerfile=df), load_policy(None))
    assert rules_of(report) == [("user-not-1000", line_of(df, "USER root"))]


def test_trailing_comment_in_python(space) -> None:
    app = (Path(__file__).parent / "fixtures/base/app.py").read_text()
    app = app.replace(
        '    server_name="0.0.0.0",\n',
        '    server_name="127.0.0.1",  # spacetrain: ignore[app-listen-address] behind a proxy\n',
    )
    report = lint_folder(space(**{"app.py": app}), load_policy(None))
    assert report.findings == []
    assert [s.finding.rule for s in report.suppressed] == ["app-listen-address"]


def test_yaml_comment_inside_readme_front_matter(space) -> None:
    readme = (
        "---\n"
        "title: x\n"
        "# spacetrain: ignore[readme-front-matter] the org's card generator sets it\n"
        "sdk: gradio\n"
        "app_port: 7860\n"
        "---\n"
    )
    report = lint_folder(space(**{"README.md": readme}), load_policy(None))
    assert report.findings == []
    assert [s.finding.line for s in report.suppressed] == [4]


def test_policy_ignore_is_counted_in_every_format(space, tmp_path: Path) -> None:
    root = space(**{"notes.md": "draft\n"})
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "ignore:\n  - {rule: unexpected-file, path: 'notes.md', reason: drafts of the card}\n"
    )
    report = lint_folder(root, load_policy(policy), shown_root="space")
    assert report.findings == []
    [s] = report.suppressed
    assert (s.source, s.reason, s.finding.path) == (
        "policy",
        "drafts of the card",
        "space/notes.md",
    )
    assert "0 errors, 0 warnings, 1 suppressed in space/" in render_text(report)
    assert json.loads(render_json(report))["suppressed"] == 1
    sarif = json.loads(render_sarif(report))
    assert sarif["runs"][0]["results"][0]["suppressions"][0]["kind"] == "external"
    assert ", 1 suppressed in space/" in render_github(report)


@pytest.mark.parametrize(
    ("level", "code", "ran"), [("error", 1, True), ("warning", 0, True), ("off", 0, False)]
)
def test_severity_overrides(space, tmp_path: Path, level: str, code: int, ran: bool) -> None:
    root = space(Dockerfile=BASE_DF.replace("USER user\n", ""))
    policy = tmp_path / "p.yaml"
    policy.write_text(f"rules:\n  user-not-1000: '{level}'\n")
    assert main(["lint", str(root), "--policy", str(policy)]) == code
    report = lint_folder(root, load_policy(policy))
    assert ("user-not-1000" in report.rules_run) is ran
    assert [f.severity for f in report.findings] == ([level] if ran else [])


def test_suppression_findings_cannot_suppress_themselves(space) -> None:
    df = BASE_DF.replace(
        "USER user\n",
        "# spacetrain: ignore[suppression-without-reason, user-not-1000]\nUSER user\n",
    )
    report = lint_folder(space(Dockerfile=df), load_policy(None))
    assert rules_of(report) == [("suppression-without-reason", line_of(df, "# spacetrain"))]
