"""``dataset push`` against localhub: real huggingface_hub uploads over loopback."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from spacetrain.cli import main
from spacetrain.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from spacetrain.localhub import LocalHub

pytestmark = pytest.mark.e2e

TOKEN = "hf_push_tests_token_000000000000000000"
SHA = re.compile(r"^[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def localhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    with LocalHub(root=tmp_path_factory.mktemp("hub"), port=0, tokens={TOKEN: "me"}) as hub:
        yield hub


@pytest.fixture
def hub(localhub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> LocalHub:
    localhub.reset()
    monkeypatch.setenv("HF_ENDPOINT", localhub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("SPACETRAIN_HUB_DEADLINE", "5")
    return localhub


def data_file(path: Path, n: int = 3, answer: str = "Umoja means unity.") -> Path:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Question {i}?"},
                {"role": "assistant", "content": f"{answer} ({i})"},
            ]
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def push(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["dataset", "push", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_push_prints_the_commit_and_makes_no_commit_when_unchanged(
    hub: LocalHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = data_file(tmp_path / "kwanzaa.jsonl")
    code, out, err = push(capsys, str(data), "--repo", "me/kwanzaa-data", "--private")
    assert code == EXIT_OK, err
    first = out.strip()
    assert SHA.match(first), out
    assert "committed kwanzaa.jsonl" in err

    api = HfApi(endpoint=hub.url, token=TOKEN)
    info = api.dataset_info("me/kwanzaa-data")
    assert info.sha == first and info.private is True
    local = api.hf_hub_download(
        "me/kwanzaa-data",
        "kwanzaa.jsonl",
        repo_type="dataset",
        revision=first,
        cache_dir=tmp_path / "cache",
    )
    assert Path(local).read_bytes() == data.read_bytes()
    commits = len(api.list_repo_commits("me/kwanzaa-data", repo_type="dataset"))

    code, out, err = push(capsys, str(data), "--repo", "me/kwanzaa-data")
    assert code == EXIT_OK
    assert out.strip() == first
    assert "unchanged, no commit made" in err
    assert len(api.list_repo_commits("me/kwanzaa-data", repo_type="dataset")) == commits

    data_file(data, n=4)
    code, out, err = push(
        capsys, str(data), "--repo", "me/kwanzaa-data", "--path-in-repo", "train/kwanzaa.jsonl"
    )
    assert code == EXIT_OK
    second = out.strip()
    assert SHA.match(second) and second != first
    files = api.list_repo_files("me/kwanzaa-data", repo_type="dataset", revision=second)
    assert "train/kwanzaa.jsonl" in files


def test_invalid_data_is_not_uploaded(
    hub: LocalHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = data_file(tmp_path / "bad.jsonl", answer="Sure. Generated with Claude")
    code, out, err = push(capsys, str(data), "--repo", "me/bad")
    assert code == EXIT_FAILED
    assert out == ""
    assert "not uploaded" in err and "attribution" in err
    assert not [r for r in hub.requests if r["method"] == "POST"]


def test_rejected_token_is_exit_2_one_line(
    hub: LocalHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_0000000000000000000000")
    code, out, err = push(capsys, str(data_file(tmp_path / "d.jsonl")), "--repo", "me/d")
    assert code == EXIT_USAGE
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("spacetrain dataset: error: cannot create the dataset repo me/d: ")
    assert "rejected the token in HF_TOKEN (401)" in err
    assert "hf_wrong_token" not in err


def test_missing_token_is_exit_2(
    hub: LocalHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    code, _, err = push(capsys, str(data_file(tmp_path / "d.jsonl")), "--repo", "me/d")
    assert code == EXIT_USAGE
    assert "set HF_TOKEN" in err and err.count("\n") == 1


@pytest.mark.parametrize("repo", ["not a repo id", "a/b/c", "me/" + "x" * 200])
def test_wrong_repo_id_is_exit_2(
    hub: LocalHub, tmp_path: Path, capsys: pytest.CaptureFixture[str], repo: str
) -> None:
    code, out, err = push(capsys, str(data_file(tmp_path / "d.jsonl")), "--repo", repo)
    assert code == EXIT_USAGE
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"spacetrain dataset: error: cannot create the dataset repo {repo}: ")


def test_hub_down_is_exit_3(
    hub: LocalHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPACETRAIN_HUB_DEADLINE", "1")
    hub.add_faults(
        {
            "error_rate": 1.0,
            "status_codes": [503],
            "paths": ["/api/repos/create"],
            "methods": ["POST"],
        }
    )
    code, out, err = push(capsys, str(data_file(tmp_path / "d.jsonl")), "--repo", "me/d")
    assert code == 3, err
    assert out == ""
    assert "is unreachable (HTTP 503)" in err and err.count("\n") == 1


def test_validate_counts_tokens_with_a_tokenizer_from_the_hub(
    hub: LocalHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spacetrain.tinymodel import build_tiny_llama

    model = build_tiny_llama(tmp_path / "tiny", ["Question 0? Umoja means unity. (0)"] * 4)
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("me/tiny")
    api.upload_folder(repo_id="me/tiny", folder_path=model)
    data = data_file(tmp_path / "d.jsonl", n=2)
    code = main(["dataset", "validate", str(data), "--tokenizer", "me/tiny", "--max-length", "8"])
    out, _ = capsys.readouterr()
    assert code == EXIT_FAILED
    assert out.count("> max_length 8: training would truncate the answer [too-long]") == 2
    assert main(["dataset", "validate", str(data), "--tokenizer", "me/tiny"]) == EXIT_OK
    capsys.readouterr()
    code = main(["dataset", "validate", str(data), "--tokenizer", "me/no-such-tokenizer"])
    _, err = capsys.readouterr()
    assert code == EXIT_USAGE
    assert "cannot download the tokenizer me/no-such-tokenizer: no such repo" in err
