"""localhub's error answers: the real client must raise its own exception classes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from spacetrain.localhub import LocalHub
from spacetrain.localhub.errors import (
    INVALID_CREDENTIALS,
    BadRequest,
    Conflict,
    EntryNotFound,
    HubError,
    PreconditionFailed,
    RepoNotFound,
    RevisionNotFound,
    Unauthorized,
)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (RepoNotFound("model", "a/b"), 404, "RepoNotFound"),
        (RevisionNotFound("nope"), 404, "RevisionNotFound"),
        (EntryNotFound("x.txt is missing"), 404, "EntryNotFound"),
        (BadRequest("bad"), 400, None),
        (Unauthorized(INVALID_CREDENTIALS), 401, None),
        (Conflict("exists", extra={"url": "http://h/a/b"}), 409, None),
        (PreconditionFailed("moved"), 412, None),
    ],
)
def test_error_protocol_table(error: HubError, status: int, code: str | None) -> None:
    headers = error.wire_headers()
    assert error.status == status
    assert headers.get("X-Error-Code") == code
    assert headers["X-Error-Message"] == error.message
    assert error.body()["error"] == error.message
    if isinstance(error, Conflict):
        assert error.body()["url"] == "http://h/a/b"


def test_error_message_header_is_one_ascii_line() -> None:
    headers = BadRequest("line one\nline two é \x00").wire_headers()
    assert headers["X-Error-Message"] == "line one line two ? ?"


@pytest.mark.e2e
def test_unknown_repo_revision_and_file_raise_the_clients_errors(
    api: HfApi, hub: LocalHub, tmp_path: Path
) -> None:
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("alice/none")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/none", "x", endpoint=hub.url, cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        api.space_info("alice/m")  # exists as a model, not as a Space
    api.create_repo("alice/m")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("alice/m", revision="nope")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("alice/m", ".gitattributes", revision="nope", endpoint=hub.url)
    with pytest.raises(RevisionNotFoundError):
        api.model_info("alice/m", revision="0" * 40)
    with pytest.raises(RemoteEntryNotFoundError) as err:
        hf_hub_download("alice/m", "missing.txt", endpoint=hub.url, cache_dir=tmp_path)
    assert isinstance(err.value, EntryNotFoundError)
    assert not api.file_exists("alice/m", "missing.txt")
    assert api.file_exists("alice/m", ".gitattributes")
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree("alice/m", path_in_repo="no/such/folder"))
    with pytest.raises(RemoteEntryNotFoundError):
        api.create_commit(
            "alice/m", operations=[CommitOperationDelete("missing.txt")], commit_message="x"
        )
    assert api.repo_exists("alice/m") and not api.repo_exists("alice/none")


@pytest.mark.e2e
def test_restricted_tokens(tmp_path: Path) -> None:
    with LocalHub(root=tmp_path / "hub", tokens={"hf_alice": "alice"}) as hub:
        alice = HfApi(endpoint=hub.url, token="hf_alice")
        wrong = HfApi(endpoint=hub.url, token="hf_wrong")
        anonymous = HfApi(endpoint=hub.url, token=False)
        assert alice.whoami()["name"] == "alice"
        alice.create_repo("alice/public")
        alice.create_repo("alice/secret", private=True)

        with pytest.raises(HfHubHTTPError) as err:
            wrong.whoami()
        assert err.value.response.status_code == 401
        # A bad token is not "repository not found": the client keeps the 401 as it is.
        with pytest.raises(HfHubHTTPError) as err:
            wrong.model_info("alice/public")
        assert not isinstance(err.value, RepositoryNotFoundError)
        assert err.value.response.status_code == 401
        assert INVALID_CREDENTIALS in str(err.value)

        assert anonymous.model_info("alice/public").id == "alice/public"
        with pytest.raises(RepositoryNotFoundError):
            anonymous.model_info("alice/secret")
        assert alice.model_info("alice/secret").private is True
        with pytest.raises(HfHubHTTPError) as err:
            anonymous.create_repo("alice/third")
        assert err.value.response.status_code == 401


@pytest.mark.e2e
def test_open_mode_hides_private_repos_from_anonymous(api: HfApi, hub: LocalHub) -> None:
    api.create_repo("alice/secret", private=True)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).model_info("alice/secret")
    assert HfApi(endpoint=hub.url, token="hf_any").model_info("alice/secret").private


def _ndjson(*items: dict) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


@pytest.mark.e2e
def test_what_localhub_refuses_it_says_so(api: HfApi, hub: LocalHub) -> None:
    api.create_repo("alice/m")
    url = f"{hub.url}/api/models/alice/m/commit/main"
    header = {"key": "header", "value": {"summary": "x", "description": ""}}
    lfs = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "0" * 64}}
    reply = httpx.post(url, content=_ndjson(header, lfs))
    assert reply.status_code == 422
    assert "no LFS/Xet uploads" in reply.json()["error"]

    content = base64.b64encode(b"hi").decode()
    add = {"key": "file", "value": {"path": "a.txt", "content": content, "encoding": "base64"}}
    assert httpx.post(url + "?create_pr=1", content=_ndjson(header, add)).status_code == 422
    assert httpx.post(url, content=_ndjson(add)).status_code == 400  # no header line
    assert httpx.post(url, content=b"not json\n").status_code == 400
    escape = {"key": "file", "value": {"path": "../x", "content": content}}
    assert httpx.post(url, content=_ndjson(header, escape)).status_code == 400

    # chunked request bodies are read too
    chunked = httpx.post(url, content=iter([_ndjson(header), _ndjson(add)]))
    assert chunked.status_code == 200, chunked.text
    assert api.list_repo_files("alice/m") == [".gitattributes", "a.txt"]

    bad_id = httpx.post(f"{hub.url}/api/repos/create", json={"name": "bad--name"})
    assert bad_id.status_code == 400
    nowhere = httpx.get(f"{hub.url}/api/nowhere")
    assert nowhere.status_code == 404 and "X-Error-Code" not in nowhere.headers
    assert httpx.delete(f"{hub.url}/api/whoami-v2").status_code == 405
    assert (
        httpx.get(f"{hub.url}/api/whoami-v2", headers={"authorization": "Basic x"}).status_code
        == 401
    )
    assert all(r.headers.get("X-Request-Id") for r in (bad_id, nowhere))


@pytest.mark.e2e
def test_validate_yaml_refuses_broken_front_matter(api: HfApi) -> None:
    api.create_repo("alice/m")
    with pytest.raises(ValueError, match=r"Invalid metadata in README\.md"):
        api.upload_file(
            path_or_fileobj=b"---\na: [1\n---\n", path_in_repo="README.md", repo_id="alice/m"
        )
    api.upload_file(
        path_or_fileobj=b"---\nlicense: mit\n---\n", path_in_repo="README.md", repo_id="alice/m"
    )
    assert api.model_info("alice/m").card_data["license"] == "mit"
