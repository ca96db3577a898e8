"""`sync`: space/ to the Space root in one commit, none when unchanged, never with lint errors."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi

from spacetrain.errors import CheckFailed
from spacetrain.hub import Hub, RetryPolicy
from spacetrain.localhub import LocalHub
from spacetrain.stages.setup import SetupOptions
from spacetrain.stages.state import PipelineState
from spacetrain.stages.sync import SyncOptions, commit_message, git_blob_id, sync

from .conftest import ADMIN_TOKEN, SPACE_TOKEN, TOKEN
from .space_support import SPACE, cli, cli_env, commits, write_project

pytestmark = pytest.mark.e2e


def _options(project: Path, *, hardware: str | None = None, **kw: object) -> SyncOptions:
    values: dict = {
        "space": SPACE,
        "space_dir": project / "space",
        "policy": project / "policy" / "space.yaml",
        "setup": SetupOptions(SPACE, hardware=hardware, token=SPACE_TOKEN) if hardware else None,
        "source": "0123456789abcdef0123456789abcdef01234567",
    }
    values.update(kw)
    return SyncOptions(**values)  # type: ignore[arg-type]


def _commit_posts(hub: LocalHub) -> list[str]:
    return [r["path"] for r in hub.requests if r["method"] == "POST" and "/commit/" in r["path"]]


def test_sync_creates_the_space_and_uploads_in_one_commit(
    hub_env: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "p")
    state = PipelineState.load(tmp_path / "state.json")

    result = sync(Hub.from_env(), _options(project), state)

    assert result.created and result.changed
    assert _commit_posts(hub_env) == [f"/api/spaces/{SPACE}/commit/main"]  # one commit
    info = api.space_info(SPACE)
    assert info.sha == result.commit and info.private is True and info.sdk == "docker"
    local = sorted(
        p.relative_to(project / "space").as_posix() for p in (project / "space").rglob("*")
    )
    assert sorted(api.list_repo_files(SPACE, repo_type="space")) == local
    for rel in local:  # byte for byte
        data = (project / "space" / rel).read_bytes()
        remote = api.hf_hub_download(SPACE, rel, repo_type="space", revision=result.commit)
        assert Path(remote).read_bytes() == data
    head = api.list_repo_commits(SPACE, repo_type="space")[0]
    assert head.title == "Sync space/ from 0123456789ab"
    assert "0123456789abcdef0123456789abcdef01234567" in (head.message or "")
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved == {"space": SPACE, "space_commit": result.commit}


def test_unchanged_folder_makes_no_commit(hub_env: LocalHub, api: HfApi, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    first = sync(Hub.from_env(), _options(project))
    before = commits(api)
    _clear_requests(hub_env)

    again = sync(Hub.from_env(), _options(project, source="f" * 40))

    assert (again.changed, again.created, again.commit) == (False, False, first.commit)
    assert commits(api) == before
    writes = [r for r in hub_env.requests if r["method"] == "POST"]
    assert writes == []  # no preupload, no commit: nothing for the Space to rebuild


def test_removed_and_changed_files_in_one_commit(
    hub_env: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "p")
    notes = project / "space" / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("a\n")
    (notes / "b.txt").write_text("b\n")
    first = sync(Hub.from_env(), _options(project))
    assert "notes/a.txt" in api.list_repo_files(SPACE, repo_type="space")

    (notes / "a.txt").unlink()
    (project / "space" / "VERSION").write_text("2\n")
    _clear_requests(hub_env)
    second = sync(Hub.from_env(), _options(project))

    assert second.changed and second.commit != first.commit
    assert (second.uploaded, second.deleted) == (("VERSION",), ("notes/a.txt",))
    assert len(_commit_posts(hub_env)) == 1
    files = api.list_repo_files(SPACE, repo_type="space", revision=second.commit)
    assert "notes/a.txt" not in files and "notes/b.txt" in files
    assert commits(api)[:2] == [second.commit, first.commit]


def test_files_outside_the_lint_view_are_never_uploaded(
    hub_env: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "p")
    space = project / "space"
    (space / "__pycache__").mkdir()
    (space / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00compiled")
    (space / ".DS_Store").write_bytes(b"\x00\x01")
    (space / ".git").mkdir()
    (space / ".git" / "HEAD").write_text("ref: refs/heads/main\n")

    result = sync(Hub.from_env(), _options(project))

    files = set(api.list_repo_files(SPACE, repo_type="space"))
    assert files == {".gitattributes", "README.md", "Dockerfile", "app.py", "train.py", "VERSION"}
    assert set(result.files) == files


def test_lint_errors_block_sync_before_any_hub_call(
    hub_env: LocalHub, api: HfApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = write_project(tmp_path / "p")
    (project / "space" / "requirements.txt").write_text("torch\n")
    state = PipelineState.load(tmp_path / "state.json")
    _clear_requests(hub_env)

    with pytest.raises(CheckFailed) as caught:
        sync(Hub.from_env(), _options(project), state)

    assert caught.value.exit_code == 1
    assert "lint error" in str(caught.value) and "nothing was synced" in str(caught.value)
    assert "forbidden-file" in capsys.readouterr().err
    assert [r for r in hub_env.requests if r["path"].startswith("/api/")] == []
    assert not api.repo_exists(SPACE, repo_type="space")
    assert not (tmp_path / "state.json").exists()


def test_sync_requests_the_configured_hardware_once(
    hub_env: LocalHub, api: HfApi, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "p")
    first = sync(Hub.from_env(), _options(project, hardware="t4-small"))
    assert first.hardware == "t4-small"
    assert api.get_space_runtime(SPACE).requested_hardware == "t4-small"
    _clear_requests(hub_env)

    second = sync(Hub.from_env(), _options(project, hardware="t4-small"))

    assert second.hardware is None
    assert not [r for r in hub_env.requests if r["path"].endswith("/hardware")]


def test_sync_rides_through_503_bursts(hub_env: LocalHub, api: HfApi, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    hub_env.add_faults(
        {"status_codes": [503], "paths": "/api/spaces/*", "count": 3, "seed": 1},
    )
    hub_env.add_faults({"status_codes": [503], "paths": "/api/repos/create", "count": 1})

    result = sync(_quick_retries(), _options(project))

    assert api.space_info(SPACE).sha == result.commit
    assert sum(1 for r in hub_env.requests if r["status"] == 503) == 4
    assert len(_commit_posts(hub_env)) == 1 + sum(
        1 for r in hub_env.requests if r["status"] == 503 and "/commit/" in r["path"]
    )


def test_commit_message_names_this_repository_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "me/proj")
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    title, body = commit_message("space", "a" * 40, dirty=True)
    assert title == "Sync space/ from aaaaaaaaaaaa + uncommitted changes"
    assert f"https://github.com/me/proj/commit/{'a' * 40}" in body
    assert "https://github.com/me/proj/actions/runs/42" in body
    assert commit_message("space", None)[0] == "Sync space/ (no git commit known)"


def test_git_blob_id_matches_git() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_cli_sync_prints_the_commit_and_never_the_token(hub: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    env = cli_env(hub.url, TOKEN, GITHUB_SHA="b" * 40)

    done = cli(["sync"], cwd=project, env=env)

    assert done.returncode == 0, done.stderr
    api = HfApi(endpoint=hub.url, token=TOKEN)
    head = api.space_info(SPACE).sha
    assert done.stdout == f"{head}\n"
    assert "[sync]" in done.stderr and "creating Space alice/trainer" in done.stderr
    assert TOKEN not in done.stdout + done.stderr
    state = json.loads((project / ".spacetrain" / "state.json").read_text())
    assert state["space_commit"] == head
    assert (
        api.list_repo_commits(SPACE, repo_type="space")[0].title == "Sync space/ from bbbbbbbbbbbb"
    )
    assert TOKEN not in (project / ".spacetrain" / "state.json").read_text()

    again = cli(["sync"], cwd=project, env=env)
    assert (again.returncode, again.stdout) == (0, f"{head}\n")
    assert "unchanged: no commit" in again.stderr


def test_cli_sync_with_a_rejected_token_is_one_line_exit_2(hub: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    bad = "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"

    done = cli(["sync"], cwd=project, env=cli_env(hub.url, bad))

    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if not line.startswith("[sync]")]
    assert len(errors) == 1 and errors[0].startswith("spacetrain sync: error: ")
    assert "HF_TOKEN" in errors[0]
    assert bad not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_cli_sync_with_lint_errors_exits_1(hub: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")
    (project / "space" / "requirements.txt").write_text("gradio\n")

    done = cli(["sync"], cwd=project, env=cli_env(hub.url, TOKEN))

    assert done.returncode == 1
    assert "requirements.txt" in done.stderr and "nothing was synced" in done.stderr
    assert done.stdout == ""


def _clear_requests(hub: LocalHub) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # the control plane is guarded
    httpx.delete(f"{hub.url}/_localhub/requests", headers=admin, timeout=5).raise_for_status()


def _quick_retries() -> Hub:
    """The real retry policy with a short first backoff: the 503s cost milliseconds."""
    return Hub.from_env(retry=RetryPolicy(deadline=20, base=0.02, cap=0.2))


def test_cli_sync_without_a_token_is_exit_2(hub: LocalHub, tmp_path: Path) -> None:
    project = write_project(tmp_path / "p")

    done = cli(["sync"], cwd=project, env=cli_env(hub.url, None))

    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("spacetrain sync: error: cannot create Space alice/trainer")
    assert "set HF_TOKEN" in last
