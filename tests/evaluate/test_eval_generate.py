"""Generation and ``spacetrain evaluate`` on a tiny real model: batching, merging, failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from eval_support import DEMO_SUITE, GATE

from spacetrain.cli import main
from spacetrain.errors import EXIT_FAILED, EXIT_USAGE
from spacetrain.evaluate.generate import Generator, resolve
from spacetrain.evaluate.suite import load_suite

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def conversations() -> list:
    return load_suite(DEMO_SUITE).conversations()[:12]


def test_batched_merged_matches_one_at_a_time_unmerged(
    eval_model: Path, random_adapter: Path, conversations: list
) -> None:
    fast = Generator.load(resolve(str(eval_model)))
    fast.apply_adapter(resolve(str(random_adapter), adapter=True), merge=True)
    slow = Generator.load(resolve(str(eval_model)))
    slow.apply_adapter(resolve(str(random_adapter), adapter=True), merge=False)
    batched = fast.generate(conversations, max_new_tokens=24, batch_size=8)
    single = slow.generate(conversations, max_new_tokens=24, batch_size=1, sort_by_length=False)
    assert batched == single
    # and the adapter did change the model: the base alone answers differently
    base = Generator.load(resolve(str(eval_model)))
    assert base.generate(conversations, max_new_tokens=24, batch_size=8) != batched


def test_left_padding_and_only_the_new_tokens_are_decoded(eval_model: Path) -> None:
    import torch

    gen = Generator.load(resolve(str(eval_model)))
    assert gen.tokenizer.padding_side == "left"
    assert gen.dtype == "float32" and gen.device == "cpu"
    short = [{"role": "user", "content": "What is the kinara?"}]
    long = [{"role": "user", "content": "Which principle is honored on the sixth day of Kwanzaa?"}]
    answers = gen.generate([long, short], max_new_tokens=12, batch_size=2)
    # by hand, one prompt alone: no padding at all
    ids = torch.tensor([gen.encode(short)])
    out = gen.model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False
    )
    expected = gen.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
    assert answers[1] == expected
    assert "<|assistant|>" not in answers[1] and "What is the kinara" not in answers[1]


def test_system_prompt_and_generation_prompt_are_rendered(eval_model: Path) -> None:
    gen = Generator.load(resolve(str(eval_model)))
    ids = gen.encode(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the kinara?"},
        ]
    )
    text = gen.tokenizer.decode(ids)
    assert text.startswith("<s><|system|>\nBe brief.</s>")
    assert text.endswith("<|assistant|>\n")


def test_evaluate_cli_report_and_markdown(
    eval_model: Path, random_adapter: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path, md_path = tmp_path / "out" / "report.json", tmp_path / "out" / "summary.md"
    code = main([
        "evaluate", "--base-model", str(eval_model), "--adapter", str(random_adapter),
        "--suite", str(DEMO_SUITE), "--gate", str(GATE), "--compare-base",
        "--report", str(report_path), "--markdown", str(md_path), "--batch-size", "4",
    ])  # fmt: skip
    out, _ = capsys.readouterr()
    assert code == EXIT_FAILED  # an untrained adapter knows nothing
    assert out.splitlines()[-1] == "gate: FAILED"
    report = json.loads(report_path.read_text())
    assert report["passed"] is False
    assert len(report["cases"]) == len(load_suite(DEMO_SUITE).cases)
    assert set(report["base"]) == {"overall", "categories", "attribution_clean"}
    assert report["adapter"]["repo"] == str(random_adapter)
    assert len(report["adapter"]["sha256"]) == 64
    gen = report["generation"]
    assert gen["batch_size"] == 4 and gen["max_new_tokens"] == 48
    assert gen["dtype"] == "float32" and gen["merged"] is True and gen["greedy"] is True
    assert report["device"] == "cpu"
    assert {"torch", "transformers", "peft"} <= set(report["versions"])
    assert {"load_s", "base_generate_s", "generate_s", "total_s"} <= set(report["timings"])
    assert report["suite"]["name"] == "kwanzaa" and len(report["suite"]["sha256"]) == 64
    md = md_path.read_text()
    assert md.startswith("## Evaluation `kwanzaa`: FAILED ❌")
    assert "| category | n | base | adapter | gain |" in md


def test_github_step_summary_is_appended_to(
    eval_model: Path,
    random_adapter: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("## earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    main(
        [
            "evaluate",
            "--base-model",
            str(eval_model),
            "--adapter",
            str(random_adapter),
            "--suite",
            str(DEMO_SUITE),
            "--markdown",
            str(summary),
        ]
    )
    capsys.readouterr()
    text = summary.read_text()
    assert text.startswith("## earlier step\n## Evaluation `kwanzaa`")


def test_no_adapter_never_passes(
    eval_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "base.json"
    code = main(
        [
            "evaluate",
            "--base-model",
            str(eval_model),
            "--suite",
            str(DEMO_SUITE),
            "--report",
            str(report_path),
        ]
    )
    out, _ = capsys.readouterr()
    assert code == EXIT_FAILED
    assert "FAIL no adapter was evaluated" in out
    report = json.loads(report_path.read_text())
    assert report["adapter"] is None and report["passed"] is False
    assert main(["gate", str(report_path)]) == EXIT_FAILED
    capsys.readouterr()


@pytest.mark.parametrize(
    ("make", "extra", "words"),
    [
        ("missing", [], "no such adapter folder"),
        ("empty", [], "not a PEFT adapter: no adapter_config.json"),
        ("no-weights", [], "the adapter has no adapter_model.safetensors"),
        ("ok", ["--adapter-revision", "main"], "--adapter-revision needs a Hub id"),
        ("ok", ["--device", "tpu"], "--device must be cpu or cuda"),
        ("ok", ["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_bad_adapter_or_options_are_exit_2_one_line(
    eval_model: Path,
    random_adapter: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: str,
    extra: list[str],
    words: str,
) -> None:
    adapter = tmp_path / "adapter"
    if make == "empty":
        adapter.mkdir()
    elif make == "no-weights":
        adapter.mkdir()
        shutil.copy(random_adapter / "adapter_config.json", adapter)
    elif make == "ok":
        adapter = random_adapter
    code = main(
        [
            "evaluate",
            "--base-model",
            str(eval_model),
            "--adapter",
            str(adapter),
            "--suite",
            str(DEMO_SUITE),
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE, err
    assert out == ""
    assert err.count("\n") == 1 and words in err


def test_crash_during_generation_fails_closed(
    eval_model: Path, random_adapter: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An adapter shipping a tokenizer with a token the model has no embedding for."""
    from transformers import AutoTokenizer

    adapter = tmp_path / "adapter"
    shutil.copytree(random_adapter, adapter)
    tokenizer = AutoTokenizer.from_pretrained(eval_model)
    tokenizer.add_tokens(["<unknown-to-the-model>"])
    tokenizer.save_pretrained(adapter)
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "cases:\n  - id: boom\n    category: c\n    prompt: 'Hi <unknown-to-the-model>'\n"
        "    checks: [contains: x]\n"
    )
    report_path = tmp_path / "crash.json"
    code = main(
        [
            "evaluate",
            "--base-model",
            str(eval_model),
            "--adapter",
            str(adapter),
            "--suite",
            str(suite),
            "--report",
            str(report_path),
        ]
    )
    out, err = capsys.readouterr()
    assert code == EXIT_FAILED
    assert out == ""
    assert err.splitlines()[-1].startswith("spacetrain evaluate: error: evaluation crashed: ")
    report = json.loads(report_path.read_text())
    assert report["passed"] is False and report["cases"] == []
    assert report["failures"][0].startswith("evaluation crashed: ")
    assert main(["gate", str(report_path)]) == EXIT_FAILED
    capsys.readouterr()
