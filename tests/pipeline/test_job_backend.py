"""The pipeline with ``backend = "job"`` on localhub: train.py runs as an HF Job in the
Space's image (localhub: a checkout of the synced commit), followed through the Jobs API.

One job that succeeds (``spacetrain rehearse --backend job``: fetched at its exact
revision, gated, promoted), one that fails, one that times out (the Hub's job timeout,
and the pipeline's own deadline), and one whose CLI gets SIGTERM: each with its exit
code, no adapter promoted and every meter stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spacetrain.pipeline import PipelineOptions, PipelineResult, run_pipeline
from spacetrain.rehearse import (
    ADAPTER_REPO,
    RehearsalOptions,
    localhub_session,
    prepare,
    rehearsal_config,
)
from spacetrain.stages.params import TrainingOverrides
from spacetrain.stages.state import PipelineState

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def cli_env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_ENDPOINT", None)
    return env


def test_rehearse_as_a_job_trains_gates_promotes_and_stops_every_meter(tmp_path: Path) -> None:
    report = tmp_path / "rehearsal.json"
    proc = subprocess.run(
        [sys.executable, "-m", "spacetrain", "rehearse", "--backend", "job",
         "--workdir", str(tmp_path / "work"), "--report", str(report)],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(report.read_text())
    stages = {s["name"]: s["outcome"] for s in data["stages"]}
    assert stages == dict.fromkeys(
        ["preflight", "sync", "wait", "train", "fetch", "evaluate", "promote", "release"], "ok"
    )
    assert "on an HF Job in hf.co/spaces/rehearsal/kwanzaa-training (cpu-basic)" in proc.stderr
    assert "[train] step " in proc.stderr  # the job's log, followed live
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    revision = state["adapter_revision"]
    assert len(revision) == 40 and revision in proc.stderr
    assert f"{ADAPTER_REPO}@{revision[:12]} tagged {data['promoted_tag']}" in json.dumps(data)
    assert data["promoted_tag"].startswith("promoted-") and data["problems"] == []
    # one job, billed while it ran, not any more; the Space paused before the job trained
    (job,) = data["billing"]["jobs"].values()
    assert job["billing"] is None and job["flavors"]["cpu-basic"]["seconds"] > 0
    assert state["job_id"].endswith("/" + next(iter(data["billing"]["jobs"])))
    space = data["billing"]["spaces"]["rehearsal/kwanzaa-training"]
    assert space["billing"] is None and data["space"]["stage_after"] == "PAUSED"
    for text in (proc.stdout, proc.stderr, report.read_text()):
        assert "hf_" not in text.replace("hf_hub", "")


# ------------------------------------------------------------------ failures, in-process


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """localhub with the tiny base and the demo data, the rehearsal's config as jobs."""
    from spacetrain.hub import Hub

    workdir = tmp_path_factory.mktemp("jobs")
    with localhub_session(workdir) as server:
        hub = Hub.from_env()
        config = rehearsal_config(REPO, RehearsalOptions(backend="job"), workdir)
        prepare(hub, workdir, config)
        tokens = {k: os.environ[k] for k in ("HF_TOKEN", "SPACE_HF_TOKEN")}
        yield {"server": server, "hub": hub, "config": config, "workdir": workdir, **tokens}


@pytest.fixture(autouse=True)
def _tokens(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's two tokens again (the suite's isolation blanks HF_TOKEN per test)."""
    if "world" in request.fixturenames:
        world = request.getfixturevalue("world")
        for name in ("HF_TOKEN", "SPACE_HF_TOKEN"):
            monkeypatch.setenv(name, world[name])


def pipeline(
    world: dict[str, Any],
    name: str,
    config: Any = None,
    *,
    dataset_revision: str | None = None,
    train_timeout: float = 600.0,
) -> tuple:
    workdir = world["workdir"] / name
    state = PipelineState(workdir / "state.json")
    lines: list[str] = []
    result = run_pipeline(
        config or world["config"],
        world["hub"],
        state,
        PipelineOptions(
            overrides=TrainingOverrides(adapter="kwanzaa", dataset_revision=dataset_revision),
            report_dir=workdir / "reports",
            work_dir=workdir / ".spacetrain",
            wait_timeout=600.0,
            poll_interval=0.5,
            train_timeout=train_timeout,
        ),
        progress_for=lambda stage: lambda message: lines.append(f"[{stage}] {message}"),
    )
    return result, PipelineState.load(state.path), lines


def ended(world: dict[str, Any], state: PipelineState) -> tuple[str, str | None, dict]:
    """The job's stage and message, and its meter."""
    namespace, _, job = str(state.get("job_id")).rpartition("/")
    info = world["hub"].api.inspect_job(job_id=job, namespace=namespace)
    return info.status.stage, info.status.message, world["server"].billing()["jobs"][job]


def nothing_promoted(world: dict[str, Any], result: PipelineResult, state: PipelineState) -> None:
    assert result.promoted_tag is None and state.get("promoted_tag") is None
    assert state.get("adapter_revision") is None
    if world["hub"].api.repo_exists(ADAPTER_REPO):
        assert world["hub"].api.list_repo_refs(ADAPTER_REPO).tags == []
    stages = {s.name: s.outcome for s in result.stages}
    assert "fetch" not in stages and "promote" not in stages
    assert stages["release"] == "ok"  # the Space is paused again
    runtime = world["hub"].api.get_space_runtime(world["config"].space)
    assert runtime.stage == "PAUSED"


def test_a_job_that_fails_is_exit_1_and_nothing_is_promoted(world: dict[str, Any]) -> None:
    result, state, _ = pipeline(world, "fails", dataset_revision="no-such-revision")
    assert result.exit_code == 1, result.error
    assert "failed: dataset rehearsal/kwanzaa-data: no such revision" in str(result.error)
    stage, message, meter = ended(world, state)
    assert (stage, meter["billing"]) == ("ERROR", None)
    assert message == "Job failed with exit code: 2."  # train.py's bad input
    assert state.get("run_state") == "failed"
    nothing_promoted(world, result, state)


def test_a_job_past_its_timeout_is_exit_3_and_its_meter_stops(world: dict[str, Any]) -> None:
    config = world["config"]
    adapter = dataclasses.replace(config.adapters["kwanzaa"], job_timeout=3)
    short = dataclasses.replace(config, adapters={"kwanzaa": adapter})
    result, state, _ = pipeline(world, "job-timeout", short)
    assert result.exit_code == 3, result.error
    assert "reached its timeout (3 s, job_timeout) and was ended by the Hub: Job timed out" in str(
        result.error
    )
    stage, message, meter = ended(world, state)
    assert (stage, message, meter["billing"]) == ("ERROR", "Job timed out after 3 seconds", None)
    assert state.get("run_state") == "failed"  # the next train starts a new run
    nothing_promoted(world, result, state)


def test_the_pipelines_own_deadline_cancels_the_job(world: dict[str, Any]) -> None:
    result, state, _ = pipeline(world, "deadline", train_timeout=8.0)
    assert result.exit_code == 3, result.error
    assert "is still running at the deadline" in str(result.error)
    stage, _, meter = ended(world, state)
    assert (stage, meter["billing"]) == ("CANCELED", None)
    assert state.get("run_state") == "cancelled"
    nothing_promoted(world, result, state)


# ------------------------------------------------------------------ SIGTERM to the CLI


def test_sigterm_to_the_cli_cancels_the_job_and_stops_the_meter(tmp_path: Path) -> None:
    report = tmp_path / "rehearsal.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacetrain", "rehearse", "--backend", "job",
         "--workdir", str(tmp_path / "work"), "--report", str(report), "--epochs", "400"],
        cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = ""
    try:
        assert proc.stderr is not None
        while "[train] step " not in seen:  # the job trains: it bills now
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
    assert "cancelling job " in err and "is CANCELED" in err, err[-3000:]
    assert "interrupted: the Space is PAUSED; nothing is billed any more" in err
    data = json.loads(report.read_text())
    assert data["exit_code"] == 130 and data["problems"] == []
    (job,) = data["billing"]["jobs"].values()
    assert job["billing"] is None
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert state["run_state"] == "cancelled" and state.get("promoted_tag") is None
    assert not state.get("adapter_revision")
    assert "Traceback" not in err
