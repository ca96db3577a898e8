"""`spacetrain rehearse`: the whole pipeline, offline, as a user runs it.

The real CLI in a subprocess: localhub, the real space/ app and train.py, a tiny model
that learns the demo data, the real suite and gate. One run that passes and one whose
adapter is undertrained, so the gate must say no, skip promotion, and still release.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def rehearse(tmp_path: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = tmp_path / "rehearsal.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_ENDPOINT", None)
    proc = subprocess.run(
        [sys.executable, "-m", "spacetrain", "rehearse", "--workdir", str(tmp_path / "work"),
         "--report", str(report), "--markdown", str(tmp_path / "rehearsal.md"), *flags],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert report.exists(), proc.stderr[-3000:]
    return proc, json.loads(report.read_text())


def test_rehearsal_trains_gates_promotes_and_stops_the_bill(tmp_path: Path) -> None:
    proc, report = rehearse(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stages = {s["name"]: s["outcome"] for s in report["stages"]}
    assert stages == dict.fromkeys(
        ["preflight", "sync", "wait", "train", "fetch", "evaluate", "promote", "release"], "ok"
    )
    scores = report["scores"]
    assert scores["overall"] >= 0.75 and min(scores["categories"].values()) >= 0.70
    assert scores["attribution_clean"] == 1.0
    assert report["base_scores"]["overall"] < 0.75  # the base alone fails: the adapter learned
    assert report["promoted_tag"].startswith("promoted-")
    assert report["space"]["stage_after"] == "PAUSED" and report["problems"] == []
    assert "rehearsal passed" in proc.stdout
    markdown = (tmp_path / "rehearsal.md").read_text()
    assert "| train | ok |" in markdown and "principles" in markdown

    # The Space billed GPU time while it ran, and nothing after it was paused.
    billing = json.dumps(report["billing"])
    assert "a10g-small" in billing
    # The token localhub accepted never reaches the output or the reports.
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert state["adapter_revision"] and state["promoted_tag"] == report["promoted_tag"]
    for text in (proc.stdout, proc.stderr, markdown, json.dumps(report)):
        assert "hf_" not in text.replace("hf_hub", "")


def test_an_undertrained_adapter_fails_the_gate_and_the_gpu_is_still_released(
    tmp_path: Path,
) -> None:
    proc, report = rehearse(tmp_path, "--epochs", "1", "--learning-rate", "1e-4")
    assert proc.returncode == 1, proc.stderr[-3000:]
    stages = {s["name"]: s["outcome"] for s in report["stages"]}
    assert stages["train"] == "ok" and stages["evaluate"] == "failed"
    assert "promote" not in stages and stages["release"] == "ok"
    assert report["promoted_tag"] is None
    assert report["space"]["stage_after"] == "PAUSED"
    assert "rehearsal FAILED" in proc.stdout


def test_bad_flags_exit_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spacetrain", "rehearse", "--epochs", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--epochs" in proc.stderr


def test_sigterm_mid_rehearsal_releases_the_space_and_stops_the_meter(tmp_path: Path) -> None:
    """A cancelled CI job (SIGTERM) during training: the pipeline's own release pauses the
    Space before localhub goes, the report says so, and the meter has stopped."""
    import signal

    report = tmp_path / "rehearsal.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_ENDPOINT", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacetrain", "rehearse", "--workdir", str(tmp_path / "work"),
         "--report", str(report), "--epochs", "400"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = ""
    try:
        assert proc.stderr is not None
        while "started run" not in seen:  # the Space is training: it bills now
            line = proc.stderr.readline()
            assert line, seen[-3000:]
            seen += line
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = seen + err
    assert proc.returncode == 130, err[-3000:]
    assert "release: ok" in err, err[-3000:]
    assert "interrupted: the Space is PAUSED; nothing is billed any more" in err
    data = json.loads(report.read_text())
    assert data["exit_code"] == 130 and data["problems"] == []
    assert data["space"]["stage_after"] == "PAUSED"
    assert data["billing"]["spaces"]["rehearsal/kwanzaa-training"]["billing"] is None
    assert "Traceback" not in err
