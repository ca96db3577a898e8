"""The world the adapter e2e modules share: the real space/ folder as a Space on localhub.

A localhub that accepts one token, a tiny Llama and a small chat dataset pushed to it, the
REAL ``space/`` folder uploaded as a Docker Space (its variables: the runs folder and one
OpenMP thread; its secret: the token), and a project folder whose ``[tool.spacetrain]``
names them. tests/stages/conftest.py's ``world`` builds one per module
(test_adapter_e2e.py: one trained run followed, fetched and promoted;
test_adapter_runs_e2e.py: runs that end early), so the two run on
two workers at once. Commands run as CI runs them: subprocesses with HF_ENDPOINT and
HF_TOKEN set.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from spacetrain.localhub import LocalHub

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hf_adapterStagesE2eTokenQwErTyUiOp"
SPACE, MODEL, DATA, ADAPTER = "me/trainer", "me/tiny-llama", "me/qa", "me/qa-adapter"
RUN_ID = "run-1"
QA = [
    ("What does Umoja mean?", "Unity."),
    ("What does Nia mean?", "Purpose."),
    ("What does Kuumba mean?", "Creativity."),
    ("What does Imani mean?", "Faith."),
    ("How many days does Kwanzaa last?", "Seven days."),
    ("When does Kwanzaa begin?", "On December 26."),
    ("What is the kinara?", "The candle holder."),
    ("What is the mkeka?", "A straw mat."),
]
# A suite every output passes (no output has 1000 words): the tiny model learns
# nothing in three epochs, and these tests are about promotion, not about quality.
SUITE = """\
name: qa
generation: {max_new_tokens: 8, batch_size: 4}
cases:
  - {id: umoja, category: principles, prompt: "What does Umoja mean?", checks: [{max_words: 1000}]}
  - {id: nia, category: principles, prompt: "What does Nia mean?", checks: [{max_words: 1000}]}
  - {id: kinara, category: symbols, prompt: "What is the kinara?", checks: [{max_words: 1000}]}
"""
PYPROJECT = f"""\
[project]
name = "adapter-stages-e2e"
version = "0"

[tool.spacetrain]
space = "{SPACE}"
after_training = "pause"
gate = "gate.yaml"

[tool.spacetrain.adapters.qa]
base_model = "{MODEL}"
dataset = "{DATA}"
output_repo = "{ADAPTER}"
suite = "suite.yaml"
train = {{ epochs = 3, learning_rate = 5e-3, batch_size = 4, grad_accum = 1, seed = 0 }}
"""


@dataclass
class World:
    hub: LocalHub
    api: HfApi
    project: Path
    runs: Path
    env: dict[str, str]
    app_host: str = ""

    def spacetrain(
        self, *args: str | Path, timeout: float = 300, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "spacetrain", *map(str, args)],
            cwd=self.project,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stage(self) -> str:
        return str(self.api.get_space_runtime(SPACE).stage)

    def ensure_running(self, timeout: float = 120) -> None:
        """Restart the Space if it is not serving (train pauses it) and wait for RUNNING."""
        if self.stage() != "RUNNING":
            self.api.restart_space(SPACE)
        deadline = time.monotonic() + timeout
        while (stage := self.stage()) != "RUNNING":
            assert "ERROR" not in stage, self.api.get_space_runtime(SPACE).raw
            assert time.monotonic() < deadline, stage
            time.sleep(0.2)

    def read(self, name: str, revision: str) -> bytes:
        """A file of the adapter repo at a revision (through the Hub, not the fetch)."""
        path = self.api.hf_hub_download(
            ADAPTER, name, revision=revision, cache_dir=self.project.parent / "read-cache"
        )
        return Path(path).read_bytes()

    def run_folders(self) -> set[str]:
        return {p.name for p in self.runs.iterdir() if (p / "launch.json").is_file()}

    def adapter_commits(self) -> list[Any]:
        return self.api.list_repo_commits(ADAPTER)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@contextlib.contextmanager
def running_world(root: Path, model: Path) -> Iterator[World]:
    """The world of one module: its own localhub, the tiny model and data pushed, the real
    space/ folder RUNNING as a Docker Space; ``model``: the tiny Llama built on ``QA``."""
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in QA
    ]
    data = _write_jsonl(root / "train.jsonl", rows)
    project = root / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "suite.yaml").write_text(SUITE)
    shutil.copyfile(REPO / "policy" / "gate.yaml", project / "gate.yaml")
    runs = root / "runs"
    env = {
        **os.environ,
        "HF_TOKEN": TOKEN,
        "HF_HOME": str(root / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "SPACETRAIN_HUB_DEADLINE": "30",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("GITHUB_OUTPUT", None)
    with LocalHub(root=root / "hub", tokens={TOKEN: "me"}) as hub:
        env["HF_ENDPOINT"] = hub.url
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo(MODEL)
        api.upload_folder(repo_id=MODEL, folder_path=model)
        api.create_repo(DATA, repo_type="dataset")
        api.upload_file(
            path_or_fileobj=data, path_in_repo="train.jsonl", repo_id=DATA, repo_type="dataset"
        )
        api.create_repo(
            SPACE,
            repo_type="space",
            space_sdk="docker",
            space_variables=[
                {"key": "SPACETRAIN_RUNS_DIR", "value": str(runs)},
                {"key": "OMP_NUM_THREADS", "value": "1"},
                {"key": "OUTPUT_REPO", "value": ADAPTER},  # the repos its API pushes to
                {"key": "SPACETRAIN_OUTPUT_REPOS", "value": "me/timeout-adapter"},
            ],
            space_secrets=[{"key": "HF_TOKEN", "value": TOKEN}],
        )
        api.upload_folder(repo_id=SPACE, repo_type="space", folder_path=REPO / "space")
        w = World(hub, api, project, runs, env)
        w.ensure_running()
        yield w
