"""A Space ends like a container: every way out ends its whole process tree.

The app below starts a child that leaves the app's session (as space/app.py starts its
training supervisor) and ignores SIGTERM; each test makes sure it is gone after the
Space is paused, killed, restarted, rebuilt, put to sleep, reset or shut down.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi

from spacetrain.localhub import LocalHub
from spacetrain.localhub.procs import TAG_ENV, kill_all, new_tag, tagged

from .spaceapps import write_space

pytestmark = pytest.mark.e2e

SPACE = "alice/detached"

# The app answers GET / with the pid of a detached child that writes a beat file.
DETACH_APP = """\
import json, os, subprocess, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

CHILD = '''
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
while True:
    with open(sys.argv[1], "a") as f:
        f.write("beat\\\\n")
    time.sleep(0.05)
'''
child = subprocess.Popen([sys.executable, "-c", CHILD, os.environ["BEAT_FILE"]],
                         start_new_session=True, stdout=subprocess.DEVNULL)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"app": os.getpid(), "child": child.pid}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(os.environ["GRADIO_SERVER_PORT"])), Handler).serve_forever()
"""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"still alive: {[p for p in pids if alive(p)]}"
        time.sleep(0.05)


def still(beat: Path, quiet: float = 0.4) -> bool:
    """Nobody writes the beat file any more."""
    size = beat.stat().st_size if beat.exists() else 0
    time.sleep(quiet)
    return (beat.stat().st_size if beat.exists() else 0) == size


def deploy(api: HfApi, folder: Path, beat: Path, repo_id: str = SPACE) -> dict[str, int]:
    """The app up and RUNNING, its detached child beating; the pids."""
    api.create_repo(
        repo_id,
        repo_type="space",
        space_sdk="docker",
        space_variables=[{"key": "BEAT_FILE", "value": str(beat)}],
    )
    api.upload_folder(
        repo_id=repo_id, repo_type="space", folder_path=write_space(folder, DETACH_APP)
    )
    assert api.wait_for_space(repo_id, timeout=60, poll_interval=0.05).stage == "RUNNING"
    host = api.space_info(repo_id).host
    assert host is not None
    pids = httpx.get(host, timeout=5).json()
    deadline = time.monotonic() + 10
    while not beat.exists():
        assert time.monotonic() < deadline, "the detached child never beat"
        time.sleep(0.05)
    assert alive(pids["child"])
    return pids


def _fault(hub: LocalHub, api: HfApi) -> None:
    hub.add_faults({"kill_space": SPACE})


def _sleep(hub: LocalHub, api: HfApi) -> None:
    # what the idle timer does: same halt, stage SLEEPING
    api.request_space_hardware(SPACE, "t4-small", sleep_time=1)


def _rebuild(hub: LocalHub, api: HfApi) -> None:
    api.upload_file(
        path_or_fileobj=b"2\n", path_in_repo="VERSION", repo_id=SPACE, repo_type="space"
    )


ENDINGS: dict[str, Callable[[LocalHub, HfApi], object]] = {
    "pause": lambda hub, api: api.pause_space(SPACE),
    "restart": lambda hub, api: api.restart_space(SPACE),
    "factory-restart": lambda hub, api: api.restart_space(SPACE, factory_reboot=True),
    "kill-fault": _fault,
    "rebuild": _rebuild,
    "sleep": _sleep,
    "delete": lambda hub, api: api.delete_repo(SPACE, repo_type="space"),
    "reset": lambda hub, api: hub.reset(),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_every_way_out_ends_the_detached_child_too(
    ending: str, api: HfApi, hub: LocalHub, tmp_path: Path
) -> None:
    beat = tmp_path / "beat"
    pids = deploy(api, tmp_path / "space", beat)
    ENDINGS[ending](hub, api)
    if ending == "sleep":  # the hardware move restarts it; then it sleeps after 1 s idle
        deadline = time.monotonic() + 20
        while api.get_space_runtime(SPACE).stage != "SLEEPING":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    wait_gone([pids["child"], pids["app"]])
    if ending in ("pause", "kill-fault", "delete", "reset", "sleep"):
        assert still(beat), "something still writes the beat file"


def test_hub_shutdown_ends_the_detached_child(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    with LocalHub(root=tmp_path / "hub") as hub:
        pids = deploy(HfApi(endpoint=hub.url, token="x"), tmp_path / "space", beat)
    wait_gone([pids["child"], pids["app"]])
    assert still(beat)


def test_kill_all_reaches_a_child_that_left_the_session_and_ignores_sigterm() -> None:
    tag = new_tag()
    code = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True); print(p.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin", TAG_ENV: tag},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    assert sorted(tagged(tag)) == sorted([parent.pid, grandchild])
    assert tagged(new_tag()) == []
    assert kill_all(tag)
    parent.wait(5)
    wait_gone([grandchild])
    assert tagged(tag) == []
    assert json.dumps(tagged(tag)) == "[]"
