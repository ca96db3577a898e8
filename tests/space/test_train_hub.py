"""train.py against localhub: model and dataset from the Hub, adapter pushed in one commit."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from spacetrain.localhub import LocalHub

from .support import QA, chat_rows, run_train, write_jsonl

pytestmark = pytest.mark.e2e

TOKEN = "hf_spacetrainTrainPyPushTestToken"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    # Only this token is accepted: the push works only if the token reached train.py.
    with LocalHub(root=tmp_path_factory.mktemp("hub"), tokens={TOKEN: "me"}) as running:
        yield running


def _hub_env(hub: LocalHub) -> dict[str, str]:
    # As in the Space: the HF_TOKEN secret in the environment, nothing on the command line.
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_IMPLICIT_TOKEN": ""}
    return env


def test_model_and_dataset_from_the_hub_adapter_pushed_in_one_commit(
    hub: LocalHub, tiny_model: Path, tmp_path: Path
) -> None:
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("me/tiny-llama")
    model_sha = api.upload_folder(folder_path=tiny_model, repo_id="me/tiny-llama").oid
    api.create_repo("me/qa", repo_type="dataset")
    data = write_jsonl(tmp_path / "train.jsonl", chat_rows(QA[:8]))
    data_sha = api.upload_file(
        path_or_fileobj=data, path_in_repo="data/train.jsonl", repo_id="me/qa", repo_type="dataset"
    ).oid
    # A later commit to the dataset must not be what trains: the revision is pinned.
    api.upload_file(
        path_or_fileobj=b'{"broken": \n', path_in_repo="data/train.jsonl", repo_id="me/qa",
        repo_type="dataset",
    )  # fmt: skip

    out = tmp_path / "out"
    res = run_train(
        "--base-model", "me/tiny-llama", "--dataset", "me/qa", "--dataset-revision", data_sha,
        "--output-dir", out, "--output-repo", "me/adapter", "--run-id", "hub-run-7",
        "--epochs", "2", "--batch-size", "4", "--grad-accum", "1",
        env=_hub_env(hub),
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]

    pushed = res.event("pushed")
    done = res.event("done")
    assert (done["repo"], done["revision"]) == ("me/adapter", pushed["revision"])
    commits = api.list_repo_commits("me/adapter")
    assert commits[0].commit_id == pushed["revision"]
    assert "hub-run-7" in commits[0].title
    files = set(api.list_repo_files("me/adapter", revision=pushed["revision"]))
    ours = {"adapter_config.json", "adapter_model.safetensors", "run.json", "README.md"}
    assert ours <= files
    if len(commits) > 1:  # everything arrived in that one commit, nothing before it
        assert not ours & set(api.list_repo_files("me/adapter", revision=commits[1].commit_id))

    run = json.loads(
        Path(api.hf_hub_download("me/adapter", "run.json", revision=pushed["revision"])).read_text()
    )
    assert run["run_id"] == "hub-run-7"
    assert run["base_model"] == {"id": "me/tiny-llama", "revision": model_sha}
    assert (run["dataset"]["id"], run["dataset"]["revision"]) == ("me/qa", data_sha)
    assert run["dataset"]["examples"] == 8
    config = json.loads(
        Path(
            api.hf_hub_download("me/adapter", "adapter_config.json", revision=pushed["revision"])
        ).read_text()
    )  # the base as the Hub knows it, not the Space's download folder
    assert (config["base_model_name_or_path"], config["revision"]) == ("me/tiny-llama", model_sha)
    card = Path(api.hf_hub_download("me/adapter", "README.md", revision=pushed["revision"]))
    text = card.read_text()
    assert "base_model: me/tiny-llama" in text and "- me/qa" in text and "hub-run-7" in text

    # The token is used, never shown or stored.
    assert TOKEN not in res.stdout + res.stderr
    for path in out.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_unknown_model_dataset_and_revision_exit_2(hub: LocalHub, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(QA[:2]))
    env = _hub_env(hub)
    cases = [
        (("--base-model", "me/no-such-model", "--dataset", data), "base model me/no-such-model: "),
        (("--base-model", "x/y", "--dataset", "me/no-such-data"), "dataset me/no-such-data: "),
    ]
    for args, prefix in cases:
        res = run_train(*args, "--output-dir", tmp_path / "o", "--no-push", env=env)
        assert res.returncode == 2, res.stderr
        line = res.stderr.strip().splitlines()[-1]
        assert line.startswith(f"train.py: error: {prefix}no such repo"), line

    HfApi(endpoint=hub.url, token=TOKEN).create_repo("me/known")
    res = run_train(
        "--base-model", "me/known", "--model-revision", "nope", "--dataset", data,
        "--output-dir", tmp_path / "o", "--no-push", env=env,
    )  # fmt: skip
    assert res.returncode == 2
    assert "me/known: no such revision" in res.stderr


def test_rejected_token_exits_2(hub: LocalHub, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(QA[:2]))
    env = {**_hub_env(hub), "HF_TOKEN": "hf_wrongwrongwrongwrong"}
    res = run_train(
        "--base-model", "me/tiny-llama", "--dataset", data, "--output-dir", tmp_path / "o",
        "--no-push", env=env,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    # The self-check asks whoami before anything is read, and says where the token comes from.
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("train.py: error: the Hub rejected the token (HTTP 401): ")
    assert "set SPACE_HF_TOKEN (a valid token) where the pipeline runs" in line
    assert "hf_wrongwrongwrongwrong" not in res.stdout + res.stderr
    assert os.environ.get("HF_TOKEN") is None  # the test process itself holds no token


def test_hub_dataset_without_jsonl_is_read_by_datasets(
    hub: LocalHub, tiny_model: Path, tmp_path: Path
) -> None:
    """A dataset pushed as parquet (e.g. by `datasets.push_to_hub`) trains the same way."""
    import datasets

    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("me/qa-parquet", repo_type="dataset")
    parquet = tmp_path / "train-00000-of-00001.parquet"
    datasets.Dataset.from_list(chat_rows(QA[:6])).to_parquet(str(parquet))
    sha = api.upload_file(
        path_or_fileobj=parquet, path_in_repo=f"data/{parquet.name}", repo_id="me/qa-parquet",
        repo_type="dataset",
    ).oid  # fmt: skip
    res = run_train(
        "--base-model", tiny_model, "--dataset", "me/qa-parquet", "--output-dir", tmp_path / "o",
        "--no-push", "--epochs", "1", env=_hub_env(hub),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.event("dataset") == {
        "event": "dataset",
        "examples": 6,
        "format": "messages",
        "revision": sha,
    }


def _short_push_run(hub: LocalHub, model: Path, tmp_path: Path, repo: str, **env: str):
    data = write_jsonl(tmp_path / "d.jsonl", chat_rows(QA[:4]))
    return run_train(
        "--base-model", model, "--dataset", data, "--output-dir", tmp_path / "out",
        "--output-repo", repo, "--run-id", "push-retry", "--epochs", "1",
        env={**_hub_env(hub), **env},
    )  # fmt: skip


def test_push_rides_out_transient_hub_errors(
    hub: LocalHub, tiny_model: Path, tmp_path: Path
) -> None:
    hub.add_faults(
        {"paths": "/api/models/me/flaky/commit/*", "methods": ["POST"], "error_rate": 1.0,
         "status_codes": [503], "count": 2}
    )  # fmt: skip
    res = _short_push_run(hub, tiny_model, tmp_path, "me/flaky")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "output repo me/flaky: HTTP 503, retrying" in res.stdout
    commits = HfApi(endpoint=hub.url, token=TOKEN).list_repo_commits("me/flaky")
    assert commits[0].commit_id == res.event("done")["revision"]


def test_push_that_never_gets_through_exits_3_and_keeps_the_adapter(
    tiny_model: Path, tmp_path: Path
) -> None:
    with LocalHub(root=tmp_path / "hub", tokens={TOKEN: "me"}) as down:
        down.add_faults(
            {"paths": "/api/models/*/commit/*", "methods": ["POST"], "error_rate": 1.0,
             "status_codes": [503]}
        )  # fmt: skip
        res = _short_push_run(down, tiny_model, tmp_path, "me/never", SPACETRAIN_HUB_DEADLINE="3")
    assert res.returncode == 3, res.stderr[-3000:]
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("train.py: error: output repo me/never: Hub unreachable at http")
    assert line.endswith(f"(the trained adapter is saved in {tmp_path / 'out'})")
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
    assert res.event("error")["exit_code"] == 3
