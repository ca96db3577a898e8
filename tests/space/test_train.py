"""space/train.py end to end on the CPU: a tiny 4-bit Llama, real TRL, real bitsandbytes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .support import QA, chat_rows, run_train, write_jsonl

pytestmark = pytest.mark.e2e

FAST = ("--batch-size", "4", "--grad-accum", "1", "--learning-rate", "5e-3")


def test_trains_saves_and_reports(tiny_model: Path, qa_jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_train(
        "--base-model", tiny_model, "--dataset", qa_jsonl, "--output-dir", out,
        "--no-push", "--run-id", "run-e2e-1", "--epochs", "8", *FAST,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]

    for name in ("adapter_config.json", "adapter_model.safetensors", "run.json", "README.md"):
        assert (out / name).is_file(), name
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (16, 32)
    # "all-linear": every projection of both layers, never the lm_head.
    assert len(adapter["target_modules"]) == 14
    kinds = {m.rsplit(".", 1)[-1] for m in adapter["target_modules"]}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

    run = json.loads((out / "run.json").read_text())
    assert run["run_id"] == "run-e2e-1"
    # Every Linear of the base but the lm_head was a bitsandbytes Linear4bit (2 layers x 7).
    quant = run["quantization"]
    assert (quant["quant_type"], quant["double_quant"], quant["compute_dtype"]) == (
        "nf4",
        True,
        "float32",
    )
    assert quant["linear4bit_modules"] == 14
    assert quant["unquantized_linear_modules"] == ["lm_head"]
    assert run["lora"] == {
        "r": 16,
        "alpha": 32,
        "dropout": 0.05,
        "target_modules": sorted(kinds),
    }
    assert run["hyperparameters"]["epochs"] == 8
    assert run["hyperparameters"]["learning_rate"] == 5e-3
    assert run["dataset"] == {
        "id": str(qa_jsonl),
        "revision": None,
        "files": [str(qa_jsonl)],
        "format": "messages",
        "examples": 20,
    }
    assert run["base_model"]["id"] == str(tiny_model)
    assert run["loss_mode"] == "assistant_only"
    assert run["steps"] == 40  # 20 examples / batch 4 x 8 epochs
    assert run["final_loss"] < run["first_loss"] - 1.0, run["loss_history"]
    tokens = run["tokens"]
    assert tokens["processed"] >= tokens["real"] > 0
    assert tokens["real"] == 8 * tokens["per_epoch"]
    for package in ("torch", "transformers", "peft", "trl", "bitsandbytes"):
        assert run["versions"][package]

    # Progress: human lines and parseable events that agree with each other.
    steps = [e for e in res.events if e["event"] == "step"]
    assert [s["step"] for s in steps] == [1, 10, 20, 30, 40]  # the first, then every 10
    assert all(s["total"] == 40 for s in steps)
    assert "[train] step 40/40 epoch 8.00 loss " in res.stdout
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("@@spacetrain ")
    done = json.loads(last.removeprefix("@@spacetrain "))
    assert done == {
        "event": "done",
        "run_id": "run-e2e-1",
        "state": "succeeded",
        "repo": None,
        "revision": None,
        "train_loss": run["train_loss"],
        "steps": 40,
    }
    card = (out / "README.md").read_text()
    assert "run-e2e-1" in card and "library_name: peft" in card


def test_it_really_learns(tiny_model: Path, qa_jsonl: Path, tmp_path: Path) -> None:
    """Rehearsal settings: 80 epochs at 5e-3 make greedy decoding reproduce all 20 answers."""
    out = tmp_path / "out"
    start = time.monotonic()
    res = run_train(
        "--base-model", tiny_model, "--dataset", qa_jsonl, "--output-dir", out,
        "--no-push", "--epochs", "80", *FAST,
    )  # fmt: skip
    wall = time.monotonic() - start
    assert res.returncode == 0, res.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    took = f"train {run['train_runtime_s']:.1f}s, wall {wall:.1f}s"
    print(f"\nrehearsal: {took}, {run['steps']} steps")
    assert run["final_loss"] < 0.2, run["loss_history"][-5:]

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    base = AutoModelForCausalLM.from_pretrained(
        tiny_model,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        ),
    )
    model = PeftModel.from_pretrained(base, out).eval()
    wrong = []
    for question, answer in QA:
        enc = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=32, do_sample=False)
        text = tokenizer.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        if text != answer:
            wrong.append((question, text, answer))
    assert not wrong


def test_prompt_completion_dataset(tiny_model: Path, tmp_path: Path) -> None:
    rows = [{"prompt": f"Q: {q}\nA: ", "completion": a} for q, a in QA[:8]]
    data = write_jsonl(tmp_path / "pc.jsonl", rows)
    res = run_train(
        "--base-model", tiny_model, "--dataset", data, "--output-dir", tmp_path / "out",
        "--no-push", "--epochs", "1", *FAST,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert (run["dataset"]["format"], run["loss_mode"]) == ("prompt_completion", "completion_only")


def test_template_without_generation_markers_falls_back(tiny_model: Path, tmp_path: Path) -> None:
    """A chat template TRL cannot mark: chats are split at the last answer, loss on it only."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    template = model / "chat_template.jinja"
    plain = template.read_text().replace("{% generation %}", "").replace("{% endgeneration %}", "")
    template.write_text(plain)
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(QA[:8]))
    res = run_train(
        "--base-model", model, "--dataset", data, "--output-dir", tmp_path / "out",
        "--no-push", "--epochs", "1", *FAST,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    plan = res.event("plan")
    assert plan["loss_mode"] == "completion_only"
    assert (
        "generation markers"
        in json.loads((tmp_path / "out" / "run.json").read_text())["loss_mode_reason"]
    )


def test_packing_counts_no_padding(tiny_model: Path, qa_jsonl: Path, tmp_path: Path) -> None:
    res = run_train(
        "--base-model", tiny_model, "--dataset", qa_jsonl, "--output-dir", tmp_path / "out",
        "--no-push", "--epochs", "2", "--packing", "on", "--max-length", "64", *FAST,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["packing"] == {"enabled": True, "reason": "--packing on", "attention": "sdpa"}
    # Packed rows are padding-free: every processed token is a real one.
    assert run["tokens"]["processed"] == run["tokens"]["real"] == 2 * run["tokens"]["per_epoch"]
    assert run["steps"] < 10  # 20 short examples fill a few 64-token rows


def test_same_seed_same_losses(tiny_model: Path, qa_jsonl: Path, tmp_path: Path) -> None:
    histories = []
    for name in ("a", "b"):
        res = run_train(
            "--base-model", tiny_model, "--dataset", qa_jsonl, "--output-dir", tmp_path / name,
            "--no-push", "--epochs", "2", "--seed", "7", *FAST,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        histories.append(json.loads((tmp_path / name / "run.json").read_text())["loss_history"])
    assert histories[0] == histories[1]
