"""Runs that end early, end to end: a deadline, a CI cancel, Stop on the page, someone
else's run, a Space that serves another app. Each must be stopped or left alone as it
should, and the GPU released (or not) as the Hub would bill it. The world is
tests/stages/adapter_world.py's, built for this module alone.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .adapter_world import DATA, MODEL, REPO, SPACE, World

pytestmark = pytest.mark.e2e


def test_a_different_active_run_is_neither_followed_nor_paused(
    world: World, tmp_path: Path
) -> None:
    from gradio_client import Client

    world.ensure_running()
    host = world.api.space_info(SPACE).host
    assert host
    client = Client(host, verbose=False, download_files=False)
    try:
        params = {"run_id": "someone-else", "base_model": MODEL, "dataset": DATA,
                  "push": False, "epochs": 1000, "batch_size": 1, "grad_accum": 1}  # fmt: skip
        started = json.loads(client.predict(json.dumps(params), api_name="/start_training"))
        assert started["created"] is True
        proc = world.spacetrain("train", "--state", tmp_path / "state.json", "--run-id", "mine")
        status = json.loads(client.predict("someone-else", api_name="/training_status"))
        assert status["state"] in ("queued", "running"), "the other run ended too soon"
        assert proc.returncode == 1, proc.stderr[-3000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last == (
            "spacetrain train: error: the Space is busy with run someone-else, not run mine; "
            "following neither. Wait until it ends, or follow it with --run-id someone-else"
        )
        assert "another run is active" in proc.stderr
        assert world.stage() == "RUNNING"  # pausing would have killed the other run
        assert "mine" not in world.run_folders()
        # train recorded why it held (the workflow's release step is skipped on it) ...
        recorded = json.loads((tmp_path / "state.json").read_text())
        assert recorded["space_hold"] == "the Space is training run someone-else, not ours"
        # ... and no other entry point pauses it either: `spacetrain release` holds too
        held = world.spacetrain("release", "--state", tmp_path / "state.json")
        assert (held.returncode, held.stdout.strip()) == (0, "held"), held.stderr
        assert "it is training run someone-else" in held.stderr
        bare = world.spacetrain("release", "--state", tmp_path / "none.json")  # no run of ours
        assert bare.stdout.strip() == "held"
        assert world.stage() == "RUNNING"
        # The other run never noticed (it cannot end by itself before this point, however
        # slow the machine): its owner stops it, and the Space is free again.
        status = json.loads(client.predict("someone-else", api_name="/training_status"))
        assert status["state"] == "running", status
        client.predict("someone-else", api_name="/stop_training")
        deadline = time.monotonic() + 60
        while status["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
            status = json.loads(client.predict("someone-else", api_name="/training_status"))
        assert status["state"] == "cancelled", status
    finally:
        client.close()


def test_a_deadline_ends_the_run_with_the_space_a_sigterm_stops_ours_first(
    world: World, tmp_path: Path, train_processes: Any
) -> None:
    """A deadline releases (pauses) the Space, which ends the container and the run in it,
    as on the Hub; a SIGTERM stops our run (cancelled) before releasing; the next train
    starts a new run, and only that one ever pushes."""
    world.ensure_running()
    state = tmp_path / "state.json"
    other = "me/timeout-adapter"
    # A run long enough to outlive the command (500 epochs, 1000 steps).
    late = world.spacetrain("train", "--state", state, "--run-id", "slow-1", "--timeout", "1",
                            "--epochs", "500", "--output-repo", other,
                            "--poll-interval", "1")  # fmt: skip
    assert late.returncode == 3, late.stderr[-3000:]
    last = late.stderr.strip().splitlines()[-1]
    assert last.startswith("spacetrain train: error: run slow-1 is still ")
    assert " at the deadline" in last
    assert world.stage() == "PAUSED"  # released all the same ...
    assert train_processes.gone(
        "slow-1"
    )  # ... and that ended the run, as a paused Space's container
    recorded = json.loads(state.read_text())
    assert recorded["run_id"] == "slow-1"
    assert recorded["run_state"] in ("queued", "running")

    # A CI cancel (SIGTERM) while following a live run of ours stops it, then releases.
    world.ensure_running()
    follower = subprocess.Popen(
        [sys.executable, "-m", "spacetrain", "train", "--state", state, "--run-id", "slow-2",
         "--epochs", "500", "--output-repo", other, "--poll-interval", "1"],
        cwd=world.project, env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        seen = []
        assert follower.stderr is not None
        for line in follower.stderr:
            seen.append(line)
            if "started run slow-2" in line:
                break
        assert "[train] started run slow-2 on me/trainer" in seen[-1], seen
        deadline = time.monotonic() + 30  # the state names it just after that line
        while json.loads(state.read_text()).get("run_id") != "slow-2":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        while not train_processes("slow-2"):  # so that .gone below can fail
            assert time.monotonic() < deadline + 60, "train.py of slow-2 never seen"
            time.sleep(0.1)
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=120)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 130, "".join(seen) + err
    # Our run is stopped first (it ends as cancelled, not killed by the pause), then released.
    assert "[train] stopping run slow-2 on me/trainer" in err
    assert "[train] run slow-2 is cancelled" in err
    assert "[train] interrupted while following run slow-2" in err
    assert err.strip().endswith("spacetrain: interrupted")
    assert out == ""
    assert world.stage() == "PAUSED"
    assert train_processes.gone("slow-2")
    assert json.loads(state.read_text())["run_state"] == "cancelled"

    # The next train starts a new run: neither the killed nor the cancelled one is rejoined.
    world.ensure_running()
    folders = world.run_folders()
    again = world.spacetrain("train", "--state", state, "--output-repo", other,
                             "--poll-interval", "1")  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    run_id = json.loads(state.read_text())["run_id"]
    assert run_id not in ("slow-1", "slow-2")
    assert f"[train] started run {run_id} on me/trainer" in again.stderr
    assert world.run_folders() == folders | {run_id}
    commits = world.api.list_repo_commits(other)
    pushed = [c.title for c in commits if "spacetrain run" in c.title]
    assert len(pushed) == 1, pushed  # no killed or cancelled run ever pushed
    assert f"spacetrain run {run_id}" in commits[0].title
    assert f"adapter_revision={commits[0].commit_id}" in again.stdout


def test_a_run_stopped_on_the_page_is_exit_1_cancelled_and_released(
    world: World, tmp_path: Path
) -> None:
    """Someone presses Stop (stop_training) while train follows: exit 1, recorded, released."""
    from gradio_client import Client

    world.ensure_running()
    state = tmp_path / "state.json"
    follower = subprocess.Popen(
        [sys.executable, "-m", "spacetrain", "train", "--state", state, "--run-id", "stopped-1",
         "--epochs", "500", "--poll-interval", "1"],
        cwd=world.project, env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    client = Client(str(world.api.space_info(SPACE).host), verbose=False, download_files=False)
    try:
        assert follower.stderr is not None
        for line in follower.stderr:
            if "[train] started run stopped-1" in line:
                break
        stopped = json.loads(client.predict("stopped-1", api_name="/stop_training"))
        assert stopped["state"] == "cancelled", stopped
        out, err = follower.communicate(timeout=120)
    finally:
        client.close()
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 1, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("spacetrain train: error: run stopped-1 was cancelled: cancelled"), err
    assert out == ""
    assert json.loads(state.read_text())["run_state"] == "cancelled"
    assert world.stage() == "PAUSED"


NOT_GRADIO = """\
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello, not a Gradio app")

    do_POST = do_GET

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(os.environ["GRADIO_SERVER_PORT"])), Hello).serve_forever()
"""


def test_a_space_serving_some_other_app_is_given_up_on_and_released(
    world: World, tmp_path: Path
) -> None:
    folder = tmp_path / "space"
    folder.mkdir()
    shutil.copyfile(REPO / "space" / "README.md", folder / "README.md")
    shutil.copyfile(REPO / "space" / "Dockerfile", folder / "Dockerfile")
    (folder / "app.py").write_text(NOT_GRADIO)
    other = "me/not-gradio"
    world.api.create_repo(other, repo_type="space", space_sdk="docker")
    world.api.upload_folder(repo_id=other, repo_type="space", folder_path=folder)
    deadline = time.monotonic() + 60
    while (stage := str(world.api.get_space_runtime(other).stage)) != "RUNNING":
        assert "ERROR" not in stage and time.monotonic() < deadline, stage
        time.sleep(0.2)
    proc = world.spacetrain("train", "--space", other, "--state", tmp_path / "state.json",
                            "--run-id", "w1", env={"SPACETRAIN_DISCONNECT_LIMIT": "2"})  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"spacetrain train: error: the app of {other} has not answered for ")
    assert "is it running this project's space/app.py?" in last
    assert str(world.api.get_space_runtime(other).stage) == "PAUSED"
