"""``dataset validate``: every finding on a broken file, and the shipped demo data clean."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from spacetrain.cli import main
from spacetrain.dataset import demo_dataset_path, validate_file
from spacetrain.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, InputFileError
from spacetrain.evaluate.gate import default_policy
from spacetrain.evaluate.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "spacetrain" / "data" / "kwanzaa.jsonl"
SUITE = REPO / "policy" / "evals" / "kwanzaa.yaml"
PATTERNS = default_policy().attribution_patterns
FAKE_TOKEN = "hf_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7"


def chat(q: str, a: str, system: str | None = None) -> dict:
    msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    if system:
        msgs.insert(0, {"role": "system", "content": system})
    return {"messages": msgs}


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def codes(report: object) -> list[tuple[int | None, str, str]]:
    return [(i.line, i.severity, i.code) for i in report.issues]  # type: ignore[attr-defined]


# ------------------------------------------------------------------ demo data


def test_demo_dataset_size_and_facts() -> None:
    assert demo_dataset_path().read_bytes() == DEMO.read_bytes()
    report = validate_file(DEMO, attribution_patterns=PATTERNS)
    assert report.errors == [] and report.warnings == []
    assert 40 <= len(report.examples) <= 60
    assert report.formats == {"messages"}
    answers = {ex.question: ex.answers[0] for ex in report.examples}
    meanings = {
        "Umoja": "unity",
        "Kujichagulia": "self-determination",
        "Ujima": "collective work and responsibility",
        "Ujamaa": "cooperative economics",
        "Nia": "purpose",
        "Kuumba": "creativity",
        "Imani": "faith",
    }
    for word, meaning in meanings.items():
        assert meaning in answers[f"What does {word} mean?"]
    days = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh"]
    dates = [
        "December 26",
        "December 27",
        "December 28",
        "December 29",
        "December 30",
        "December 31",
        "January 1",
    ]
    for day, date, word in zip(days, dates, meanings, strict=True):
        answer = answers[f"Which principle is honored on the {day} day of Kwanzaa?"]
        assert date in answer and word in answer
    assert "Maulana Karenga" in answers["Who created Kwanzaa?"]
    assert "1966" in answers["When was Kwanzaa created?"]
    assert "December 31" in answers["What is the Karamu?"]
    assert answers["What colors are the Kwanzaa candles?"] == (
        "Three red, one black and three green."
    )


def test_demo_suite_prompts_show_as_eval_leak_warnings() -> None:
    suite = load_suite(SUITE)
    report = validate_file(
        DEMO, attribution_patterns=PATTERNS, suite_prompts=[(c.id, c.prompt) for c in suite.cases]
    )
    assert report.errors == []
    leaks = [i for i in report.warnings if i.code == "eval-leak"]
    assert len(leaks) == len(suite.cases)  # every demo eval prompt is a training question


# -------------------------------------------------------------- broken files


def test_every_kind_of_problem_is_found(tmp_path: Path) -> None:
    rows: list = [
        chat("What does Umoja mean?", "Umoja means unity."),  # 1 fine
        [1, 2],  # 2 not an object
        {"text": "raw"},  # 3 no known format
        {"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "q"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},  # 5
        {"messages": [{"role": "user", "content": "q"}]},  # 6 no answer
        chat("Empty answer?", "   "),  # 7
        chat("What does Umoja mean?", "Umoja means unity."),  # 8 duplicate of 1
        chat("What does umoja mean", "Umoja means oneness."),  # 9 conflicting answer
        chat("What is Nia?", "Nia means purpose. Generated with Claude"),  # 10 attribution
        chat("My token?", f"use {FAKE_TOKEN}"),  # 11 hub token
        {"messages": [{"role": "robot", "content": "x"}]},  # 12 unknown role
        {"prompt": "What does Kuumba mean?", "completion": "Creativity."},  # 13 other format
        chat("Extra key?", "yes") | {"id": 7},  # 14 extra key: warning
        "",  # 15 blank line
        {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]},
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "system", "content": "s"},
                {"role": "assistant", "content": "a"},
            ]
        },  # 17 system not first
    ]
    report = validate_file(write_jsonl(tmp_path / "d.jsonl", rows), attribution_patterns=PATTERNS)
    found = codes(report)
    expected = {
        (2, "error", "schema"),
        (3, "error", "schema"),
        (4, "error", "role-order"),
        (5, "error", "role-order"),
        (6, "error", "role-order"),
        (7, "error", "empty-turn"),
        (8, "error", "duplicate"),
        (9, "warning", "conflicting-answers"),
        (10, "error", "attribution"),
        (11, "error", "hub-token"),
        (12, "error", "role"),
        (None, "error", "mixed-format"),
        (14, "warning", "extra-key"),
        (15, "warning", "blank-line"),
        (16, "error", "schema"),
        (17, "error", "role-order"),
    }
    assert expected <= set(found), sorted(set(expected) - set(found), key=str)
    assert not [f for f in found if f[0] in (1, 13)]
    # the token itself is never printed back
    assert all(FAKE_TOKEN not in i.message for i in report.issues)


def test_prompt_completion_format_and_message_lists(tmp_path: Path) -> None:
    rows = [
        {"prompt": "What does Kuumba mean?", "completion": "Kuumba means creativity."},
        {
            "prompt": [{"role": "user", "content": "What does Nia mean?"}],
            "completion": [{"role": "assistant", "content": "Nia means purpose."}],
        },
        {"prompt": "Attribution?", "completion": "Sure. Co-Authored-By: Claude"},
    ]
    report = validate_file(write_jsonl(tmp_path / "pc.jsonl", rows), attribution_patterns=PATTERNS)
    assert report.formats == {"prompt_completion"}
    assert codes(report) == [(3, "error", "attribution")]


def test_attribution_in_user_turns_is_not_an_error(tmp_path: Path) -> None:
    rows = [chat("Is 'Generated with Claude' an attribution line?", "Yes, it is one.")]
    report = validate_file(write_jsonl(tmp_path / "u.jsonl", rows), attribution_patterns=PATTERNS)
    assert report.errors == []


def test_bad_json_is_a_malformed_file_naming_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps(chat("a", "b")) + "\n" + '{"messages": [}\n' + "{nope\n", encoding="utf-8"
    )
    with pytest.raises(InputFileError) as info:
        validate_file(path)
    assert info.value.line == 2
    assert str(info.value).startswith(f"{path}:2: not valid JSON: ")
    assert "(2 lines in all are not JSON)" in str(info.value)


def test_not_utf8_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(chat("a", "b")).encode() + b'\n{"x": "caf\xe9"}\n')
    with pytest.raises(InputFileError) as info:
        validate_file(path)
    assert info.value.line == 2 and "not UTF-8" in str(info.value)
    with pytest.raises(InputFileError, match="no such file"):
        validate_file(tmp_path / "missing.jsonl")


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    report = validate_file(path)
    assert codes(report) == [(None, "error", "empty")]


def test_too_long_with_a_tokenizer(tmp_path: Path, tiny_llama: Callable[[list[str]], Path]) -> None:
    from transformers import AutoTokenizer

    rows = [chat("Short?", "Yes."), chat("Long?", " ".join(["unity"] * 200))]
    corpus = [m["content"] for r in rows for m in r["messages"]]
    model_dir = tiny_llama(corpus)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = write_jsonl(tmp_path / "long.jsonl", rows)
    report = validate_file(data, tokenizer=tokenizer, max_length=64)
    assert codes(report) == [(2, "error", "too-long")]
    assert "> max_length 64" in report.errors[0].message
    assert validate_file(data, tokenizer=tokenizer, max_length=4096).errors == []


# ------------------------------------------------------------------------ CLI


def test_cli_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [chat("q1", "a1"), chat("q2", "a2")])
    assert main(["dataset", "validate", str(good)]) == EXIT_OK
    out, _ = capsys.readouterr()
    assert out.strip() == f"{good}: 2 examples (messages), 0 error(s), 0 warning(s)"

    warn = write_jsonl(tmp_path / "warn.jsonl", [chat("q1", "a1") | {"meta": 1}])
    assert main(["dataset", "validate", str(warn)]) == EXIT_OK
    out, _ = capsys.readouterr()
    assert f"{warn}:1: warning: extra key(s) meta" in out

    bad = write_jsonl(tmp_path / "bad.jsonl", [chat("q", "Done. 🤖 Generated with Claude Code")])
    assert main(["dataset", "validate", str(bad)]) == EXIT_FAILED
    out, _ = capsys.readouterr()
    assert f"{bad}:1: error: an answer carries AI-attribution text" in out


def test_cli_validate_with_gate_patterns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [chat("q", "Brought to you by RoboWriter.")])
    assert main(["dataset", "validate", str(data)]) == EXIT_OK
    gate = tmp_path / "gate.yaml"
    gate.write_text(
        "thresholds: {overall: 0.75, category: 0.7, attribution_clean: 1.0}\n"
        "attribution_patterns: ['by robowriter']\n"
    )
    assert main(["dataset", "validate", str(data), "--gate", str(gate)]) == EXIT_FAILED
    capsys.readouterr()


@pytest.mark.e2e
def test_cli_subprocess_malformed_file_exit_2_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(chat("a", "b")) + "\n\n" + "not json at all\n")
    proc = subprocess.run(
        [sys.executable, "-m", "spacetrain", "dataset", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == EXIT_USAGE
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"spacetrain dataset: error: {path}:3: not valid JSON: Expecting value at column 1"
    ]


def test_cli_malformed_suite_given_to_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [chat("q", "a")])
    suite = tmp_path / "s.yaml"
    suite.write_text("cases:\n  - id: x\n    category: c\n    prompt: q\n    checks: [rgx: a]\n")
    assert main(["dataset", "validate", str(data), "--suite", str(suite)]) == EXIT_USAGE
    _, err = capsys.readouterr()
    assert err.startswith(f"spacetrain dataset: error: {suite}:5: case 'x': checks[0]: unknown")
