"""`wait`: only the synced commit RUNNING counts; failures are exit 1, the deadline exit 3."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi

from spacetrain.errors import CheckFailed, SpaceBuildFailed, StageTimeout
from spacetrain.hub import Hub, RetryPolicy
from spacetrain.localhub import LocalHub
from spacetrain.stages.sync import SyncOptions, sync
from spacetrain.stages.wait import Backoff, wait

from .conftest import TOKEN
from .space_support import CRASH_APP, SPACE, cli, cli_env, write_project

pytestmark = pytest.mark.e2e


def _sync(project: Path, **kw: object) -> str:
    options = SyncOptions(
        space=SPACE,
        space_dir=project / "space",
        policy=project / "policy" / "space.yaml",
        **kw,  # type: ignore[arg-type]
    )
    return sync(Hub.from_env(), options).commit


def _served_version(api: HfApi) -> str:
    host = api.space_info(SPACE).host
    assert host
    auth = {"Authorization": f"Bearer {TOKEN}"}  # the Space is private: its app wants a token
    return httpx.get(host, headers=auth, timeout=5).text.strip()


def test_wait_returns_only_for_the_synced_commit(
    hub_env: LocalHub, api: HfApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = write_project(tmp_path / "p")
    first = _sync(project)
    assert wait(Hub.from_env(), SPACE, first, timeout=60).commit == first
    assert _served_version(api) == "1"

    # Two pushes in quick succession: the first one's app may well answer before the
    # second is built; wait must hold out for the second.
    (project / "space" / "VERSION").write_text("2\n")
    second = _sync(project)
    (project / "space" / "VERSION").write_text("3\n")
    third = _sync(project)
    assert len({first, second, third}) == 3
    capsys.readouterr()

    result = wait(Hub.from_env(), SPACE, third, timeout=60)

    runtime = api.get_space_runtime(SPACE)
    assert (result.stage, runtime.stage, runtime.raw["sha"]) == ("RUNNING", "RUNNING", third)
    assert _served_version(api) == "3"
    err = capsys.readouterr().err
    assert f"the Space runs {third[:12]}" in err
    assert "(the synced commit)" in err


def test_wait_sees_through_running_on_the_old_commit(
    hub_env: LocalHub, api: HfApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = write_project(tmp_path / "p")
    first = _sync(project)
    wait(Hub.from_env(), SPACE, first, timeout=60)
    (project / "space" / "VERSION").write_text("2\n")
    second = _sync(project)
    runtime = api.get_space_runtime(SPACE)
    assert (runtime.stage, runtime.raw["sha"]) == ("RUNNING_BUILDING", first)  # old app serves
    capsys.readouterr()

    wait(Hub.from_env(), SPACE, second, timeout=60)

    err = capsys.readouterr().err
    assert f"RUNNING_BUILDING     at {first[:12]} (not yet {second[:12]})" in err
    assert _served_version(api) == "2"


def test_a_crashing_app_is_exit_1_with_the_log_tail(
    hub_env: LocalHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = write_project(tmp_path / "p", app=CRASH_APP)
    commit = _sync(project)

    with pytest.raises(SpaceBuildFailed) as caught:
        wait(Hub.from_env(), SPACE, commit, timeout=60)

    assert caught.value.exit_code == 1
    message = str(caught.value)
    assert "RUNTIME_ERROR" in message and "Exit code: 3" in message and "\n" not in message
    err = capsys.readouterr().err
    assert "| boom: CUDA out of memory (tried to allocate 2.00 GiB)" in err
    assert "| loading the base model..." in err


def test_a_forced_build_error_is_exit_1_with_the_build_log(
    hub_env: LocalHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = write_project(tmp_path / "p")
    _sync(project)  # creates the Space; the fault is for its next build
    hub_env.add_faults(
        {
            "force_stage": {
                "repo": SPACE,
                "stage": "BUILD_ERROR",
                "message": "pip: No matching distribution found for torch==9.9",
                "when": "next_build",
            }
        }
    )
    (project / "space" / "VERSION").write_text("2\n")
    commit = _sync(project)

    with pytest.raises(SpaceBuildFailed) as caught:
        wait(Hub.from_env(), SPACE, commit, timeout=60)

    assert "BUILD_ERROR" in str(caught.value)
    assert "No matching distribution found for torch==9.9" in str(caught.value)
    assert "--build" in str(caught.value)
    err = capsys.readouterr().err
    assert "line(s) of the build log:" in err and f"Commit SHA: {commit}" in err


def test_the_deadline_is_exit_3(hub_env: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    commit = _sync(project)
    wait(Hub.from_env(), SPACE, commit, timeout=60)
    hub_env.add_faults({"force_stage": {"repo": SPACE, "stage": "APP_STARTING", "when": "now"}})

    started = time.monotonic()
    with pytest.raises(StageTimeout) as caught:
        wait(Hub.from_env(), SPACE, commit, timeout=0.8)

    assert caught.value.exit_code == 3
    assert 0.8 <= time.monotonic() - started < 10
    assert "APP_STARTING" in str(caught.value) and "after 1 s" in str(caught.value)


def test_a_paused_space_is_restarted_once(
    hub_env: LocalHub, api: HfApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = write_project(tmp_path / "p")
    commit = _sync(project)
    api.pause_space(SPACE)
    capsys.readouterr()

    result = wait(Hub.from_env(), SPACE, commit, timeout=60)

    assert result.restarted and result.stage == "RUNNING"
    assert capsys.readouterr().err.count("restarting it (once)") == 1
    assert _served_version(api) == "1"


def test_a_space_that_moved_on_is_exit_1(hub_env: LocalHub, api: HfApi, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    first = _sync(project)
    (project / "space" / "VERSION").write_text("2\n")
    second = _sync(project)
    wait(Hub.from_env(), SPACE, second, timeout=60)

    with pytest.raises(CheckFailed, match="moved on: its head is"):
        wait(Hub.from_env(), SPACE, first, timeout=60)


def test_wait_rides_through_503_bursts(hub_env: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    commit = _sync(project)
    hub_env.add_faults(
        {"status_codes": [503, 429], "paths": f"/api/spaces/{SPACE}/runtime", "count": 4}
    )

    result = wait(_quick_retries(), SPACE, commit, timeout=60)

    assert result.stage == "RUNNING"
    faulted = [r for r in hub_env.requests if r["status"] in (503, 429)]
    assert len(faulted) == 4


def test_backoff_starts_fast_and_caps(hub_env: LocalHub, tmp_path: Path) -> None:
    """The real loop against a Space stuck in APP_STARTING, on a clock that only sleeps."""
    project = write_project(tmp_path / "p")
    commit = _sync(project)
    wait(Hub.from_env(), SPACE, commit, timeout=60)
    hub_env.add_faults({"force_stage": {"repo": SPACE, "stage": "APP_STARTING", "when": "now"}})
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    with pytest.raises(StageTimeout):
        wait(
            Hub.from_env(),
            SPACE,
            commit,
            timeout=120,
            backoff=Backoff(initial=0.1, factor=1.5, maximum=10.0),
            sleep=sleep,
            clock=lambda: now[0],
        )

    assert slept[0] == pytest.approx(0.1) and slept[1] == pytest.approx(0.15)
    assert max(slept) == pytest.approx(10.0)
    assert sum(slept) == pytest.approx(120.0)
    assert len(slept) < 25  # about 11 fast polls, then one every 10 s


def test_cli_wait_reads_the_state_and_exits_1_on_a_crash(hub: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", app=CRASH_APP)
    env = cli_env(hub.url, TOKEN)
    assert cli(["sync"], cwd=project, env=env).returncode == 0

    done = cli(["wait", "--timeout", "60"], cwd=project, env=env)

    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("spacetrain wait: error: Space alice/trainer reached RUNTIME_ERROR")
    assert "| boom: CUDA out of memory" in done.stderr
    assert TOKEN not in done.stdout + done.stderr


def test_cli_wait_without_a_sync_is_exit_2(hub: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    done = cli(["wait"], cwd=project, env=cli_env(hub.url, TOKEN))
    assert done.returncode == 2
    assert "has no space_commit: run `spacetrain sync` first" in done.stderr


def test_cli_wait_prints_the_commit(hub: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    env = cli_env(hub.url, TOKEN)
    synced = cli(["sync"], cwd=project, env=env)
    assert synced.returncode == 0, synced.stderr

    done = cli(["wait", "--timeout", "60"], cwd=project, env=env)

    assert done.returncode == 0, done.stderr
    assert done.stdout == synced.stdout
    state = json.loads((project / ".spacetrain" / "state.json").read_text())
    assert state["space_commit"] == done.stdout.strip()


def _quick_retries() -> Hub:
    """The real retry policy with a short first backoff: the 503s cost milliseconds."""
    return Hub.from_env(retry=RetryPolicy(deadline=20, base=0.02, cap=0.2))


@pytest.mark.parametrize("way_out", ["SIGTERM", "SIGINT", "deadline"])
def test_cli_wait_that_gives_up_releases_the_space(
    hub: LocalHub, api: HfApi, tmp_path: Path, way_out: str
) -> None:
    """A cancelled CI job (SIGINT, then SIGTERM) or the deadline: the Space `wait` was
    waiting for stops billing (paused), and the command says so; the meter stops."""
    import signal
    import subprocess
    import sys

    project = write_project(tmp_path / "p")
    env = cli_env(hub.url, TOKEN)
    assert cli(["sync"], cwd=project, env=env).returncode == 0
    assert cli(["wait", "--timeout", "60"], cwd=project, env=env).returncode == 0
    hub.add_faults({"force_stage": {"repo": SPACE, "stage": "APP_STARTING", "when": "now"}})
    assert hub.billing()["spaces"][SPACE]["billing"] is not None  # the meter runs

    timeout = "1" if way_out == "deadline" else "600"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacetrain", "wait", "--timeout", timeout],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = ""
        while "APP_STARTING" not in seen:  # polling the stuck Space
            line = proc.stderr.readline()
            assert line, seen
            seen += line
        if way_out != "deadline":
            proc.send_signal(getattr(signal, way_out))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = seen + err

    assert proc.returncode == (3 if way_out == "deadline" else 130), err
    reason = "StageTimeout" if way_out == "deadline" else "interrupted"
    assert f"gave up ({reason}): releasing {SPACE}" in err
    assert f"{SPACE}: paused" in err
    assert "Traceback" not in err and TOKEN not in out + err
    assert api.get_space_runtime(SPACE).stage == "PAUSED"
    assert hub.billing()["spaces"][SPACE]["billing"] is None  # the meter stopped
