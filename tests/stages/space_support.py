"""Helpers for the Space-stage tests: a lint-clean Space folder with a tiny app, a project.

The folder keeps the real ``space/`` README, Dockerfile and .gitattributes (so it lints
clean under the real policy) and swaps in a stdlib app that starts in a blink: the
stages under test care about commits and stages, not about Gradio.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

REPO = Path(__file__).resolve().parents[2]
SPACE = "alice/trainer"

# Answers GET / with the VERSION of the commit it runs from; listens where localhub says.
STDLIB_APP = """\
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

print("tiny app starting", flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        with open("VERSION", "rb") as handle:
            body = handle.read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0")
HTTPServer((host, int(os.environ.get("GRADIO_SERVER_PORT", "7860"))), Handler).serve_forever()
"""

CRASH_APP = """\
import sys
print("loading the base model...", flush=True)
print("boom: CUDA out of memory (tried to allocate 2.00 GiB)", file=sys.stderr, flush=True)
sys.exit(3)
"""

TRAIN_STUB = 'print("training is not what these tests are about")\n'


def write_space(root: Path, *, app: str = STDLIB_APP, version: str = "1") -> Path:
    """A Space folder that lints clean: the real README/Dockerfile, a tiny app, VERSION.

    VERSION is an extra file, so the policy must allow it (see :func:`write_project`).
    """
    root.mkdir(parents=True, exist_ok=True)
    for name in (".gitattributes", "README.md", "Dockerfile"):
        shutil.copyfile(REPO / "space" / name, root / name)
    (root / "app.py").write_text(app)
    (root / "train.py").write_text(TRAIN_STUB)
    (root / "VERSION").write_text(version + "\n")
    return root


POLICY = """\
version: 1
files:
  allowed: [VERSION, notes/*]
"""


# An adapter table for write_project(extra=...): repos the tests create as they need them.
ADAPTER = """
[tool.spacetrain.adapters.demo]
base_model = "alice/base"
dataset = "alice/data"
output_repo = "alice/adapter"
suite = "policy/evals/demo.yaml"
train = {train}
"""


def write_project(
    root: Path,
    *,
    space: str = SPACE,
    hardware: str = "t4-small",
    after_training: str = "pause",
    app: str = STDLIB_APP,
    extra: str = "",
) -> Path:
    """A project folder: pyproject with [tool.spacetrain], a policy, a Space folder."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "policy").mkdir(exist_ok=True)
    (root / "policy" / "space.yaml").write_text(POLICY)
    (root / "pyproject.toml").write_text(
        "[project]\nname = 'demo'\nversion = '0'\n\n"
        "[tool.spacetrain]\n"
        f'space = "{space}"\n'
        'space_dir = "space"\n'
        f'hardware = "{hardware}"\n'
        f'after_training = "{after_training}"\n' + extra
    )
    write_space(root / "space", app=app)
    return root


def cli(
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m spacetrain ARGS`` in a real subprocess (the CI's view)."""
    return subprocess.run(
        [sys.executable, "-m", "spacetrain", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_env(hub_url: str, token: str | None, **extra: str) -> dict[str, str]:
    """The environment of a CI step: this one, pointed at the hub, with or without a token."""
    from .conftest import SPACE_TOKEN

    env = {k: v for k, v in os.environ.items() if k not in {"HF_TOKEN", "GITHUB_OUTPUT"}}
    env.update(
        {"HF_ENDPOINT": hub_url, "SPACETRAIN_HUB_DEADLINE": "20", "SPACE_HF_TOKEN": SPACE_TOKEN}
    )
    env.update(extra)
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def commits(api: HfApi, space: str = SPACE) -> list[str]:
    """The Space's commit ids, newest first."""
    return [c.commit_id for c in api.list_repo_commits(space, repo_type="space")]


def wait_until(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (for arranging, not asserting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
