"""`release`: after training the GPU bill stops (pause or CPU flavor), idempotently."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from spacetrain.errors import UsageError
from spacetrain.hub import Hub, RetryPolicy
from spacetrain.localhub import LocalHub
from spacetrain.stages.release import release
from spacetrain.stages.setup import SetupOptions
from spacetrain.stages.sync import SyncOptions, sync
from spacetrain.stages.wait import wait

from .conftest import READ_TOKEN, SPACE_TOKEN, TOKEN
from .space_support import ADAPTER, REPO, SPACE, cli, cli_env, wait_until, write_project

pytestmark = pytest.mark.e2e


def _running_on_gpu(project: Path) -> None:
    options = SyncOptions(
        space=SPACE,
        space_dir=project / "space",
        policy=project / "policy" / "space.yaml",
        setup=SetupOptions(SPACE, hardware="t4-small", token=SPACE_TOKEN),
    )
    commit = sync(Hub.from_env(), options).commit
    wait(Hub.from_env(), SPACE, commit, timeout=60)


def _seconds(hub: LocalHub, flavor: str) -> float:
    space = hub.billing()["spaces"].get(SPACE, {})
    return float(space.get("flavors", {}).get(flavor, {}).get("seconds", 0.0))


def _state_changes(hub: LocalHub) -> list[str]:
    return [
        r["path"]
        for r in hub.requests
        if r["method"] == "POST" and r["path"].endswith(("/pause", "/hardware", "/restart"))
    ]


def test_release_pauses_and_the_meter_stops(hub_env: LocalHub, api: HfApi, tmp_path: Path) -> None:
    _running_on_gpu(write_project(tmp_path / "p"))
    assert hub_env.billing()["spaces"][SPACE]["billing"] == "t4-small"
    before = _seconds(hub_env, "t4-small")
    time.sleep(0.2)
    assert _seconds(hub_env, "t4-small") > before  # the meter runs while the app does

    result = release(Hub.from_env(), SPACE, after_training="pause")

    assert (result.action, result.stage, result.changed) == ("paused", "PAUSED", True)
    assert api.get_space_runtime(SPACE).stage == "PAUSED"
    assert hub_env.billing()["spaces"][SPACE]["billing"] is None
    stopped = _seconds(hub_env, "t4-small")
    time.sleep(0.3)
    assert _seconds(hub_env, "t4-small") == stopped  # nothing billed any more


def test_release_is_idempotent(hub_env: LocalHub, tmp_path: Path) -> None:
    _running_on_gpu(write_project(tmp_path / "p"))
    release(Hub.from_env(), SPACE)
    calls = len(_state_changes(hub_env))

    again = release(Hub.from_env(), SPACE)

    assert (again.action, again.stage, again.changed) == ("already-paused", "PAUSED", False)
    assert len(_state_changes(hub_env)) == calls  # no second pause


def test_release_to_a_cpu_flavor(hub_env: LocalHub, api: HfApi, tmp_path: Path) -> None:
    _running_on_gpu(write_project(tmp_path / "p"))

    result = release(Hub.from_env(), SPACE, after_training="cpu-basic")

    assert (result.action, result.hardware) == ("downgraded", "cpu-basic")
    runtime = api.wait_for_space(SPACE, timeout=30, poll_interval=0.05)
    assert (runtime.stage, runtime.hardware) == ("RUNNING", "cpu-basic")
    assert hub_env.billing()["spaces"][SPACE]["billing"] == "cpu-basic"  # free, still up
    assert release(Hub.from_env(), SPACE, after_training="cpu-basic").changed is False


def test_release_of_a_failed_space_still_pauses_it(hub_env: LocalHub, tmp_path: Path) -> None:
    _running_on_gpu(write_project(tmp_path / "p"))
    hub_env.add_faults({"kill_space": SPACE})  # the app died (an OOM kill, say)

    result = release(Hub.from_env(), SPACE)

    assert (result.action, result.stage) == ("paused", "PAUSED")


def test_release_rides_through_503s(hub_env: LocalHub, tmp_path: Path) -> None:
    _running_on_gpu(write_project(tmp_path / "p"))
    hub_env.add_faults({"status_codes": [503], "paths": f"/api/spaces/{SPACE}/*", "count": 3})

    assert release(_quick_retries(), SPACE).stage == "PAUSED"
    assert sum(1 for r in hub_env.requests if r["status"] == 503) == 3


def test_release_refuses_an_unknown_target(hub_env: LocalHub) -> None:
    with pytest.raises(UsageError, match="must be 'pause' or a Space flavor"):
        release(Hub.from_env(), SPACE, after_training="gpu-please")


def test_cli_release_prints_the_action(hub: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    env = cli_env(hub.url, TOKEN)
    assert cli(["sync"], cwd=project, env=env).returncode == 0
    assert cli(["wait", "--timeout", "60"], cwd=project, env=env).returncode == 0

    done = cli(["release"], cwd=project, env=env)
    again = cli(["release"], cwd=project, env=env)

    assert (done.returncode, done.stdout) == (0, "paused\n")
    assert (again.returncode, again.stdout) == (0, "already-paused\n")
    assert TOKEN not in done.stderr + again.stderr


def test_cli_release_of_a_missing_space_is_exit_2(hub: LocalHub, tmp_path: Path) -> None:
    done = cli(["release", "--space", "alice/nowhere"], cwd=tmp_path, env=cli_env(hub.url, TOKEN))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "spacetrain release: error: cannot read the runtime of Space alice/nowhere: "
        f"no such repo at {hub.url}, or no access to it"
    ]


def _quick_retries() -> Hub:
    """The real retry policy with a short first backoff: the 503s cost milliseconds."""
    return Hub.from_env(retry=RetryPolicy(deadline=20, base=0.02, cap=0.2))


def test_sigterm_to_the_pipeline_mid_train_still_releases(
    hub: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    """A cancelled CI job: SIGTERM while `spacetrain pipeline` is in its train stage. The
    Space (a stdlib app: train keeps reconnecting to it) must end PAUSED, not billing."""
    project = write_project(tmp_path / "p", extra=ADAPTER.format(train="{}"))
    (project / "policy" / "evals").mkdir(parents=True)
    (project / "policy" / "evals" / "demo.yaml").write_bytes(
        (REPO / "policy" / "evals" / "kwanzaa.yaml").read_bytes()
    )
    api.create_repo("alice/base")
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="alice/base")
    api.create_repo("alice/data", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b'{"prompt": "q", "completion": "a"}\n',
        path_in_repo="train.jsonl",
        repo_id="alice/data",
        repo_type="dataset",
    )
    env = cli_env(hub.url, TOKEN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacetrain", "pipeline", "--state", str(tmp_path / "s.json")],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "---- train ----" in line:
                break
        wait_until(lambda: hub.billing()["spaces"][SPACE]["billing"], what="the Space to bill")
        time.sleep(1.0)  # train is now reconnecting to an app that is not Gradio
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(seen) + rest
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and "Traceback" not in err
    assert "---- release ----" in err
    assert api.get_space_runtime(SPACE).stage == "PAUSED"
    assert hub.billing()["spaces"][SPACE]["billing"] is None


def test_train_with_a_token_that_cannot_pause_the_space_starts_nothing(
    hub: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    """A read token can start runs on a private Space it can read, but could never pause
    it again: `train` refuses before it asks the Space anything (exit 2, one line)."""
    project = write_project(tmp_path / "p", extra=ADAPTER.format(train="{}"))
    before = len(hub.requests)
    done = cli(["train", "--run-id", "r1"], cwd=project, env=cli_env(hub.url, READ_TOKEN))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"spacetrain train: error: HF_TOKEN cannot pause {SPACE} (the token is a 'read' "
        "token), so a run it started could not be stopped: use a token that can write the "
        "Space"
    ]
    asked = [r["path"] for r in hub.requests[before:]]
    assert asked == ["/api/whoami-v2"], asked  # the Space was never asked anything
    assert READ_TOKEN not in done.stdout + done.stderr


def test_sigterm_before_sync_says_the_space_was_not_touched(
    hub: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    """A CI job cancelled while `spacetrain pipeline` is still in preflight: nothing was
    synced or started, so nothing is paused, and one line says so (it holds, saying why)."""
    project = write_project(tmp_path / "p", extra=ADAPTER.format(train="{}"))
    hub.add_faults({"paths": "/api/whoami-v2", "latency_ms": 3000})
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacetrain", "pipeline", "--state", str(tmp_path / "s.json")],
        cwd=project, env=cli_env(hub.url, TOKEN), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "---- preflight ----" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        hub.faults.clear()
        if proc.poll() is None:
            proc.kill()
    err = "".join(seen) + rest
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert (
        f"[release] interrupted before sync: {SPACE} was not touched by this run and is left "
        "as it was; `spacetrain release` pauses it"
    ) in err, err
    assert not api.repo_exists(SPACE, repo_type="space")  # nothing was created or synced
