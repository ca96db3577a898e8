"""`space setup` (and `sync`, which runs it): a first deploy gets a Space that can push.

Through the real CLI in a subprocess against localhub: a missing Space is created private
with its HF_TOKEN secret (from SPACE_HF_TOKEN), the adapter's variables and its hardware in
one call; a second set-up changes nothing (no write, no restart on localhub's meter); a
changed setting changes only that; nothing is changed while the Space trains a run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi

from spacetrain.localhub import LocalHub
from spacetrain.stages.setup import fingerprint, matches

from .conftest import ADMIN_TOKEN, SPACE_TOKEN, TOKEN
from .space_support import ADAPTER, SPACE, cli, cli_env, commits, wait_until, write_project

pytestmark = pytest.mark.e2e

# Answers the one call set-up makes to a serving Space: "which run are you training?"
BUSY_APP = """\
import json
import os

import gradio as gr


def training_status(run_id: str = "") -> str:
    return json.dumps({"run_id": "their-run", "state": "running", "step": 3, "total": 9})


with gr.Blocks() as demo:
    gr.api(training_status, api_name="training_status")

demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
            server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
"""


def _project(
    tmp_path: Path, train: str = "{ epochs = 3, lora_r = 8 }", extra_config: str = "", **kw: Any
) -> Path:
    return write_project(tmp_path / "p", extra=extra_config + ADAPTER.format(train=train), **kw)


def _clear_requests(hub: LocalHub) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # the control plane is guarded
    httpx.delete(f"{hub.url}/_localhub/requests", headers=admin, timeout=5).raise_for_status()


def _writes(hub: LocalHub) -> list[str]:
    return [
        f"{r['method']} {r['path']}"
        for r in hub.requests
        if r["method"] != "GET" and not r["path"].startswith("/_localhub/")
    ]


def _starts(hub: LocalHub) -> tuple[int, int]:
    space = hub.billing()["spaces"].get(SPACE, {})
    return space.get("builds", 0), space.get("restarts", 0)


def test_a_missing_space_is_created_with_its_secret_variables_and_hardware(
    hub: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    env = cli_env(hub.url, TOKEN)

    done = cli(["space", "setup"], cwd=project, env=env)

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["created"] and result["credential"] == "set"
    info = api.space_info(SPACE)
    assert info.private is True and info.sdk == "docker"
    assert api.get_space_runtime(SPACE).requested_hardware == "t4-small"
    variables = {k: v.value for k, v in api.get_space_variables(SPACE).items()}
    assert variables == {
        "BASE_MODEL": "alice/base",
        "DATASET": "alice/data",
        "OUTPUT_REPO": "alice/adapter",
        "EPOCHS": "3.0",
        "LORA_R": "8",
        "SPACETRAIN_EXPECT_GPU": "1",
    }
    secret = api.get_space_secrets(SPACE)["HF_TOKEN"]
    assert matches(secret.description, SPACE_TOKEN) and not matches(secret.description, TOKEN)
    assert SPACE_TOKEN not in (secret.description or "")
    for text in (done.stdout, done.stderr):  # neither token, nor a fingerprint of it, is shown
        assert SPACE_TOKEN not in text and TOKEN not in text and "sha256" not in text
    assert _writes(hub).count("POST /api/repos/create") == 1  # everything in one call


def test_unchanged_setup_and_sync_twice_make_no_commit_and_no_restart(
    hub: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    env = cli_env(hub.url, TOKEN)
    first = cli(["sync"], cwd=project, env=env)
    assert first.returncode == 0, first.stderr
    assert cli(["wait", "--timeout", "60"], cwd=project, env=env).returncode == 0
    before_commits, before_starts = commits(api), _starts(hub)
    _clear_requests(hub)

    again = [cli(args, cwd=project, env=env) for args in (["space", "setup"], ["sync"])]

    assert [p.returncode for p in again] == [0, 0], again[-1].stderr
    assert json.loads(again[0].stdout)["writes"] == 0
    assert "nothing to change" in again[0].stderr
    assert _writes(hub) == []  # no variable, secret, hardware, commit or restart call
    assert commits(api) == before_commits
    assert _starts(hub) == before_starts  # localhub's meter: no build, no restart
    assert api.get_space_runtime(SPACE).stage == "RUNNING"


def test_a_changed_setting_changes_only_that(hub: LocalHub, api: HfApi, tmp_path: Path) -> None:
    project = _project(tmp_path)
    env = cli_env(hub.url, TOKEN)
    assert cli(["space", "setup"], cwd=project, env=env).returncode == 0
    (project / "pyproject.toml").write_text(
        (project / "pyproject.toml").read_text().replace("epochs = 3, lora_r = 8", "epochs = 5")
    )
    _clear_requests(hub)

    done = cli(["space", "setup"], cwd=project, env={**env, "SPACE_HF_TOKEN": TOKEN})

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["variables_set"] == ["EPOCHS"] and result["variables_deleted"] == ["LORA_R"]
    assert result["credential"] == "set"  # a rotated SPACE_HF_TOKEN replaces the secret
    assert sorted(_writes(hub)) == sorted(
        [
            f"POST /api/spaces/{SPACE}/variables",
            f"DELETE /api/spaces/{SPACE}/variables",
            f"POST /api/spaces/{SPACE}/secrets",
        ]
    )
    variables = {k: v.value for k, v in api.get_space_variables(SPACE).items()}
    assert variables["EPOCHS"] == "5.0" and "LORA_R" not in variables
    assert matches(api.get_space_secrets(SPACE)["HF_TOKEN"].description, TOKEN)


def test_without_space_hf_token_a_new_space_is_not_created(
    hub: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    env = cli_env(hub.url, TOKEN)
    env.pop("SPACE_HF_TOKEN")

    for args in (["space", "setup"], ["sync"]):
        done = cli(args, cwd=project, env=env)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert "SPACE_HF_TOKEN is not set" in lines[-1] and "Traceback" not in done.stderr
    assert not api.repo_exists(SPACE, repo_type="space")


def test_a_space_whose_secret_is_gone_needs_space_hf_token(
    hub: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    env = cli_env(hub.url, TOKEN)
    assert cli(["space", "setup"], cwd=project, env=env).returncode == 0
    api.delete_space_secret(SPACE, "HF_TOKEN")
    env.pop("SPACE_HF_TOKEN")

    done = cli(["sync"], cwd=project, env=env)

    assert done.returncode == 2
    assert "has no HF_TOKEN secret and SPACE_HF_TOKEN is not set" in done.stderr
    assert commits(api)[0] == api.space_info(SPACE).sha and len(commits(api)) == 1


def test_nothing_changes_while_the_space_trains_a_run(
    hub: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    project = _project(tmp_path, app=BUSY_APP, hardware="cpu-basic")
    env = cli_env(hub.url, TOKEN)
    assert cli(["sync"], cwd=project, env=env).returncode == 0
    assert cli(["wait", "--timeout", "120"], cwd=project, env=env).returncode == 0
    (project / "pyproject.toml").write_text(
        (project / "pyproject.toml").read_text().replace("epochs = 3", "epochs = 6")
    )
    (project / "space" / "VERSION").write_text("2\n")
    head, starts = api.space_info(SPACE).sha, _starts(hub)

    for args in (["space", "setup"], ["sync"]):
        done = cli(args, cwd=project, env=env)
        assert done.returncode == 1, done.stderr
        assert "training run their-run" in done.stderr and "Nothing was changed" in done.stderr

    variables = {k: v.value for k, v in api.get_space_variables(SPACE).items()}
    assert variables["EPOCHS"] == "3.0"
    assert api.space_info(SPACE).sha == head and _starts(hub) == starts
    wait_until(lambda: api.get_space_runtime(SPACE).stage == "RUNNING", what="still running")


def test_the_fingerprint_is_salted_and_checkable() -> None:
    one, two = fingerprint("hf_x"), fingerprint("hf_x")
    assert one != two and matches(one, "hf_x") and matches(two, "hf_x")
    assert not matches(one, "hf_y") and not matches(None, "hf_x") and not matches("x:y", "hf_x")
    assert "hf_x" not in one


def test_sleep_time_follows_the_hardware_and_is_set_once(
    hub: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    project = _project(tmp_path, hardware="cpu-basic", extra_config="sleep_time = 900\n")
    env = cli_env(hub.url, TOKEN)
    first = cli(["space", "setup"], cwd=project, env=env)
    assert first.returncode == 0, first.stderr
    assert api.get_space_runtime(SPACE).sleep_time != 900  # the free flavor has none to set
    _clear_requests(hub)
    again = cli(["space", "setup"], cwd=project, env=env)
    assert "sleep_time does not apply to cpu-basic" in again.stderr and _writes(hub) == []

    config = project / "pyproject.toml"
    config.write_text(config.read_text().replace('"cpu-basic"', '"t4-small"'))
    moved = cli(["space", "setup"], cwd=project, env=env)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["sleep_time"] == 900  # after the move, not before it
    runtime = api.get_space_runtime(SPACE)
    assert (runtime.requested_hardware, runtime.sleep_time) == ("t4-small", 900)
    _clear_requests(hub)
    assert cli(["space", "setup"], cwd=project, env=env).returncode == 0
    assert _writes(hub) == []


def test_a_public_space_is_warned_about_and_gets_its_trigger_secret(
    hub: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    """A public Space's API answers anyone: set-up says so, louder without a trigger, and
    sets SPACETRAIN_TRIGGER (fingerprinted, never shown) when the environment has it."""
    project = _project(tmp_path)
    env = cli_env(hub.url, TOKEN)
    env.pop("SPACETRAIN_TRIGGER", None)
    trigger = "trigger-value-for-the-test-0123456789"

    bare = cli(["space", "setup", "--public"], cwd=project, env=env)

    assert bare.returncode == 0, bare.stderr
    result = json.loads(bare.stdout)
    assert (result["public"], result["trigger"]) == (True, "none")
    assert api.space_info(SPACE).private is False
    assert f"warning: Space {SPACE} is public" in bare.stderr
    assert "public without a SPACETRAIN_TRIGGER secret: anyone can start a run" in bare.stderr

    guarded = cli(["space", "setup"], cwd=project, env={**env, "SPACETRAIN_TRIGGER": trigger})

    assert guarded.returncode == 0, guarded.stderr
    result = json.loads(guarded.stdout)
    assert (result["public"], result["trigger"], result["writes"]) == (True, "set", 1)
    stored = api.get_space_secrets(SPACE)["SPACETRAIN_TRIGGER"]
    assert matches(stored.description, trigger)
    assert f"warning: Space {SPACE} is public" in guarded.stderr
    assert "without a SPACETRAIN_TRIGGER" not in guarded.stderr
    for text in (guarded.stdout, guarded.stderr):
        assert trigger not in text and "sha256" not in text

    again = cli(["space", "setup"], cwd=project, env={**env, "SPACETRAIN_TRIGGER": trigger})
    assert json.loads(again.stdout)["trigger"] == "unchanged"
    assert json.loads(again.stdout)["writes"] == 0


def test_a_private_space_is_not_warned_about(hub: LocalHub, api: HfApi, tmp_path: Path) -> None:
    project = _project(tmp_path)
    done = cli(["space", "setup"], cwd=project, env=cli_env(hub.url, TOKEN))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["public"] is False
    assert "is public" not in done.stderr
