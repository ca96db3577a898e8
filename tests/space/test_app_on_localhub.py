"""The real space/ folder as a private Space on a strict localhub, as strict as the Hub:
its app answers only a token that can read it, and pausing ends the detached run."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError

from spacetrain.localhub import LocalHub, use_endpoint

from .support import SPACE as SPACE_DIR

pytestmark = pytest.mark.e2e

OWNER = "hf_appOnLocalhubOwnerTokenQwErTy"
SPACE, OUTPUT = "me/private-trainer", "me/paused-adapter"


@dataclass
class Private:
    hub: LocalHub
    api: HfApi
    runs: Path
    host: str


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    root = tmp_path_factory.mktemp("private-space")
    runs = root / "runs"
    with LocalHub(root=root / "hub", tokens={OWNER: "me"}) as hub:
        api = HfApi(endpoint=hub.url, token=OWNER)
        api.create_repo(
            SPACE,
            repo_type="space",
            space_sdk="docker",
            private=True,
            space_variables=[
                {"key": "SPACETRAIN_RUNS_DIR", "value": str(runs)},
                {"key": "OMP_NUM_THREADS", "value": "1"},
                # The tiny model and data are local files; the run pushes to OUTPUT.
                {"key": "SPACETRAIN_ALLOW_LOCAL_PATHS", "value": "1"},
                {"key": "OUTPUT_REPO", "value": OUTPUT},
            ],
            space_secrets=[{"key": "HF_TOKEN", "value": OWNER}],
        )
        api.upload_folder(repo_id=SPACE, repo_type="space", folder_path=SPACE_DIR)
        assert api.wait_for_space(SPACE, timeout=180, poll_interval=0.2).stage == "RUNNING"
        host = api.space_info(SPACE).host
        assert host is not None
        with use_endpoint(hub.url):
            yield Private(hub, api, runs, host)


def _params(tiny_model: Path, data: Path, run_id: str) -> str:
    return json.dumps(
        {"base_model": str(tiny_model), "dataset": str(data), "output_repo": OUTPUT,
         "push": True, "run_id": run_id, "epochs": 500, "batch_size": 4, "grad_accum": 1}
    )  # fmt: skip


def _run_folders(runs: Path) -> list[str]:
    return sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.exists() else []


def _owner_client() -> Any:
    from gradio_client import Client

    return Client(SPACE, verbose=False, token=OWNER, download_files=False)


def test_without_a_token_no_one_starts_a_run(
    private: Private, tiny_model: Path, qa_jsonl: Path
) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    with pytest.raises(RepositoryNotFoundError):  # space_info hides a private Space
        Client(SPACE, verbose=False, token=False)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError):  # and its address refuses the anonymous
        Client(private.host, verbose=False, token=False)  # type: ignore[arg-type]
    join = httpx.post(
        f"{private.host}/gradio_api/queue/join",
        json={"data": [_params(tiny_model, qa_jsonl, "anon")], "fn_index": 0,
              "session_hash": "x", "trigger_id": None},
    )  # fmt: skip
    assert join.status_code == 401
    assert _run_folders(private.runs) == []


def test_pausing_ends_the_detached_run_and_it_never_pushes(
    private: Private, tiny_model: Path, qa_jsonl: Path, train_processes: Any
) -> None:
    client = _owner_client()
    try:
        started = json.loads(
            client.predict(_params(tiny_model, qa_jsonl, "doomed"), api_name="/start_training")
        )
        assert started["created"] is True
        deadline = time.monotonic() + 120
        while True:  # training for real: train.py is up and has logged a step
            status = json.loads(client.predict("doomed", api_name="/training_status"))
            if status["state"] == "running" and status["step"] and train_processes("doomed"):
                break
            assert status["state"] in ("queued", "running"), status
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
    finally:
        client.close()

    private.api.pause_space(SPACE)
    assert train_processes.gone("doomed", timeout=15), "train.py outlived the paused Space"
    time.sleep(3)  # what a surviving run would have used to push
    assert not private.api.repo_exists(OUTPUT)

    private.api.restart_space(SPACE)
    assert private.api.wait_for_space(SPACE, timeout=180, poll_interval=0.2).stage == "RUNNING"
    client = _owner_client()
    try:
        status = json.loads(client.predict("doomed", api_name="/training_status"))
    finally:
        client.close()
    assert status["state"] == "failed"
    assert status["error"] == "the training process ended without recording a result"
    assert not private.api.repo_exists(OUTPUT)
