"""The job backend against localhub's Jobs API, with a stand-in train.py in the Space.

The Space holds a small ``train.py`` that prints what the real one prints (``[train]``
lines and ``@@spacetrain`` events) as its ``MODE`` says, so each way a job can end is
cheap to show: pushed, ended without an adapter, cancelled on the Hub, interrupted
here. The client, the HTTP and the Jobs rules are the real ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi

from spacetrain.errors import CheckFailed, StageTimeout, TrainingFailed, UsageError
from spacetrain.hub import Hub, RetryPolicy
from spacetrain.localhub import LocalHub
from spacetrain.stages.job_backend import JobBackend, JobSettings
from spacetrain.stages.params import TrainOptions
from spacetrain.stages.state import PipelineState
from spacetrain.stages.train import run_training

pytestmark = pytest.mark.e2e

TOKEN, SPACE_TOKEN = "hf_jobBackendPipelineToken1", "hf_jobBackendSpaceToken12"
SPACE = "alice/trainer"
REVISION = "f" * 40
TRAIN_PY = """\
import hashlib, json, os, sys, time
def event(name, **fields):
    print("@@spacetrain " + json.dumps({"event": name, **fields}), flush=True)
argv = sys.argv[1:]
run_id = argv[argv.index("--run-id") + 1]
token = hashlib.sha256(os.environ["HF_TOKEN"].encode()).hexdigest()[:12]
print(f"[train] run {run_id} token {token} argv {' '.join(argv[:2])}", flush=True)
event("train_begin", total=4)
for step in (2, 4):
    print(f"[train] step {step}/4 loss 1.0", flush=True)
    event("step", step=step, total=4, epoch=step / 4, loss=1.0)
mode = os.environ["MODE"]
if mode == "sleep":
    time.sleep(300)
if mode == "push":
    event("pushed", repo="alice/adapter", revision="REVISION")
event("done", state="succeeded", steps=4, repo=None, revision=None)
"""


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    root = tmp_path_factory.mktemp("job-backend")
    with LocalHub(root=root, tokens={TOKEN: "alice", SPACE_TOKEN: "alice"}) as server:
        api = HfApi(endpoint=server.url, token=TOKEN)
        api.create_repo(SPACE, repo_type="space", space_sdk="docker", private=True)
        api.upload_file(
            path_or_fileobj=TRAIN_PY.replace("REVISION", REVISION).encode(),
            path_in_repo="train.py",
            repo_id=SPACE,
            repo_type="space",
        )
        yield server


@pytest.fixture
def hub(hub_server: LocalHub, monkeypatch: pytest.MonkeyPatch) -> Hub:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("SPACE_HF_TOKEN", SPACE_TOKEN)
    return Hub(HfApi(endpoint=hub_server.url, token=TOKEN), retry=RetryPolicy(deadline=20.0))


PARAMS = {"run_id": "run-1", "base_model": "alice/base", "dataset": "alice/data",
          "output_repo": "alice/adapter", "push": True, "epochs": 1.0}  # fmt: skip


def options(run_id: str, **kw: Any) -> TrainOptions:
    return TrainOptions(
        space=SPACE, run_id=run_id, params={**PARAMS, "run_id": run_id}, poll_interval=0.2, **kw
    )


def settings(mode: str) -> JobSettings:
    return JobSettings(flavor="cpu-basic", timeout=120, env={"MODE": mode})


def backend_for(hub: Hub, state: PipelineState, mode: str, lines: list[str]) -> JobBackend:
    return JobBackend(hub, SPACE, settings(mode), state, progress=lines.append)


def train(
    hub: Hub, state: PipelineState, run_id: str, mode: str, capfd: Any = None, **kw: Any
) -> Any:
    """The train stage with the job backend; its lines, and the job's log as relayed."""
    lines: list[str] = []
    opts = options(run_id, **kw.pop("opts", {}))
    try:
        result = run_training(
            hub, opts, state, backend=backend_for(hub, state, mode, lines),
            progress=lines.append, **kw,
        )  # fmt: skip
    finally:
        if capfd is not None:
            lines += capfd.readouterr().err.splitlines()
    return result, lines


def meter(server: LocalHub, state: PipelineState) -> dict[str, Any]:
    return server.billing()["jobs"][str(state.get("job_id")).rpartition("/")[2]]


def test_a_job_that_pushes_is_followed_to_its_adapter(
    hub: Hub, hub_server: LocalHub, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    state = PipelineState(tmp_path / "state.json")
    result, lines = train(hub, state, "run-ok", "push", capfd)
    assert (result.state, result.adapter_repo, result.adapter_revision) == (
        "succeeded",
        "alice/adapter",
        REVISION,
    )
    assert (result.step, result.total, result.released) == (4, 4, "")  # nothing to release
    assert state.get("adapter_revision") == REVISION and state.get("run_state") == "succeeded"
    # the job ran with the Space's token as HF_TOKEN, never the pipeline's
    space_hash = hashlib.sha256(SPACE_TOKEN.encode()).hexdigest()[:12]
    assert f"[train] run run-ok token {space_hash} argv --output-dir spacetrain-run" in lines
    assert "[train] step 4/4 loss 1.0" in lines
    assert not any(line.startswith("@@spacetrain") for line in lines)  # events parsed, not shown
    assert meter(hub_server, state)["billing"] is None
    namespace, _, job = str(state.get("job_id")).rpartition("/")
    info = hub.api.inspect_job(job_id=job, namespace=namespace)
    assert info.labels["spacetrain-run"] == "run-ok" and info.space_id == SPACE
    assert list(info.secrets or {}) == ["HF_TOKEN"] and info.flavor == "cpu-basic"
    for text in (json.dumps(state.data), "\n".join(lines)):
        assert SPACE_TOKEN not in text and TOKEN not in text


def test_start_is_idempotent_by_run_id(hub: Hub, hub_server: LocalHub, tmp_path: Path) -> None:
    state = PipelineState(tmp_path / "state.json")
    backend = JobBackend(hub, SPACE, settings("sleep"), state, progress=lambda _: None)
    try:
        first = backend.start({**PARAMS, "run_id": "run-idem"})
        assert first.created and first.state in ("queued", "running")
        again = backend.start({**PARAMS, "run_id": "run-idem"})
        assert not again.created and again.raw["job_id"] == first.raw["job_id"]
        # another process with the same state rejoins the job, it starts none
        later = backend_for(hub, PipelineState.load(state.path), "sleep", [])
        with pytest.MonkeyPatch.context() as env:  # following needs no Space token
            env.delenv("SPACE_HF_TOKEN")
            later.preflight({**PARAMS, "run_id": "run-idem"})
        rejoined = later.start({**PARAMS, "run_id": "run-idem"})
        assert not rejoined.created and rejoined.raw["job_id"] == first.raw["job_id"]
        # a job whose start lost its answer is found by its label, not started twice
        fresh = backend_for(hub, PipelineState(tmp_path / "other.json"), "sleep", [])
        found = fresh.start({**PARAMS, "run_id": "run-idem"})
        assert not found.created and found.raw["job_id"] == first.raw["job_id"]
        jobs = hub.api.list_jobs(labels={"spacetrain-run": "run-idem"}, namespace="alice")
        assert len(list(jobs)) == 1
    finally:
        assert backend.stop("run-idem") == "cancelled"
    assert meter(hub_server, state)["billing"] is None


def test_a_job_whose_start_lost_its_answer_is_found_and_cancelled_by_release(
    hub: Hub, hub_server: LocalHub, tmp_path: Path
) -> None:
    """An interrupt (or a lost Hub) during run_job: the job may exist with nothing
    recorded; release finds it by its run label and cancels it."""
    state = PipelineState(tmp_path / "state.json")
    first = JobBackend(hub, SPACE, settings("sleep"), state, progress=lambda _: None)
    first.start({**PARAMS, "run_id": "run-lost"})  # the job that "lost its answer"
    blind = JobBackend(hub, SPACE, settings("sleep"), PipelineState(tmp_path / "blind.json"),
                       progress=lambda _: None)  # fmt: skip
    assert blind.release(ours="run-lost") == ""  # never asked the Hub: it started nothing
    blind.answered = True  # run_job was sent, its answer never came
    assert blind.release(ours="run-lost") == "cancelled"
    assert meter(hub_server, state)["billing"] is None


def test_an_interrupt_while_following_cancels_the_job(
    hub: Hub, hub_server: LocalHub, tmp_path: Path
) -> None:
    state = PipelineState(tmp_path / "state.json")
    naps: list[float] = []

    def sleep(seconds: float) -> None:  # SIGINT/SIGTERM (cli.main) lands while we wait
        naps.append(seconds)
        if len(naps) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(hub, state, "run-int", "sleep", sleep=sleep)
    assert state.get("run_state") == "cancelled"
    assert meter(hub_server, state)["billing"] is None
    namespace, _, job = str(state.get("job_id")).rpartition("/")
    assert hub.api.inspect_job(job_id=job, namespace=namespace).status.stage == "CANCELED"


def test_the_deadline_cancels_the_job_unless_keep_running(
    hub: Hub, hub_server: LocalHub, tmp_path: Path
) -> None:
    state = PipelineState(tmp_path / "state.json")
    with pytest.raises(StageTimeout, match="run run-late is still running at the deadline"):
        train(hub, state, "run-late", "sleep", opts={"timeout": 1.0})
    assert state.get("run_state") == "cancelled" and meter(hub_server, state)["billing"] is None

    kept = PipelineState(tmp_path / "kept.json")
    lines: list[str] = []
    with pytest.raises(StageTimeout):
        run_training(
            hub, options("run-keep", timeout=1.0, keep_running=True), kept,
            backend=backend_for(hub, kept, "sleep", lines), progress=lines.append,
        )  # fmt: skip
    assert "--keep-running: alice/trainer keeps its hardware (and its bill)" in lines
    backend = backend_for(hub, kept, "sleep", [])
    assert backend.status("run-keep").state in ("queued", "running")
    assert meter(hub_server, kept)["billing"] == "cpu-basic"  # it bills on, as asked
    assert backend.stop("run-keep") == "cancelled"  # the test's own clean-up


def test_a_job_cancelled_on_the_hub_fails_the_stage(hub: Hub, tmp_path: Path) -> None:
    state = PipelineState(tmp_path / "state.json")
    cancelled: list[str] = []

    def sleep(seconds: float) -> None:  # someone presses Cancel on the job's page
        if not cancelled:
            namespace, _, job = str(PipelineState.load(state.path).get("job_id")).rpartition("/")
            hub.api.cancel_job(job_id=job, namespace=namespace)
            cancelled.append(job)

    with pytest.raises(TrainingFailed, match="run run-hub was cancelled: Canceled by alice"):
        train(hub, state, "run-hub", "sleep", sleep=sleep)
    assert state.get("run_state") == "cancelled" and state.get("adapter_revision") is None


def test_a_job_that_pushed_nothing_is_a_failed_stage(hub: Hub, tmp_path: Path) -> None:
    state = PipelineState(tmp_path / "state.json")
    with pytest.raises(TrainingFailed, match="succeeded but pushed no adapter"):
        train(hub, state, "run-nopush", "nopush")
    assert state.get("adapter_revision") is None


def test_without_the_spaces_token_nothing_starts(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPACE_HF_TOKEN")
    state = PipelineState(tmp_path / "state.json")
    with pytest.raises(UsageError, match="set SPACE_HF_TOKEN"):
        train(hub, state, "run-notoken", "push")
    assert state.get("job_id") is None
    assert (
        list(hub.api.list_jobs(labels={"spacetrain-run": "run-notoken"}, namespace="alice")) == []
    )


def test_a_space_that_moved_on_since_sync_starts_no_job(hub: Hub, tmp_path: Path) -> None:
    state = PipelineState(tmp_path / "state.json")
    head = hub.api.space_info(SPACE).sha
    stale = JobSettings(flavor="cpu-basic", timeout=60, env={"MODE": "push"}, space_commit="0" * 40)
    backend = JobBackend(hub, SPACE, stale, state, progress=lambda _: None)
    with pytest.raises(CheckFailed, match=f"is at {head[:12]}, not at the synced commit 000000"):
        backend.start({**PARAMS, "run_id": "run-stale"})
    assert list(hub.api.list_jobs(labels={"spacetrain-run": "run-stale"}, namespace="alice")) == []
    synced = JobSettings(flavor="cpu-basic", timeout=60, env={"MODE": "push"}, space_commit=head)
    result = run_training(
        hub, options("run-synced"), state,
        backend=JobBackend(hub, SPACE, synced, state, progress=lambda _: None),
        progress=lambda _: None,
    )  # fmt: skip
    namespace, _, job = str(state.get("job_id")).rpartition("/")
    labels = hub.api.inspect_job(job_id=job, namespace=namespace).labels
    assert labels["spacetrain-space-commit"] == head and result.adapter_revision == REVISION
