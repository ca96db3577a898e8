"""Repos on localhub, driven by the real huggingface_hub over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import HfHubHTTPError

from spacetrain.localhub import LocalHub, api_files
from spacetrain.localhub.store import git_blob_oid

from .conftest import TOKEN

pytestmark = pytest.mark.e2e


def _commits_posted(hub: LocalHub) -> int:
    return sum(1 for r in hub.requests if r["method"] == "POST" and "/commit/" in r["path"])


def test_whoami_names_the_default_user(api: HfApi) -> None:
    me = api.whoami()
    assert me["name"] == "localhub-user"
    assert me["type"] == "user"


def test_create_repo_each_type_and_exist_ok(api: HfApi, hub: LocalHub) -> None:
    model = api.create_repo("alice/model")
    assert model == f"{hub.url}/alice/model"
    assert model.repo_id == "alice/model"
    dataset = api.create_repo("alice/data", repo_type="dataset", private=True)
    assert dataset.repo_type == "dataset"
    space = api.create_repo("alice/app", repo_type="space", space_sdk="docker")
    assert space == f"{hub.url}/spaces/alice/app"

    again = api.create_repo("alice/app", repo_type="space", space_sdk="docker", exist_ok=True)
    assert again == space  # the 409 carries the url, which is all the client reads
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("alice/model")
    assert err.value.response.status_code == 409

    assert api.repo_info("alice/data", repo_type="dataset").private is True
    info = api.space_info("alice/app")
    assert info.sdk == "docker"
    assert sorted(s.rfilename for s in info.siblings) == [".gitattributes", "README.md"]


def test_upload_folder_twice_makes_one_commit(api: HfApi, hub: LocalHub, folder: Path) -> None:
    api.create_repo("alice/m")
    first = api.upload_folder(repo_id="alice/m", folder_path=folder, commit_message="add files")
    posted = _commits_posted(hub)
    second = api.upload_folder(repo_id="alice/m", folder_path=folder, commit_message="again")
    assert second.oid == first.oid
    assert _commits_posted(hub) == posted  # unchanged files were skipped: no POST /commit
    assert first.commit_url == f"{hub.url}/alice/m/commit/{first.oid}"
    files = api.list_repo_files("alice/m")
    assert files == [
        ".gitattributes",
        "README.md",
        "config.json",
        "data/part-0.txt",
        "data/part-1.txt",
        "data/part-2.txt",
    ]
    assert [c.title for c in api.list_repo_commits("alice/m")] == ["add files", "initial commit"]


def test_upload_folder_delete_patterns_mirrors_the_folder(
    api: HfApi, hub: LocalHub, folder: Path
) -> None:
    api.create_repo("alice/m")
    api.upload_folder(repo_id="alice/m", folder_path=folder)
    (folder / "data" / "part-2.txt").unlink()
    (folder / "config.json").write_text('{"a": 2}\n')
    api.upload_folder(repo_id="alice/m", folder_path=folder, delete_patterns="*")
    files = api.list_repo_files("alice/m")
    assert "data/part-2.txt" not in files
    assert ".gitattributes" in files  # never deleted by delete_patterns
    path = hf_hub_download("alice/m", "config.json", endpoint=hub.url, token=TOKEN)
    assert Path(path).read_text() == '{"a": 2}\n'


def test_create_commit_with_deletions_and_parent_commit(api: HfApi, folder: Path) -> None:
    api.create_repo("alice/m")
    base = api.upload_folder(repo_id="alice/m", folder_path=folder).oid
    info = api.create_commit(
        "alice/m",
        operations=[
            CommitOperationDelete("config.json"),
            CommitOperationDelete("data/"),
            CommitOperationAdd("new/file.bin", b"\x00\x01binary"),
        ],
        commit_message="reshape",
        commit_description="why: a test",
        parent_commit=base,
    )
    assert api.list_repo_files("alice/m") == [".gitattributes", "README.md", "new/file.bin"]
    commit = api.list_repo_commits("alice/m")[0]
    assert (commit.commit_id, commit.title, commit.message) == (info.oid, "reshape", "why: a test")

    # parentCommit is honoured: the branch moved on, so a commit based on `base` is refused.
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(
            "alice/m",
            operations=[CommitOperationAdd("late.txt", b"late")],
            commit_message="stale",
            parent_commit=base,
        )
    assert err.value.response.status_code == 412
    assert api.model_info("alice/m").sha == info.oid


def test_downloads_at_a_commit_sha_and_a_tag(api: HfApi, hub: LocalHub, tmp_path: Path) -> None:
    api.create_repo("alice/m")
    v1 = api.upload_file(path_or_fileobj=b"one", path_in_repo="w.txt", repo_id="alice/m").oid
    api.create_tag("alice/m", tag="v1", revision=v1, tag_message="first")
    v2 = api.upload_file(path_or_fileobj=b"two!", path_in_repo="w.txt", repo_id="alice/m").oid
    assert v1 != v2

    cache = tmp_path / "cache"
    old = hf_hub_download("alice/m", "w.txt", revision=v1, endpoint=hub.url, cache_dir=cache)
    new = hf_hub_download("alice/m", "w.txt", endpoint=hub.url, cache_dir=cache)
    tagged = hf_hub_download("alice/m", "w.txt", revision="v1", endpoint=hub.url, cache_dir=cache)
    assert (Path(old).read_bytes(), Path(new).read_bytes()) == (b"one", b"two!")
    assert Path(tagged).read_bytes() == b"one"
    assert f"snapshots/{v1}/" in Path(old).as_posix()

    snap = snapshot_download("alice/m", revision=v1, endpoint=hub.url, cache_dir=cache)
    assert sorted(p.name for p in Path(snap).iterdir()) == [".gitattributes", "w.txt"]
    assert (Path(snap) / "w.txt").read_bytes() == b"one"

    refs = api.list_repo_refs("alice/m")
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", v1)]
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", v2)]


def test_tree_is_paginated_and_paths_info_answers(
    api: HfApi, hub: LocalHub, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.create_repo("alice/m")
    sha = api.upload_folder(repo_id="alice/m", folder_path=folder).oid
    monkeypatch.setattr(api_files, "TREE_PAGE", 2)
    before = len(hub.requests)
    entries = list(api.list_repo_tree("alice/m", recursive=True))
    pages = [r for r in hub.requests[before:] if "/tree/" in r["path"]]
    assert len(pages) == 4  # 7 entries, 2 per page: the client followed Link headers
    by_path = {e.path: e for e in entries}
    assert set(by_path) == {
        ".gitattributes",
        "README.md",
        "config.json",
        "data",
        "data/part-0.txt",
        "data/part-1.txt",
        "data/part-2.txt",
    }
    assert by_path["config.json"].blob_id == git_blob_oid(b'{"a": 1}\n')
    assert by_path["config.json"].size == len(b'{"a": 1}\n')

    top = {e.path for e in api.list_repo_tree("alice/m", path_in_repo="data", revision=sha)}
    assert top == {"data/part-0.txt", "data/part-1.txt", "data/part-2.txt"}
    infos = api.get_paths_info("alice/m", ["config.json", "data", "missing.txt"], expand=True)
    assert [i.path for i in infos] == ["config.json", "data"]
    assert infos[0].last_commit is not None and infos[0].last_commit.oid == sha


def test_resolve_answers_ranges_and_the_hub_headers(api: HfApi, hub: LocalHub) -> None:
    api.create_repo("alice/m")
    sha = api.upload_file(
        path_or_fileobj=b"0123456789", path_in_repo="d.bin", repo_id="alice/m"
    ).oid
    url = f"{hub.url}/alice/m/resolve/main/d.bin"
    head = httpx.head(url)
    assert head.headers["X-Repo-Commit"] == sha
    assert head.headers["ETag"] == f'"{git_blob_oid(b"0123456789")}"'
    assert head.headers["Content-Length"] == "10"
    assert httpx.get(url, headers={"Range": "bytes=2-4"}).content == b"234"
    assert httpx.get(url, headers={"Range": "bytes=7-"}).content == b"789"
    tail = httpx.get(url, headers={"Range": "bytes=-3"})
    assert (tail.status_code, tail.content, tail.headers["Content-Range"]) == (
        206,
        b"789",
        "bytes 7-9/10",
    )
    assert httpx.get(url, headers={"Range": "bytes=50-"}).status_code == 416


def test_repos_survive_a_restart(tmp_path: Path, folder: Path) -> None:
    root = tmp_path / "hub"
    with LocalHub(root=root) as hub:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo("alice/m", private=True)
        sha = api.upload_folder(repo_id="alice/m", folder_path=folder).oid
        api.create_tag("alice/m", tag="keep")
    with LocalHub(root=root) as hub:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        info = api.model_info("alice/m")
        assert (info.sha, info.private) == (sha, True)
        assert api.list_repo_refs("alice/m").tags[0].target_commit == sha
        assert "data/part-1.txt" in api.list_repo_files("alice/m")


def test_a_branch_and_delete(api: HfApi, hub: LocalHub, tmp_path: Path) -> None:
    api.create_repo("alice/m")
    api.create_branch("alice/m", branch="dev")
    dev = api.upload_file(
        path_or_fileobj=b"dev", path_in_repo="d.txt", repo_id="alice/m", revision="dev"
    )
    assert "d.txt" not in api.list_repo_files("alice/m")
    assert "d.txt" in api.list_repo_files("alice/m", revision="dev")
    path = hf_hub_download("alice/m", "d.txt", revision="dev", endpoint=hub.url, cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"dev"
    assert {b.name: b.target_commit for b in api.list_repo_refs("alice/m").branches}[
        "dev"
    ] == dev.oid

    api.delete_repo("alice/m")
    assert not api.repo_exists("alice/m")
    api.create_repo("alice/m")  # the name is free again
    assert api.list_repo_files("alice/m") == [".gitattributes"]
