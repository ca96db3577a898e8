"""The report JSON contract, reading it back, ``spacetrain gate``, and the Markdown page."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spacetrain.cli import main
from spacetrain.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, InputFileError
from spacetrain.evaluate.gate import default_policy, load_gate
from spacetrain.evaluate.report import (
    CONTRACT_KEYS,
    EvaluationReport,
    ReportHasNoCases,
    build_report,
    load_report,
    render_markdown,
    write_json,
)
from spacetrain.evaluate.scoring import CaseResult, aggregate

POLICY = default_policy()


def case(cid: str, category: str, score: float, output: str = "fine answer") -> CaseResult:
    failed = () if score == 1 else ("contains: 'x'",)
    return CaseResult(cid, category, score, output, failed_checks=failed, checks=2)


def passing_results() -> list[CaseResult]:
    return [
        case("p1", "principles", 1.0, "Umoja means unity."),
        case("p2", "principles", 0.5, "Nia means faith."),
        case("d1", "days", 1.0, "Kwanzaa begins on December 26."),
        case("d2", "days", 1.0, "Kwanzaa ends on January 1."),
    ]


META = {
    "base_model": "tiny/base",
    "base_revision": None,
    "adapter": {"repo": "me/kwanzaa", "revision": "abc123"},
    "suite": {"name": "kwanzaa", "path": "policy/evals/kwanzaa.yaml", "cases": 4},
    "generation": {"max_new_tokens": 48, "batch_size": 8, "dtype": "float32", "merged": True},
    "device": "cpu",
}


def test_report_has_the_contract_keys() -> None:
    base = [case(r.id, r.category, 0.0, "gibberish") for r in passing_results()]
    report = build_report(
        policy=POLICY, results=passing_results(), base_results=base, meta=dict(META)
    )
    for key in (
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
    ):
        assert key in report, key
    assert report["schema_version"] == 1
    assert report["passed"] is True and report["failures"] == []
    assert report["overall"] == 0.875
    assert report["categories"] == {"principles": 0.75, "days": 1.0}
    assert report["thresholds"] == {"overall": 0.75, "category": 0.7, "attribution_clean": 1.0}
    assert report["base"] == {
        "overall": 0.0,
        "categories": {"principles": 0.0, "days": 0.0},
        "attribution_clean": 1.0,
    }
    assert report["adapter"] == {"repo": "me/kwanzaa", "revision": "abc123"}
    first = report["cases"][1]
    assert set(first) >= {"id", "category", "score", "output", "failed_checks"}
    assert first["failed_checks"] == ["contains: 'x'"]
    json.dumps(report)  # serialisable as is


def test_the_typed_report_is_the_json_and_gate_reads_it_back_through_it(tmp_path: Path) -> None:
    base = [case(r.id, r.category, 0.0, "gibberish") for r in passing_results()]
    built = build_report(policy=POLICY, results=passing_results(), base_results=base, meta=META)
    typed = EvaluationReport.from_json(built)
    assert (typed.passed, typed.overall, typed.failures) == (True, 0.875, ())
    assert typed.categories == {"principles": 0.75, "days": 1.0} and typed.exit_code == EXIT_OK
    assert typed.base is not None and typed.base["overall"] == 0.0
    assert typed.adapter == {"repo": "me/kwanzaa", "revision": "abc123"}
    assert set(CONTRACT_KEYS) <= set(typed.to_json())
    assert json.dumps(typed.to_json()) == json.dumps(built)  # same keys, order and values
    path = tmp_path / "report.json"
    write_json(path, typed.to_json())
    saved = load_report(path, POLICY)
    assert saved.report == typed and saved.raw == built
    crashed = EvaluationReport(passed=False, failures=("evaluation crashed: boom",))
    assert crashed.exit_code == EXIT_FAILED
    assert crashed.to_json() == {
        "passed": False, "failures": ["evaluation crashed: boom"], "base_model": None,
        "adapter": None, "cases": [],
    }  # fmt: skip


def test_round_trip_and_gate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "report.json"
    write_json(path, build_report(policy=POLICY, results=passing_results(), meta=dict(META)))
    saved = load_report(path, POLICY)
    assert [c.id for c in saved.cases] == ["p1", "p2", "d1", "d2"]
    assert aggregate(saved.cases).overall == pytest.approx(0.875)

    assert main(["gate", str(path)]) == EXIT_OK
    out, _ = capsys.readouterr()
    assert out.splitlines()[-1] == "gate: PASSED"

    strict = tmp_path / "strict.yaml"
    strict.write_text("thresholds: {overall: 0.9, category: 0.8, attribution_clean: 1.0}\n")
    assert main(["gate", str(path), "--gate", str(strict)]) == EXIT_FAILED
    out, _ = capsys.readouterr()
    assert "FAIL overall 0.875 < 0.90" in out
    assert "FAIL category principles 0.75 < 0.80" in out
    assert out.splitlines()[-1] == "gate: FAILED"


def test_gate_rescans_outputs_with_todays_patterns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = passing_results()
    results[0] = case("p1", "principles", 1.0, "Umoja means unity. Written by RoboScribe.")
    path = tmp_path / "report.json"
    write_json(path, build_report(policy=POLICY, results=results, meta=dict(META)))
    assert main(["gate", str(path)]) == EXIT_OK
    extended = tmp_path / "gate.yaml"
    extended.write_text(
        "thresholds: {overall: 0.75, category: 0.7, attribution_clean: 1.0}\n"
        "attribution_patterns: ['written by roboscribe']\n"
    )
    assert main(["gate", str(path), "--gate", str(extended)]) == EXIT_FAILED
    out, _ = capsys.readouterr()
    assert "FAIL attribution_clean 0.75 < 1.00 (1 output(s) with AI-attribution text: p1)" in out


def test_attribution_fails_a_report_with_high_scores(tmp_path: Path) -> None:
    results = [case(f"c{i}", "x", 1.0, f"Answer {i}.") for i in range(7)]
    results.append(case("c7", "x", 1.0, "Answer. Co-Authored-By: Claude <noreply@anthropic.com>"))
    report = build_report(policy=POLICY, results=results, meta=dict(META))
    assert report["overall"] == 1.0
    assert report["passed"] is False
    assert report["attribution_clean"] == 0.875
    assert report["cases"][7]["attribution"]


def test_baseline_report_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "baseline.json"
    perfect = [case(r.id, r.category, 1.0) for r in passing_results()]
    write_json(baseline, build_report(policy=POLICY, results=perfect, meta=dict(META)))
    current = tmp_path / "current.json"
    write_json(current, build_report(policy=POLICY, results=passing_results(), meta=dict(META)))
    gate = Path(__file__).resolve().parents[2] / "policy" / "gate.yaml"
    code = main(["gate", str(current), "--gate", str(gate), "--baseline-report", str(baseline)])
    out, _ = capsys.readouterr()
    assert code == EXIT_FAILED
    assert "overall fell 0.125 from the baseline's 1.00 to 0.875 (max_regression 0.10)" in out
    assert "category principles fell 0.25" in out
    # against itself there is no regression
    assert (
        main(["gate", str(current), "--gate", str(gate), "--baseline-report", str(current)])
        == EXIT_OK
    )
    capsys.readouterr()


def test_report_without_cases_fails_closed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"passed": True, "overall": 1.0, "cases": []}))
    with pytest.raises(ReportHasNoCases):
        load_report(path, POLICY)
    assert main(["gate", str(path)]) == EXIT_FAILED
    _, err = capsys.readouterr()
    assert (
        err == f"spacetrain gate: error: {path}: the report has no cases, so it cannot pass "
        "the gate\n"
    )


def test_report_of_the_base_alone_never_passes(tmp_path: Path) -> None:
    path = tmp_path / "base-only.json"
    perfect = [case(r.id, r.category, 1.0) for r in passing_results()]
    write_json(
        path,
        build_report(
            policy=POLICY,
            results=perfect,
            meta=dict(META) | {"adapter": None},
            adapter_present=False,
        ),
    )
    assert main(["gate", str(path)]) == EXIT_FAILED


@pytest.mark.parametrize(
    ("content", "words", "line"),
    [
        ('{"cases": [\n  {"id": 1,}\n]}', "not valid JSON", 2),
        ("[1, 2]", "not an evaluation report", None),
        ('{"cases": {"a": 1}}', "'cases' must be a list", None),
        (
            '{"cases": [{"id": "a", "category": "c", "output": "o", "score": 1.5}]}',
            "cases[0] (a): 'score' must be a number from 0 to 1",
            None,
        ),
        (
            '{"cases": [{"id": "a", "category": "c", "score": 1}]}',
            "cases[0]: 'output' must be a string",
            None,
        ),
        (
            '{"overall": 0.99, "cases": '
            '[{"id": "a", "category": "c", "output": "o", "score": 0.5}]}',
            "'overall' 0.99 does not match its cases (0.50)",
            None,
        ),
        (
            '{"categories": {"c": 1.0}, "cases": [{"id": "a", "category": "c", "output": "o", '
            '"score": 0.5}]}',
            "category 'c' 1.0 does not match its cases",
            None,
        ),
    ],
)
def test_malformed_or_tampered_report_is_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    words: str,
    line: int | None,
) -> None:
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(InputFileError) as info:
        load_report(path, POLICY)
    assert info.value.line == line
    assert words in str(info.value)
    assert main(["gate", str(path)]) == EXIT_USAGE
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and str(path) in err


def test_missing_report_and_malformed_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gate", str(tmp_path / "nope.json")]) == EXIT_USAGE
    _, err = capsys.readouterr()
    assert err == f"spacetrain gate: error: {tmp_path / 'nope.json'}: no such file\n"
    report = tmp_path / "r.json"
    write_json(report, build_report(policy=POLICY, results=passing_results(), meta=dict(META)))
    gate = tmp_path / "gate.yaml"
    gate.write_text("thresholds:\n  overall: high\n")
    assert main(["gate", str(report), "--gate", str(gate)]) == EXIT_USAGE
    _, err = capsys.readouterr()
    assert err.startswith(f"spacetrain gate: error: {gate}:2: thresholds.overall: must be a number")


def test_markdown_page() -> None:
    base = [case(r.id, r.category, 0.0, "zzz") for r in passing_results()]
    results = passing_results()
    results[1] = case("p2", "principles", 0.5, "Nia | means `faith`.\nSecond line.")
    report = build_report(policy=POLICY, results=results, base_results=base, meta=dict(META))
    md = render_markdown(report)
    assert md.startswith("## Evaluation `kwanzaa`: PASSED ✅\n")
    assert "adapter `me/kwanzaa` @ `abc123` on base `tiny/base`; 4 cases" in md
    assert "| category | n | base | adapter | gain | threshold |  |" in md
    assert "| principles | 2 | 0.00 | **0.75** | +0.75 | 0.70 | ✅ |" in md
    assert "| **overall** | 4 | 0.00 | **0.875** | +0.88 | 0.75 | ✅ |" in md
    assert "Attribution-clean outputs: **1.00** (4/4; threshold 1.00) ✅" in md
    # the worst case is listed with its output, table-safe on one line
    assert (
        "| `p2` | principles | 0.50 | contains: 'x' | Nia \\| means 'faith'. Second line. |" in md
    )
    assert "### Failures" not in md


def test_markdown_of_a_failing_report_lists_failures() -> None:
    policy = load_gate(Path(__file__).resolve().parents[2] / "policy" / "gate.yaml")
    results = [case("a", "x", 0.0, "nothing"), case("b", "x", 1.0, "Generated with Claude")]
    md = render_markdown(build_report(policy=policy, results=results, meta=dict(META)))
    assert "FAILED ❌" in md
    assert "### Failures\n\n- overall 0.50 < 0.75\n- category x 0.50 < 0.70\n" in md
    assert "attribution text" in md


@pytest.mark.e2e
def test_gate_subprocess_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    write_json(good, build_report(policy=POLICY, results=passing_results(), meta=dict(META)))
    proc = subprocess.run(
        [sys.executable, "-m", "spacetrain", "gate", str(good)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    assert proc.stdout.endswith("gate: PASSED\n")
    proc = subprocess.run(
        [sys.executable, "-m", "spacetrain", "gate", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == EXIT_USAGE
    assert "Traceback" not in proc.stderr
