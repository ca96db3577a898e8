"""Docker Spaces emulated by localhub, driven by the real huggingface_hub and gradio_client."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, SpaceRuntime
from huggingface_hub.errors import BadRequestError

from spacetrain.localhub import LocalHub, use_endpoint

from .conftest import TOKEN
from .spaceapps import CRASH_APP, GRADIO_APP, SILENT_APP, write_space

pytestmark = pytest.mark.e2e

SPACE = "alice/trainer"


def _app(api: HfApi, repo_id: str = SPACE) -> dict[str, Any]:
    """What the running app says about itself (through space_info().host, as a browser)."""
    host = api.space_info(repo_id).host
    assert host is not None
    return httpx.get(host, timeout=5).json()


def _wait(api: HfApi, repo_id: str = SPACE, timeout: float = 60) -> SpaceRuntime:
    return api.wait_for_space(repo_id, timeout=timeout, poll_interval=0.05)


def _stages_until_settled(api: HfApi, repo_id: str = SPACE) -> list[str]:
    """Every distinct stage seen while polling until the Space settles."""
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stage = api.get_space_runtime(repo_id).stage
        if not seen or seen[-1] != stage:
            seen.append(stage)
        if stage not in ("BUILDING", "APP_STARTING", "RUNNING_BUILDING", "RUNNING_APP_STARTING"):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"never settled: {seen}")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_space_lifecycle(api: HfApi, hub: LocalHub, tmp_path: Path) -> None:
    api.create_repo(SPACE, repo_type="space", space_sdk="docker")
    assert _wait(api).stage == "NO_APP_FILE"  # the Hub's first commit has no Dockerfile

    # First deploy: BUILDING -> APP_STARTING -> RUNNING, and the runtime names the commit.
    first = api.upload_folder(
        repo_id=SPACE, repo_type="space", folder_path=write_space(tmp_path / "s")
    )
    assert _stages_until_settled(api) == ["BUILDING", "APP_STARTING", "RUNNING"]
    runtime = api.get_space_runtime(SPACE)
    assert runtime.raw["sha"] == first.oid
    assert runtime.hardware == runtime.requested_hardware == "cpu-basic"
    assert runtime.sleep_time == 48 * 3600  # free hardware sleeps after 48 h
    app = _app(api)
    port = api.space_info(SPACE).host.rsplit(":", 1)[1]
    env = app["env"]
    assert env["SPACE_ID"] == SPACE
    assert (env["SPACE_AUTHOR_NAME"], env["SPACE_REPO_NAME"]) == ("alice", "trainer")
    # the app listens on its own port (the container's); the Space's address is its gateway
    assert env["GRADIO_SERVER_NAME"] == "127.0.0.1" and env["GRADIO_SERVER_PORT"] != port
    assert env["SPACE_HOST"] == f"127.0.0.1:{port}"
    assert env["HF_ENDPOINT"] == hub.url
    assert "ACCELERATOR" not in env and "HF_TOKEN" not in env
    assert app["version"] == "1"

    # A commit while RUNNING: the old app keeps serving until the new one answers.
    second = api.upload_file(
        path_or_fileobj=b"2\n", path_in_repo="VERSION", repo_id=SPACE, repo_type="space"
    )
    runtime = api.get_space_runtime(SPACE)
    assert runtime.stage == "RUNNING_BUILDING"
    assert runtime.raw["sha"] == first.oid  # still serving the first commit
    assert _app(api)["version"] == "1"
    runtime = _wait(api)
    assert (runtime.stage, runtime.raw["sha"]) == ("RUNNING", second.oid)
    assert _app(api)["version"] == "2"
    assert _gone(app["pid"])  # the old process was stopped once the new one answered

    # Variables and secrets reach the app (the Space restarts to apply them).
    api.add_space_variable(SPACE, "GREETING", "hi", description="a variable")
    api.add_space_secret(SPACE, "HF_TOKEN", "hf_given_to_the_space")
    assert _wait(api).stage == "RUNNING"
    env = _app(api)["env"]
    assert (env["GREETING"], env["HF_TOKEN"]) == ("hi", "hf_given_to_the_space")
    assert api.get_space_variables(SPACE)["GREETING"].value == "hi"
    secrets = api.get_space_secrets(SPACE)
    assert list(secrets) == ["HF_TOKEN"] and secrets["HF_TOKEN"].updated_at is not None
    api.delete_space_variable(SPACE, "GREETING")
    assert _wait(api).stage == "RUNNING"
    assert "GREETING" not in _app(api)["env"]

    # Hardware: names are checked against the real list; a GPU flavor sets ACCELERATOR.
    with pytest.raises(BadRequestError):
        api.request_space_hardware(SPACE, "a10g-gigantic")
    assert api.request_space_hardware(SPACE, "t4-small").requested_hardware == "t4-small"
    runtime = _wait(api)
    assert (runtime.stage, runtime.hardware) == ("RUNNING", "t4-small")
    assert runtime.sleep_time is None  # paid hardware never sleeps unless told to
    assert _app(api)["env"]["ACCELERATOR"] == "t4"

    # Restart (same commit: no rebuild) and factory reboot (rebuilds).
    assert api.restart_space(SPACE).stage == "APP_STARTING"
    assert _wait(api).stage == "RUNNING"
    assert api.restart_space(SPACE, factory_reboot=True).stage == "BUILDING"
    assert _wait(api).raw["sha"] == second.oid

    # Pause stops the process and the bill; restart resumes.
    pid = _app(api)["pid"]
    assert api.pause_space(SPACE).stage == "PAUSED"
    assert _gone(pid)
    runtime = api.get_space_runtime(SPACE)
    assert (runtime.stage, runtime.hardware, runtime.requested_hardware) == (
        "PAUSED",
        None,
        "t4-small",
    )
    billed = hub.billing()["spaces"][SPACE]
    assert billed["billing"] is None
    assert billed["flavors"]["cpu-basic"]["seconds"] > 0
    assert billed["flavors"]["t4-small"]["seconds"] > 0
    time.sleep(0.2)
    assert httpx.get(f"{hub.url}/_localhub/billing").json()["spaces"][SPACE] == billed
    # a commit to a paused Space does not start it
    api.upload_file(
        path_or_fileobj=b"3\n", path_in_repo="VERSION", repo_id=SPACE, repo_type="space"
    )
    assert api.get_space_runtime(SPACE).stage == "PAUSED"
    assert api.restart_space(SPACE).stage == "BUILDING"
    assert _wait(api).stage == "RUNNING"
    assert _app(api)["version"] == "3"
    assert hub.billing()["spaces"][SPACE]["billing"] == "t4-small"


def test_space_logs_stream_as_the_hub_does(api: HfApi, tmp_path: Path) -> None:
    api.create_repo(SPACE, repo_type="space", space_sdk="docker")
    sha = api.upload_folder(
        repo_id=SPACE, repo_type="space", folder_path=write_space(tmp_path / "s")
    ).oid
    assert _wait(api).stage == "RUNNING"
    build = list(api.fetch_space_logs(SPACE, build=True))
    assert build[0].startswith("===== Build Queued at ")
    assert build[0].rstrip().endswith(f"Commit SHA: {sha} =====")
    assert any("[3/3] CMD" in line for line in build)  # the Dockerfile's steps, listed
    _app(api)  # the app logs "request /" for this call (and for localhub's readiness probe)
    lines = []
    for line in api.fetch_space_logs(SPACE, follow=True):  # live: ends when we stop reading
        lines.append(line)
        if line.startswith("request"):
            break
    assert lines[1:] == ["env app starting\n", "request /\n"]


def test_space_config_errors(api: HfApi, tmp_path: Path) -> None:
    api.create_repo(SPACE, repo_type="space", space_sdk="docker")
    folder = write_space(tmp_path / "s", readme="---\ntitle: x\nsdk: dockerr\n---\n")
    api.upload_folder(repo_id=SPACE, repo_type="space", folder_path=folder)
    runtime = _wait(api)
    assert runtime.stage == "CONFIG_ERROR"
    assert "sdk must be one of" in runtime.raw["errorMessage"]

    with pytest.raises(ValueError, match=r"Invalid metadata in README\.md"):
        api.upload_file(
            path_or_fileobj=b"---\nsdk: [docker\n---\n",
            path_in_repo="README.md",
            repo_id=SPACE,
            repo_type="space",
        )

    api.create_commit(
        SPACE,
        repo_type="space",
        operations=[CommitOperationAdd("README.md", b"---\nsdk: docker\napp_port: 99999\n---\n")],
        commit_message="bad port",
    )
    runtime = _wait(api)
    assert (runtime.stage, runtime.raw["errorMessage"]) == (
        "CONFIG_ERROR",
        "README.md: app_port must be a port number, got 99999",
    )

    api.create_commit(
        SPACE,
        repo_type="space",
        operations=[
            CommitOperationAdd("README.md", b"---\nsdk: docker\n---\n"),
            CommitOperationDelete("Dockerfile"),
        ],
        commit_message="no Dockerfile",
    )
    assert _wait(api).stage == "NO_APP_FILE"

    api.create_commit(
        SPACE,
        repo_type="space",
        operations=[
            CommitOperationAdd("Dockerfile", b"FROM scratch\n"),
            CommitOperationDelete("app.py"),
        ],
        commit_message="Dockerfile but no app.py",
    )
    runtime = _wait(api)
    assert runtime.stage == "BUILD_ERROR"
    assert "localhub does not run Docker" in runtime.raw["errorMessage"]


def test_crashing_app_is_a_runtime_error_with_its_log_tail(api: HfApi, tmp_path: Path) -> None:
    api.create_repo(SPACE, repo_type="space", space_sdk="docker")
    sha = api.upload_folder(
        repo_id=SPACE, repo_type="space", folder_path=write_space(tmp_path / "s", CRASH_APP)
    ).oid
    runtime = _wait(api)
    assert (runtime.stage, runtime.raw["sha"]) == ("RUNTIME_ERROR", sha)
    message = runtime.raw["errorMessage"]
    assert message.startswith("Exit code: 3. Reason: boom: CUDA out of memory")
    assert "loading the model..." in message  # the log tail rides along
    run = list(api.fetch_space_logs(SPACE))
    assert run[-2:] == ["loading the model...\n", "boom: CUDA out of memory\n"]
    assert runtime.hardware is None
    with pytest.raises(ValueError, match="invalid state"):
        from gradio_client import Client

        with use_endpoint(api.endpoint):
            Client(SPACE, verbose=False)


def test_killed_app_and_forced_stages(api: HfApi, hub: LocalHub, tmp_path: Path) -> None:
    api.create_repo(SPACE, repo_type="space", space_sdk="docker")
    api.upload_folder(repo_id=SPACE, repo_type="space", folder_path=write_space(tmp_path / "s"))
    assert _wait(api).stage == "RUNNING"
    pid = _app(api)["pid"]

    reply = httpx.post(f"{hub.url}/_localhub/faults", json={"kill_space": SPACE})
    assert reply.status_code == 200
    runtime = _wait(api)
    deadline = time.monotonic() + 10
    while runtime.stage != "RUNTIME_ERROR" and time.monotonic() < deadline:
        runtime = api.get_space_runtime(SPACE)
    assert runtime.stage == "RUNTIME_ERROR"
    assert runtime.raw["errorMessage"].startswith("Killed by signal SIGKILL.")
    assert _gone(pid)
    assert hub.billing()["spaces"][SPACE]["billing"] is None

    hub.add_faults({"force_stage": {"repo": SPACE, "stage": "BUILD_ERROR", "when": "next_build"}})
    assert api.restart_space(SPACE, factory_reboot=True).stage == "BUILDING"
    runtime = _wait(api)
    assert (runtime.stage, runtime.raw["errorMessage"]) == (
        "BUILD_ERROR",
        "localhub: forced BUILD_ERROR",
    )
    assert list(api.fetch_space_logs(SPACE, build=True))[-1].startswith("===== BUILD_ERROR")

    api.restart_space(SPACE)
    assert _wait(api).stage == "RUNNING"
    hub.add_faults({"force_stage": {"repo": SPACE, "stage": "APP_STARTING"}})
    with pytest.raises(TimeoutError):  # a Space stuck starting: the client's wait times out
        api.wait_for_space(SPACE, timeout=0.3, poll_interval=0.05)
    unknown = httpx.post(
        f"{hub.url}/_localhub/faults", json={"force_stage": {"repo": SPACE, "stage": "NAPPING"}}
    )
    assert unknown.status_code == 400 and "Unknown stage" in unknown.json()["error"]


def test_sleep_time_puts_a_paid_space_to_sleep(api: HfApi, hub: LocalHub, tmp_path: Path) -> None:
    api.create_repo(
        SPACE, repo_type="space", space_sdk="docker", space_hardware="t4-small", space_sleep_time=1
    )
    api.upload_folder(repo_id=SPACE, repo_type="space", folder_path=write_space(tmp_path / "s"))
    assert _wait(api).stage == "RUNNING"
    assert api.get_space_runtime(SPACE).sleep_time == 1
    deadline = time.monotonic() + 10
    while api.get_space_runtime(SPACE).stage != "SLEEPING":
        assert time.monotonic() < deadline, "the Space never went to sleep"
        time.sleep(0.1)
    assert hub.billing()["spaces"][SPACE]["billing"] is None
    assert api.set_space_sleep_time(SPACE, sleep_time=-1).sleep_time is None
    assert api.restart_space(SPACE).stage == "APP_STARTING"
    assert _wait(api).stage == "RUNNING"


def test_gradio_client_calls_a_space_app(api: HfApi, hub: LocalHub, tmp_path: Path) -> None:
    from gradio_client import Client

    api.create_repo(SPACE, repo_type="space", space_sdk="docker")
    api.add_space_variable(SPACE, "GREETING", "hi")
    api.upload_folder(
        repo_id=SPACE, repo_type="space", folder_path=write_space(tmp_path / "s", GRADIO_APP)
    )
    assert _wait(api, timeout=120).stage == "RUNNING"
    # gradio_client resolves "owner/space" through huggingface_hub's module-level
    # space_info, bound to the endpoint read at import: use_endpoint re-points it.
    with use_endpoint(hub.url):
        client = Client(SPACE, verbose=False)
        try:
            assert client.predict("bob", api_name="/greet") == f"hello bob from {SPACE} (hi)"
        finally:
            client.close()


def test_hub_stop_and_restart_bring_spaces_down_and_back(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    with LocalHub(root=root) as hub:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        for name in ("alice/up", "alice/paused"):
            api.create_repo(name, repo_type="space", space_sdk="docker")
            api.upload_folder(
                repo_id=name, repo_type="space", folder_path=write_space(tmp_path / "s")
            )
            assert _wait(api, name).stage == "RUNNING"
        api.pause_space("alice/paused")
        api.request_space_hardware("alice/up", "a10g-small")
        assert _wait(api, "alice/up").stage == "RUNNING"
        pid = _app(api, "alice/up")["pid"]
    assert _gone(pid)  # stop() stops every app it started

    with LocalHub(root=root) as hub:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        assert api.get_space_runtime("alice/paused").stage == "PAUSED"
        runtime = _wait(api, "alice/up")
        assert (runtime.stage, runtime.hardware) == ("RUNNING", "a10g-small")
        assert _app(api, "alice/up")["env"]["ACCELERATOR"] == "a10g"


def test_an_app_that_never_listens_times_out(tmp_path: Path) -> None:
    with LocalHub(root=tmp_path / "hub", startup_timeout=1) as hub:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo(SPACE, repo_type="space", space_sdk="docker")
        api.upload_folder(
            repo_id=SPACE, repo_type="space", folder_path=write_space(tmp_path / "s", SILENT_APP)
        )
        runtime = _wait(api)
        assert runtime.stage == "RUNTIME_ERROR"
        assert "does it read GRADIO_SERVER_PORT?" in runtime.raw["errorMessage"]


def test_deleting_a_space_stops_its_app(api: HfApi, tmp_path: Path) -> None:
    api.create_repo(SPACE, repo_type="space", space_sdk="docker")
    api.upload_folder(repo_id=SPACE, repo_type="space", folder_path=write_space(tmp_path / "s"))
    assert _wait(api).stage == "RUNNING"
    pid = _app(api)["pid"]
    api.delete_repo(SPACE, repo_type="space")
    assert _gone(pid)
    assert not api.repo_exists(SPACE, repo_type="space")


def test_a_next_build_fault_skips_the_build_already_under_way(
    api: HfApi, hub: LocalHub, tmp_path: Path
) -> None:
    """The fault set while commit 1 builds is for commit 2's build, not commit 1's (a race
    that once made a wait test fail one run in a full suite)."""
    api.create_repo(SPACE, repo_type="space", space_sdk="docker")
    first = api.upload_folder(
        repo_id=SPACE, repo_type="space", folder_path=write_space(tmp_path / "s")
    ).oid
    assert api.get_space_runtime(SPACE).stage == "BUILDING"  # the 0.2 s build is under way
    hub.add_faults({"force_stage": {"repo": SPACE, "stage": "BUILD_ERROR", "when": "next_build"}})
    runtime = _wait(api)
    assert (runtime.stage, runtime.raw["sha"]) == ("RUNNING", first)

    second = api.upload_file(
        path_or_fileobj=b"2\n", path_in_repo="VERSION", repo_id=SPACE, repo_type="space"
    ).oid
    deadline = time.monotonic() + 30
    while (runtime := api.get_space_runtime(SPACE)).stage != "BUILD_ERROR":
        assert time.monotonic() < deadline, runtime.stage
        time.sleep(0.05)
    assert runtime.raw["sha"] == second
