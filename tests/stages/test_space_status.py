"""`status` and `logs`: what the Space runs, holds and costs; its build and run logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from spacetrain.hub import Hub
from spacetrain.localhub import LocalHub
from spacetrain.stages.setup import SetupOptions
from spacetrain.stages.status import render_status, status
from spacetrain.stages.sync import SyncOptions, sync
from spacetrain.stages.wait import wait

from .conftest import SPACE_TOKEN, TOKEN
from .space_support import CRASH_APP, SPACE, cli, cli_env, write_project

pytestmark = pytest.mark.e2e


def _deployed(project: Path, hardware: str | None = "t4-small") -> str:
    options = SyncOptions(
        space=SPACE,
        space_dir=project / "space",
        policy=project / "policy" / "space.yaml",
        setup=SetupOptions(SPACE, hardware=hardware, token=SPACE_TOKEN),
    )
    commit = sync(Hub.from_env(), options).commit
    wait(Hub.from_env(), SPACE, commit, timeout=60)
    return commit


def test_status_of_a_space_in_step(hub_env: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    commit = _deployed(project)

    result = status(
        Hub.from_env(),
        SPACE,
        space_dir=project / "space",
        policy_path=project / "policy" / "space.yaml",
    )

    assert (result.stage, result.runtime_sha, result.head) == ("RUNNING", commit, commit)
    assert result.runs_head is True
    assert (result.hardware, result.requested_hardware) == ("t4-small", "t4-small")
    assert result.files == [
        ".gitattributes", "Dockerfile", "README.md", "VERSION", "app.py", "train.py",
    ]  # fmt: skip
    assert result.flags == []
    assert result.local is not None and result.local.in_sync
    assert result.billing is not None and result.billing["billing"] == "t4-small"
    text = render_status(result)
    assert f"commit    {commit[:12]} (the head)\n" in text
    assert "hardware  t4-small (requested t4-small)\n" in text
    assert "local     space/ matches the head\n" in text or "matches the head" in text
    assert "billed now: t4-small" in text


def test_status_flags_a_requirements_txt_and_a_stale_space(
    hub_env: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "p")
    commit = _deployed(project, hardware=None)
    # The seed's trap: someone adds a requirements.txt to the Space by hand.
    pushed = api.upload_file(
        path_or_fileobj=b"torch\n",
        path_in_repo="requirements.txt",
        repo_id=SPACE,
        repo_type="space",
    )
    (project / "space" / "VERSION").write_text("2\n")

    result = status(
        Hub.from_env(),
        SPACE,
        space_dir=project / "space",
        policy_path=project / "policy" / "space.yaml",
    )

    assert result.head == pushed.oid
    assert result.runtime_sha in (commit, pushed.oid)
    assert result.flags == [
        "requirements.txt: forbidden by the lint policy (forbidden-file); delete it"
    ]
    assert result.local is not None and not result.local.in_sync
    assert (result.local.changed, result.local.extra_remotely) == (
        ["VERSION"],
        ["requirements.txt"],
    )
    text = render_status(result)
    assert "flag      requirements.txt: forbidden" in text
    assert "only on the Space requirements.txt" in text


def test_cli_status_json(hub: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    env = cli_env(hub.url, TOKEN)
    synced = cli(["sync"], cwd=project, env=env)
    assert cli(["wait", "--timeout", "60"], cwd=project, env=env).returncode == 0

    done = cli(["status", "--format", "json"], cwd=project, env=env)

    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["schema_version"] == 1
    assert (data["stage"], data["head"], data["runs_head"]) == (
        "RUNNING",
        synced.stdout.strip(),
        True,
    )
    assert data["requested_hardware"] == "t4-small" and data["flags"] == []
    assert data["local"]["in_sync"] is True
    assert set(data["billing"]["flavors"]) <= {"t4-small", "cpu-basic"}
    assert TOKEN not in done.stdout + done.stderr


def test_cli_status_of_a_missing_space_is_exit_2(hub: LocalHub, tmp_path: Path) -> None:
    done = cli(["status", "--space", "alice/none"], cwd=tmp_path, env=cli_env(hub.url, TOKEN))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "no such repo" in done.stderr


def test_cli_logs_build_and_run(hub: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", app=CRASH_APP)
    env = cli_env(hub.url, TOKEN)
    commit = cli(["sync"], cwd=project, env=env).stdout.strip()
    assert cli(["wait", "--timeout", "60"], cwd=project, env=env).returncode == 1

    build = cli(["logs", "--build"], cwd=project, env=env)
    run = cli(["logs"], cwd=project, env=env)

    assert build.returncode == 0 and f"Commit SHA: {commit}" in build.stdout
    assert run.returncode == 0
    assert "loading the base model..." in run.stdout
    assert "boom: CUDA out of memory" in run.stdout


def test_cli_logs_follow_ends_with_a_dead_app(hub: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p", app=CRASH_APP)
    env = cli_env(hub.url, TOKEN)
    cli(["sync"], cwd=project, env=env)
    assert cli(["wait", "--timeout", "60"], cwd=project, env=env).returncode == 1

    done = cli(["logs", "--follow"], cwd=project, env=env, timeout=60)

    assert done.returncode == 0
    assert done.stdout.rstrip().endswith("boom: CUDA out of memory (tried to allocate 2.00 GiB)")
