"""Strict mode: token roles, namespace rights and the guarded control plane, through the
real huggingface_hub (what the Hub would answer, so refusals can be tested offline)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from spacetrain.localhub import LocalHub
from spacetrain.localhub.auth import READ, Scope, Token, parse_token

ALICE, ALICE_READ, BOB, SCOPED, ADMIN = (
    "hf_aliceWrite",
    "hf_aliceRead",
    "hf_bobWrite",
    "hf_aliceScoped",
    "hf_admin",
)
TOKENS = {
    ALICE: "alice",
    ALICE_READ: Token("alice", "read"),
    BOB: Token("bob"),
    SCOPED: Token(
        "alice", "fineGrained", (Scope("model", "alice/out"), Scope("user", "alice", (READ,)))
    ),
}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    with LocalHub(root=tmp_path_factory.mktemp("strict"), tokens=TOKENS, admin_token=ADMIN) as hub:
        alice = HfApi(endpoint=hub.url, token=ALICE)
        alice.create_repo("alice/public")
        alice.create_repo("alice/secret", private=True)
        alice.upload_file(path_or_fileobj=b"x", path_in_repo="f.txt", repo_id="alice/secret")
        yield hub


def _api(hub: LocalHub, token: str | None) -> HfApi:
    return HfApi(endpoint=hub.url, token=token or False)  # type: ignore[arg-type]


@pytest.mark.e2e
def test_whoami_says_role_and_scopes_as_the_hub(strict: LocalHub) -> None:
    assert _api(strict, ALICE).whoami()["auth"]["accessToken"]["role"] == "write"
    assert _api(strict, ALICE_READ).whoami()["auth"]["accessToken"]["role"] == "read"
    token = _api(strict, SCOPED).whoami()["auth"]["accessToken"]
    assert token["role"] == "fineGrained"
    assert [(s["entity"]["type"], s["entity"]["name"], s["permissions"])
            for s in token["fineGrained"]["scoped"]] == [
        ("model", "alice/out", ["repo.content.read", "repo.write"]),
        ("user", "alice", ["repo.content.read"]),
    ]  # fmt: skip


@pytest.mark.e2e
def test_a_read_token_reads_its_users_private_repos_and_writes_nothing(strict: LocalHub) -> None:
    api = _api(strict, ALICE_READ)
    assert api.model_info("alice/secret").private is True
    with pytest.raises(HfHubHTTPError, match="403") as caught:
        api.upload_file(path_or_fileobj=b"y", path_in_repo="g.txt", repo_id="alice/public")
    assert "read token" in str(caught.value)
    with pytest.raises(HfHubHTTPError, match="403"):
        api.create_repo("alice/new")
    with pytest.raises(HfHubHTTPError, match="403"):
        api.delete_repo("alice/public")
    assert _api(strict, ALICE).list_repo_files("alice/public") == [".gitattributes"]


@pytest.mark.e2e
def test_another_users_namespace_is_403_and_their_private_repos_do_not_exist(
    strict: LocalHub,
) -> None:
    bob = _api(strict, BOB)
    with pytest.raises(RepositoryNotFoundError):
        bob.model_info("alice/secret")
    assert bob.model_info("alice/public").id == "alice/public"  # public: readable
    with pytest.raises(HfHubHTTPError, match="403") as caught:
        bob.upload_file(path_or_fileobj=b"y", path_in_repo="g.txt", repo_id="alice/public")
    assert "not your namespace" in str(caught.value)
    with pytest.raises(HfHubHTTPError, match="403"):
        bob.create_repo("alice/bobs")
    bob.create_repo("bob/own", exist_ok=True)  # their own namespace: fine
    with pytest.raises(HfHubHTTPError, match="401"):
        _api(strict, None).create_repo("bob/anon")


@pytest.mark.e2e
def test_a_fine_grained_token_writes_its_scopes_only(strict: LocalHub) -> None:
    api = _api(strict, SCOPED)
    api.create_repo("alice/out", exist_ok=True)
    api.upload_file(path_or_fileobj=b"w", path_in_repo="w.txt", repo_id="alice/out")
    assert api.model_info("alice/secret").private  # the user scope reads
    with pytest.raises(HfHubHTTPError, match="403") as caught:
        api.upload_file(path_or_fileobj=b"w", path_in_repo="w.txt", repo_id="alice/public")
    assert "no repo.write permission on model alice/public" in str(caught.value)
    with pytest.raises(HfHubHTTPError, match="403"):
        api.create_repo("alice/other")


@pytest.mark.e2e
def test_a_space_of_another_user_cannot_be_driven(strict: LocalHub, tmp_path: Path) -> None:
    alice = _api(strict, ALICE)
    alice.create_repo("alice/sp", repo_type="space", space_sdk="docker", exist_ok=True)
    bob = _api(strict, BOB)
    for call in (
        lambda: bob.pause_space("alice/sp"),
        lambda: bob.restart_space("alice/sp"),
        lambda: bob.add_space_secret("alice/sp", "K", "v"),
        lambda: bob.request_space_hardware("alice/sp", "t4-small"),
    ):
        with pytest.raises(HfHubHTTPError, match="403"):
            call()
    assert bob.get_space_runtime("alice/sp").stage  # public: the runtime is readable


@pytest.mark.e2e
@pytest.mark.parametrize("path", ["reset", "faults", "requests"])
def test_the_control_plane_needs_the_admin_token(strict: LocalHub, path: str) -> None:
    url = f"{strict.url}/_localhub/{path}"
    method = "POST" if path == "reset" else "GET"

    def status(token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, url, headers=headers, timeout=10).status_code

    assert status(None) == 401
    assert status(ALICE) == 403  # a user's write token is not the admin's
    assert status("hf_unknown") == 403
    if path != "reset":  # the module's repos must survive
        assert status(ADMIN) == 200
    assert httpx.get(f"{strict.url}/_localhub/health").status_code == 200
    assert _api(strict, ALICE).model_info("alice/secret").private  # nothing wiped


@pytest.mark.e2e
def test_billing_shows_a_user_the_spaces_it_can_see(strict: LocalHub) -> None:
    alice = _api(strict, ALICE)
    alice.create_repo("alice/hidden", repo_type="space", space_sdk="docker", private=True)
    alice.create_repo("alice/shown", repo_type="space", space_sdk="docker", exist_ok=True)
    url = f"{strict.url}/_localhub/billing"

    def spaces(token: str) -> set[str]:
        reply = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert reply.status_code == 200
        return set(reply.json()["spaces"])

    assert {"alice/hidden", "alice/shown"} <= spaces(ALICE)
    assert "alice/shown" in spaces(BOB) and "alice/hidden" not in spaces(BOB)
    assert {"alice/hidden", "alice/shown"} <= spaces(ADMIN)
    assert "total" in httpx.get(url, headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer hf_unknown"}).status_code == 401


@pytest.mark.e2e
def test_the_admin_token_resets_and_no_admin_token_closes_the_plane(tmp_path: Path) -> None:
    with LocalHub(root=tmp_path / "a", tokens={ALICE: "alice"}, admin_token=ADMIN) as hub:
        _api(hub, ALICE).create_repo("alice/m")
        auth = {"Authorization": f"Bearer {ADMIN}"}
        assert httpx.post(f"{hub.url}/_localhub/reset", headers=auth).status_code == 200
        with pytest.raises(RepositoryNotFoundError):
            _api(hub, ALICE).model_info("alice/m")
        assert httpx.get(f"{hub.url}/api/whoami-v2", headers=auth).status_code == 401
    with LocalHub(root=tmp_path / "b", tokens={ALICE: "alice"}) as hub:
        for token in (ALICE, ADMIN):
            reply = httpx.post(
                f"{hub.url}/_localhub/reset", headers={"Authorization": f"Bearer {token}"}
            )
            assert reply.status_code == 403
        hub.reset()  # the Python API still works


@pytest.mark.e2e
def test_the_open_default_still_accepts_anything(tmp_path: Path) -> None:
    with LocalHub(root=tmp_path / "hub") as hub:
        api = _api(hub, "hf_anything")
        api.create_repo("someone/else", private=True)
        assert api.whoami()["auth"]["accessToken"]["role"] == "write"
        assert httpx.post(f"{hub.url}/_localhub/reset").status_code == 200


def test_parse_token_specs() -> None:
    assert parse_token("t") == ("t", Token("localhub-user"))
    assert parse_token("t:bob:read") == ("t", Token("bob", "read"))
    _, info = parse_token("t:bob:fine=model/bob/x+user/bob@read")
    assert info == Token(
        "bob", "fineGrained", (Scope("model", "bob/x"), Scope("user", "bob", (READ,)))
    )
    secret = "hf_neverEchoedBack"
    for bad in ("fine=user/a/b", "fine=model/x", "fine=org/x@write", "admin"):
        with pytest.raises(ValueError) as caught:
            parse_token(f"{secret}:bob:{bad}")
        assert secret not in str(caught.value)
    with pytest.raises(ValueError, match="empty token"):
        parse_token(":bob")
