"""space/train.py under PyTorch's launcher: two processes on the CPU (gloo) train like one.

Rank 0 alone speaks for the run (log lines, ``run.json``, the push); the others train
their share in silence unless they fail, and a failure on any rank fails the run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .support import TORCHRUN, TRAIN_PY, TrainResult, load_app, load_module, run_train

TWO = (*TORCHRUN, "--nproc_per_node", "2")
# The same global batch, 4 rows a step: 4 rows in one process, or 2 in each of two.
COMMON = ("--no-push", "--epochs", "8", "--grad-accum", "1", "--learning-rate", "5e-3")


def _human(res: TrainResult) -> list[str]:
    return [line for line in res.stdout.splitlines() if line.startswith("[train] ")]


@pytest.mark.e2e
def test_torchrun_two_processes_train_like_one(
    tiny_model: Path, qa_jsonl: Path, tmp_path: Path
) -> None:
    data = ("--base-model", tiny_model, "--dataset", qa_jsonl)
    one = run_train(*data, "--output-dir", tmp_path / "one", "--batch-size", "4", *COMMON)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_train(
        *data, "--output-dir", tmp_path / "two", "--batch-size", "2", "--run-id", "ddp-1",
        *COMMON, launcher=TWO,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    solo = json.loads((tmp_path / "one" / "run.json").read_text())
    ddp = json.loads((tmp_path / "two" / "run.json").read_text())
    print(f"\nfinal loss: one process {solo['final_loss']}, two processes {ddp['final_loss']}")

    assert (solo["world_size"], solo["distributed"]) == (1, None)
    assert (ddp["world_size"], ddp["distributed"], ddp["run_id"]) == (2, "ddp", "ddp-1")
    # One set of log lines: the events of one process, each human line once.
    assert [e["event"] for e in two.events] == [e["event"] for e in one.events]
    assert [e["event"] for e in two.events].count("saved") == 1  # rank 0 wrote run.json
    assert len(_human(two)) == len(set(_human(two))) == len(_human(one))
    assert two.event("model")["world_size"] == 2
    # Same quality: the same steps over the same data, a loss as low as one process's.
    assert ddp["steps"] == solo["steps"] == 40
    assert ddp["final_loss"] < ddp["first_loss"] - 1.0, ddp["loss_history"]
    assert abs(ddp["final_loss"] - solo["final_loss"]) < 0.15 * solo["final_loss"]
    assert abs(ddp["train_loss"] - solo["train_loss"]) < 0.1 * solo["train_loss"]
    # Tokens count the whole world: each process saw half of every epoch.
    assert ddp["tokens"]["real"] == solo["tokens"]["real"] == 8 * solo["tokens"]["per_epoch"]
    last_step = [e for e in two.events if e["event"] == "step"][-1]
    assert last_step["tokens"] == ddp["tokens"]["real"]


@pytest.mark.e2e
def test_a_failure_on_another_rank_fails_the_run_and_says_so(
    tiny_model: Path, qa_jsonl: Path, tmp_path: Path
) -> None:
    # Rank 1 alone fails mid-training (a fault injected through sitecustomize).
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import transformers\n"
        "    def boom(*args, **kwargs):\n"
        "        raise RuntimeError('boom on rank 1')\n"
        "    transformers.Trainer.training_step = boom\n"
    )
    res = run_train(
        "--base-model", tiny_model, "--dataset", qa_jsonl, "--output-dir", tmp_path / "out",
        "--batch-size", "2", *COMMON, launcher=TWO, env={"PYTHONPATH": str(hook)},
    )  # fmt: skip
    assert res.returncode != 0
    errors = [e for e in res.events if e["event"] == "error"]
    assert errors and errors[0]["rank"] == 1, res.stdout[-3000:]
    assert errors[0]["state"] == "failed" and "boom on rank 1" in errors[0]["error"]
    assert "train.py: error (rank 1 of 2): training failed: RuntimeError: boom on rank 1" in (
        res.stderr
    )
    assert not (tmp_path / "out" / "run.json").exists()
    assert "done" not in [e["event"] for e in res.events]


@pytest.mark.e2e
def test_a_launcher_that_started_one_of_several_processes_is_refused(
    tiny_model: Path, qa_jsonl: Path, tmp_path: Path
) -> None:
    """``accelerate launch --cpu --num_processes 2`` sets a rendezvous, then runs one process."""
    accelerate = (sys.executable, "-m", "accelerate.commands.launch")
    res = run_train(
        "--base-model", tiny_model, "--dataset", qa_jsonl, "--output-dir", tmp_path / "out",
        *COMMON, launcher=(*accelerate, "--cpu", "--num_processes", "2"), timeout=120,
    )  # fmt: skip
    assert res.returncode != 0
    error = res.event("error")
    assert error["exit_code"] == 2
    assert "started only this one" in error["error"] and "torchrun" in error["error"]
    assert "step" not in [e["event"] for e in res.events]


# ------------------------------------------------------------------ the pieces, without a launcher


@pytest.fixture(scope="module")
def train() -> ModuleType:
    return load_module(TRAIN_PY, "space_train")


def test_the_world_comes_from_the_launchers_variables(train: ModuleType) -> None:
    assert train.read_world({}) == train.World(0, 0, 1)
    two = train.read_world({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    assert (two.rank, two.local_rank, two.size, two.main) == (1, 1, 2, False)
    assert train.read_world({"WORLD_SIZE": "4", "RANK": "0", "LOCAL_RANK": "0"}).main
    for env, message in (
        ({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}, "started only this one"),
        ({"WORLD_SIZE": "two"}, "must be integers"),
        ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"}, "do not fit WORLD_SIZE 2"),
    ):
        with pytest.raises(train.BadInput, match=message):
            train.read_world(env)


def test_packing_auto_needs_a_varlen_attention_kernel(train: ModuleType) -> None:
    # Short rows and some long ones: padding wastes most of the work, packing leaves steps.
    lengths = [10] * 2000 + [1000] * 40
    plan = {"batch_size": 4, "grad_accum": 1, "max_length": 1024, "seed": 0}
    for attention, on_gpu in (("sdpa", True), ("eager", False), ("flash_attention_2", False)):
        packed = train.plan_packing("auto", lengths, attention=attention, on_gpu=on_gpu, **plan)
        assert not packed.packing and "has no varlen kernel" in packed.reason
        assert packed.attention == attention
    for attention in ("flash_attention_2", "flash_attention_3", "kernels-community/flash-attn"):
        packed = train.plan_packing("auto", lengths, attention=attention, on_gpu=True, **plan)
        assert packed.packing, packed.reason
        assert f"attention {attention} is varlen" in packed.reason
    assert train.plan_packing("on", lengths, attention="sdpa", **plan).packing  # asked for


@pytest.mark.e2e  # imports torch and transformers
def test_fsdp_qlora_stores_4bit_weights_in_the_compute_dtype(train: ModuleType) -> None:
    import torch

    gpu = {"type": "cuda", "bf16": True, "index": 0}
    ddp = train.quantization(gpu, fsdp=False)
    fsdp = train.quantization(gpu, fsdp=True)
    assert (ddp["bnb_4bit_compute_dtype"], ddp["bnb_4bit_quant_storage"]) == (
        torch.bfloat16,
        torch.uint8,
    )
    assert fsdp["bnb_4bit_quant_storage"] == fsdp["bnb_4bit_compute_dtype"] == torch.bfloat16
    old = train.quantization({"type": "cuda", "bf16": False, "index": 0}, fsdp=True)
    assert old["bnb_4bit_quant_storage"] == torch.float16
    assert train.distributed_settings(None) == {}
    assert train.distributed_settings("ddp") == {"ddp_find_unused_parameters": False}
    settings = train.distributed_settings("fsdp")
    assert settings["fsdp"] is True
    assert settings["fsdp_config"]["use_orig_params"] is False  # FSDP-QLoRA needs it off


@pytest.mark.e2e  # imports torch, transformers and trl
def test_fsdp_qlora_settings_are_ones_trainer_accepts(
    train: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SFTConfig takes the FSDP configuration and turns it into accelerate's FSDP plugin
    arguments (building the plugin itself needs the launcher's processes)."""
    from trl import SFTConfig

    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")  # it sets it; undone after

    config = SFTConfig(output_dir=str(tmp_path), use_cpu=True, **train.distributed_settings("fsdp"))
    plugin = config._process_fsdp_args()
    assert plugin["fsdp_version"] == 1
    assert plugin["use_orig_params"] is False and plugin["cpu_ram_efficient_loading"] is True
    assert plugin["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"


# ------------------------------------------------------------------ the app launches it


def test_the_app_runs_one_process_per_gpu_under_torchrun() -> None:
    app = load_app()
    assert app.processes({}, {}) == 1
    for flavor, count in (("a10g-largex2", 2), ("l40sx4", 4), ("h200x8", 8), ("l4x1", 1)):
        assert app.processes({"ACCELERATOR": flavor}, {}) == count
    for flavor in ("a10g-small", "cpu-basic", "h200", ""):
        assert app.processes({"ACCELERATOR": flavor}, {}) == 1
    # The GPUs torch sees decide once the start-up diagnostics are in.
    assert (
        app.processes({"ACCELERATOR": "a10g-largex2"}, {"cuda_available": True, "devices": 4}) == 4
    )
    assert app.processes({"ACCELERATOR": "a10g-largex2"}, {"cuda_available": False}) == 1
    argv = ["--params-file", "p.json", "--output-dir", "out"]
    assert app.train_command(argv, 1)[1:] == ["-u", str(app.TRAIN_PY), *argv]
    two = app.train_command(argv, 2)
    assert two[1:7] == [
        "-u",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(app.TRAIN_PY),
    ]


def test_the_first_rank_that_failed_is_the_runs_error() -> None:
    app = load_app()
    summary = app.LogSummary()
    for event in (
        {"event": "error", "state": "failed", "error": "boom on rank 1", "rank": 1},
        {"event": "error", "state": "failed", "error": "Connection closed by peer", "rank": 0},
        {"event": "error", "state": "cancelled", "error": "cancelled: signal 15"},
    ):
        summary.feed(app.EVENT_PREFIX + json.dumps(event))
    assert summary.error is not None and summary.error["error"] == "boom on rank 1"
    stopped = app.LogSummary()
    stopped.feed(app.EVENT_PREFIX + json.dumps({"event": "error", "state": "cancelled"}))
    assert stopped.error == {"event": "error", "state": "cancelled"}
