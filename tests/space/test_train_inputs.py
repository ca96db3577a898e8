"""train.py refuses bad input with exit 2 and one line that names the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .support import (
    TRAIN_PY,
    TrainResult,
    chat_rows,
    free_port,
    load_module,
    run_train,
    write_jsonl,
)

GOOD = json.dumps(chat_rows([("Hi?", "Hello.")])[0])


def _train(tiny: Path, data: Path, *extra: str) -> TrainResult:
    out = data.parent / "out"
    return run_train(
        "--base-model", tiny, "--dataset", data, "--output-dir", out, "--no-push", *extra
    )


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("train.py: error: ")
    return lines[0].removeprefix("train.py: error: ")


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([GOOD, GOOD, '{"messages": [}'], ":3: malformed JSON (Expecting value at column 15)"),
        ([GOOD, '{"text": "hi"}'], ":2: missing fields: need 'messages' or 'prompt'+'completion'"),
        (['{"messages": [{"role": "user", "content": "x"}]}'], ":1: 'messages' has no non-empty"),
        (['{"messages": [{"role": "bot", "content": "x"}]}'], ":1: messages[0] has role 'bot'"),
        (['{"messages": [{"role": "user"}]}'], ":1: messages[0] has no 'content' string"),
        (['{"messages": "hi"}'], ":1: 'messages' must be a non-empty list"),
        (["[1, 2]"], ":1: expected a JSON object, got list"),
        ([GOOD, '{"prompt": "a", "completion": "b"}'], ":2: this line is prompt_completion"),
        (['{"prompt": "a", "completion": ""}'], ":1: 'completion' is empty"),
        (["", "  "], ": no examples (the file is empty)"),
    ],
)
def test_bad_dataset_lines(
    tiny_model: Path, tmp_path: Path, lines: list[str], expected: str
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = _train(tiny_model, data)
    assert res.returncode == 2, res.stderr
    message = _one_error_line(res.stderr)
    assert message.startswith(str(data)), message
    assert expected in message
    assert res.event("error")["exit_code"] == 2


def test_non_utf8_dataset(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_bytes(GOOD.encode() + b"\n\xff\xfe\n")
    res = _train(tiny_model, data)
    assert res.returncode == 2
    assert "not UTF-8" in _one_error_line(res.stderr)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--lora-r", "0"], "argument --lora-r: must be an integer >= 1 and <= 1024, got '0'"),
        (["--learning-rate", "nan"], "argument --learning-rate: must be a number > 0 and <= 1"),
        (["--epochs", "inf"], "argument --epochs: must be a number > 0 and <= 1000, got 'inf'"),
        (["--run-id", "../x"], "argument --run-id: '../x': use 1-64 letters"),
        (["--packing", "maybe"], "argument --packing: must be auto, on or off, got 'maybe'"),
        (["--warmup-ratio", "1.5"], "argument --warmup-ratio: must be a number >= 0 and < 1"),
        (["--output-repo", "me/x"], "argument --output-repo: not allowed with argument --no-push"),
    ],
)
def test_bad_arguments_exit_2(
    tiny_model: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows([("a?", "b.")]))
    res = _train(tiny_model, data, *args)
    assert res.returncode == 2
    assert expected in res.stderr.strip().splitlines()[-1]


@pytest.mark.e2e
def test_push_or_no_push_is_required(tmp_path: Path) -> None:
    res = run_train("--base-model", "a/b", "--dataset", "c/d", "--output-dir", tmp_path)
    assert res.returncode == 2
    assert "one of the arguments --output-repo --no-push is required" in res.stderr


def test_unknown_local_model_and_dataset(tiny_model: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows([("a?", "b.")]))
    res = _train(tmp_path / "no" / "model", data)
    assert res.returncode == 2
    assert "is neither an existing local path nor a Hub id" in _one_error_line(res.stderr)

    res = _train(tiny_model, tmp_path / "missing" / "data.jsonl")
    assert res.returncode == 2
    assert "dataset" in _one_error_line(res.stderr)

    not_a_model = tmp_path / "folder"
    not_a_model.mkdir()
    res = _train(not_a_model, data)
    assert res.returncode == 2
    assert "not a model folder (no config.json)" in _one_error_line(res.stderr)


@pytest.mark.e2e
def test_hub_unreachable_exits_3(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows([("a?", "b.")]))
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    res = run_train(
        "--base-model", "someone/model", "--dataset", data, "--output-dir", tmp_path / "o",
        "--no-push",
        env={"HF_ENDPOINT": dead, "SPACETRAIN_HUB_DEADLINE": "2"},
    )  # fmt: skip
    assert res.returncode == 3, res.stderr
    message = _one_error_line(res.stderr)
    assert message.startswith(f"base model someone/model: Hub unreachable at {dead}")
    assert "retrying" in res.stdout  # it did retry before giving up


@pytest.mark.e2e  # imports torch or gradio in this process: the model stack
def test_cuda_out_of_memory_exits_1_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No GPU here: stand in for the CUDA allocator's error at the point training runs."""
    import torch

    train = load_module(TRAIN_PY, "space_train")

    def out_of_memory(argv: list[str] | None) -> int:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train, "run", out_of_memory)
    assert train.main([]) == 1
    err = capsys.readouterr()
    assert "CUDA out of memory: lower --batch-size" in err.err
    assert "Traceback" not in err.err
    last = err.out.strip().splitlines()[-1]
    assert json.loads(last.removeprefix("@@spacetrain "))["exit_code"] == 1
