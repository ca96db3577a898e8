"""GPU readiness as the Space reports it: train.gpu_facts, describe_gpu, app.diagnose.

This machine has no GPU, so the CPU side runs for real here (torch's CPU build, no
driver); the GPU side's wording is checked on the facts an H200 reported through
tests/benchmarks/gpu_smoke.sh (recorded below), and the whole GPU path is that script.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from .support import TRAIN_PY, load_app, load_module

# What gpu_facts() returned on an NVIDIA H200 (driver 580.159.04, torch 2.11.0+cu130,
# bitsandbytes 0.50.2), 2026-11-30, through tests/benchmarks/gpu_smoke.sh.
H200 = {
    "cuda_available": True,
    "driver": "580.159.04",
    "torch": "2.11.0+cu130",
    "cuda_build": "13.0",
    "devices": 1,
    "device": "NVIDIA H200",
    "capability": "sm_90",
    "memory_gib": 139.8,
    "bf16": True,
    "cuda_driver": "13.0",
    "bitsandbytes": "0.50.2",
    "bnb_library": "libbitsandbytes_cuda130.so",
    "bnb_cuda": True,
    "bnb_4bit_matmul": "ok",
}


@pytest.fixture(scope="module")
def train() -> ModuleType:
    return load_module(TRAIN_PY, "space_train_gpu_facts")


@pytest.mark.e2e  # imports torch or gradio in this process: the model stack
def test_the_facts_of_a_machine_without_gpu(
    train: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    if train._driver() is None and train._cuda_driver_api() is None:
        # No driver at all (this machine): known without importing torch.
        facts = train.gpu_facts()
        assert facts["torch"] == torch.__version__ and "cuda_build" not in facts
        assert train.describe_gpu(facts) == (
            "no CUDA: no NVIDIA driver in this container (no nvidia-smi, no libcuda)"
        )
        # A driver but no usable CUDA (e.g. a CPU-only torch on GPU hardware): torch says.
        monkeypatch.setattr(train, "_driver", lambda: "580.95.05")
    facts = train.gpu_facts()
    assert facts["cuda_available"] is False
    assert facts["torch"] == torch.__version__ and facts["cuda_build"] == torch.version.cuda
    assert "bnb_4bit_matmul" not in facts  # nothing is tried without CUDA
    line = train.describe_gpu(facts)
    assert line.startswith("no CUDA: ")
    if torch.version.cuda is None:
        assert f"torch {torch.__version__} is a CPU-only build" in line


def test_a_ready_gpu_is_one_line_with_every_version(train: ModuleType) -> None:
    assert train.describe_gpu(H200) == (
        "NVIDIA H200 (sm_90, 139.8 GiB), driver 580.159.04 (CUDA 13.0), "
        "torch 2.11.0+cu130 (CUDA 13.0), bitsandbytes 0.50.2 libbitsandbytes_cuda130.so, "
        "4-bit matmul ok"
    )


def test_a_gpu_bitsandbytes_cannot_use_fails_the_check_and_says_so(
    train: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = {**H200, "bnb_library": "none", "bnb_cuda": False}
    del broken["bnb_4bit_matmul"]
    broken["bnb_error"] = "RuntimeError: No compatible CUDA binary found"
    monkeypatch.setattr(train, "gpu_facts", lambda: broken)
    check = train.check_gpu({"SPACETRAIN_EXPECT_GPU": "1"})
    assert (check["ok"], check["exit_code"]) == (False, 2)
    assert check["detail"].startswith("NVIDIA H200: bitsandbytes cannot run a 4-bit matmul")
    assert "No compatible CUDA binary found" in check["detail"]
    assert "4-bit matmul failed" in train.describe_gpu(broken)
    monkeypatch.setattr(train, "gpu_facts", lambda: H200)
    ready = train.check_gpu({"SPACETRAIN_EXPECT_GPU": "1"})
    assert (ready["ok"], ready["facts"]) == (True, H200)


@pytest.mark.parametrize(
    ("text", "release"),
    [
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 "
            "UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n",
            "535.183.01",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release "
            "Build  (dvs-builder@U16-I3-B03-4-3)  Tue Sep 23 09:53:04 UTC 2025\n",
            "580.95.05",
        ),
        ("", None),
    ],
)
def test_the_driver_release_is_read_from_the_kernel_module(
    train: ModuleType, text: str, release: str | None
) -> None:
    assert train.driver_in_proc(text) == release


@pytest.mark.e2e
@pytest.mark.parametrize("expected", ["1", ""])
def test_the_app_says_at_start_that_there_is_no_gpu(
    expected: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """diagnose() runs in a thread at start-up; on CPU hardware its first words are a
    warning, and a Space that expects a GPU is told every run will fail its self-check."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    app = load_app()
    monkeypatch.setenv("SPACETRAIN_EXPECT_GPU", expected)
    monkeypatch.setattr(app, "DIAGNOSTICS", {"status": "checking"})
    monkeypatch.setattr(app, "GPU_FACTS", {})
    app.diagnose()
    assert app.GPU_FACTS["cuda_available"] is False  # what the self-check will decide on
    info = app.DIAGNOSTICS
    assert info["status"] == "done" and info["cuda_available"] is False
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"[app] WARNING {info['warning']}"
    if expected:
        assert info["warning"].startswith("SPACETRAIN_EXPECT_GPU=1 but no CUDA")
        assert "every run will fail its self-check" in info["warning"]
    else:
        assert "runs will train on the CPU" in info["warning"]


def test_the_self_check_decides_on_the_start_up_facts_without_a_second_probe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The probe costs 20 s cold (H200); once diagnose() has its facts, the app's GPU
    check is decided on them, and before that it runs the probe in a child."""
    app = load_app()
    monkeypatch.setenv("SPACETRAIN_EXPECT_GPU", "1")
    monkeypatch.setattr(app, "GPU_FACTS", dict(H200))
    check = app._gpu_check_in_child()
    assert (check["ok"], check["exit_code"], check["facts"]) == (True, 0, H200)
    assert check["detail"].startswith("NVIDIA H200 (sm_90, 139.8 GiB), driver 580.159.04")
    monkeypatch.setattr(app, "GPU_FACTS", {})
    monkeypatch.setattr(app, "_train_in_child", lambda expression, timeout: "no child here")
    assert app._gpu_check_in_child()["detail"] == "no child here"
