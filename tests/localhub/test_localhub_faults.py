"""Fault injection: deterministic rules, and the real client's retries riding through them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from spacetrain.localhub import FAULTS_ENV, LocalHub
from spacetrain.localhub.errors import BadRequest
from spacetrain.localhub.faults import FaultPlan, parse_faults


def _decisions(spec: dict, requests: list[tuple[str, str]]) -> list[int | None]:
    plan = FaultPlan()
    rules, _ = parse_faults(spec)
    plan.add(rules)
    return [plan.decide(method, path).status for method, path in requests]


def test_same_seed_same_faults() -> None:
    spec = {"seed": 7, "error_rate": 0.3, "status_codes": [429, 503], "paths": "/api/*"}
    calls = [("GET", f"/api/models/a/b{i}") for i in range(200)]
    first, second = _decisions(spec, calls), _decisions(spec, calls)
    assert first == second
    assert set(first) == {None, 429, 503}
    assert 30 < sum(s is not None for s in first) < 90  # about 30 % of 200
    other = _decisions({**spec, "seed": 8}, calls)
    assert other != first


def test_rules_match_paths_and_methods_and_stop_after_count() -> None:
    spec = {"status_codes": [500], "paths": ["*/preupload/*"], "methods": ["POST"], "count": 2}
    calls = [
        ("POST", "/api/models/a/b/preupload/main"),
        ("GET", "/api/models/a/b/preupload/main"),  # method does not match
        ("POST", "/api/models/a/b/commit/main"),  # path does not match
        ("POST", "/api/models/a/b/preupload/main"),
        ("POST", "/api/models/a/b/preupload/main"),  # count spent
    ]
    assert _decisions(spec, calls) == [500, None, None, 500, None]
    plan = FaultPlan()
    plan.add(parse_faults({"latency_ms": 40, "paths": "/api/*"})[0])
    assert plan.decide("GET", "/api/x").delay_s == 0.04
    assert plan.decide("GET", "/_localhub/billing").delay_s == 0  # the control plane is exempt


@pytest.mark.parametrize(
    "spec",
    [
        {"nope": 1},
        {"status_codes": [200]},
        {"error_rate": 2},
        {"count": -1},
        {"latency_ms": -5},
        {},  # a rule that would do nothing
        {"paths": 3, "status_codes": [503]},
        {"status_codes": ["503"]},
        {"seed": "1", "status_codes": [503]},
        {"kill_space": "a/b", "seed": 1},
        "not json",
        [1],
    ],
)
def test_malformed_fault_specs_are_refused(spec: object) -> None:
    with pytest.raises(BadRequest):
        parse_faults(spec)


@pytest.mark.e2e
def test_client_retries_ride_through_injected_503s(
    api: HfApi, hub: LocalHub, tmp_path: Path
) -> None:
    api.create_repo("alice/m")
    reply = httpx.post(
        f"{hub.url}/_localhub/faults",
        json={
            "seed": 1,
            "error_rate": 1.0,
            "status_codes": [503],
            "paths": "*/preupload/*",
            "count": 1,
        },
    )
    assert reply.json()["rules"][0]["count"] == 1
    sha = api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/m").oid
    preuploads = [r["status"] for r in hub.requests if "/preupload/" in r["path"]]
    assert preuploads == [503, 200]  # huggingface_hub's http_backoff retried once

    hub.add_faults({"status_codes": [429], "paths": "/alice/m/resolve/*", "count": 1})
    path = hf_hub_download("alice/m", "x.txt", revision=sha, endpoint=hub.url, cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"x"
    assert [r["status"] for r in hub.requests if "/resolve/" in r["path"]][:2] == [429, 200]

    # a call the client does not retry just fails with the injected status
    hub.add_faults({"status_codes": [500], "paths": "/api/models/alice/m", "count": 1})
    with pytest.raises(HfHubHTTPError) as err:
        api.model_info("alice/m")
    assert err.value.response.status_code == 500
    assert api.model_info("alice/m").sha == sha
    assert [r["acted"] for r in httpx.get(f"{hub.url}/_localhub/faults").json()["rules"]] == [
        1,
        1,
        1,
    ]
    assert httpx.delete(f"{hub.url}/_localhub/faults").json() == {"rules": []}


@pytest.mark.e2e
def test_latency_is_added(api: HfApi, hub: LocalHub) -> None:
    hub.add_faults({"latency_ms": 150, "paths": "/api/whoami-v2", "count": 1})
    api.whoami()
    api.whoami()
    timings = [r["ms"] for r in hub.requests if r["path"] == "/api/whoami-v2"]
    assert timings[0] >= 150 > timings[1]


@pytest.mark.e2e
def test_faults_for_a_whole_run_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        FAULTS_ENV, json.dumps({"seed": 3, "error_rate": 0.5, "status_codes": [503]})
    )
    token = {"Authorization": "Bearer hf_any"}
    with LocalHub(root=tmp_path / "hub") as hub, httpx.Client(base_url=hub.url) as http:
        rules = http.get("/_localhub/faults").json()["rules"]
        assert [(r["seed"], r["error_rate"], r["status_codes"]) for r in rules] == [(3, 0.5, [503])]
        statuses = [http.get("/api/whoami-v2", headers=token).status_code for _ in range(20)]
        assert set(statuses) == {200, 503}
    with LocalHub(root=tmp_path / "hub") as hub, httpx.Client(base_url=hub.url) as http:
        again = [http.get("/api/whoami-v2", headers=token).status_code for _ in range(20)]
        assert again == statuses  # same seed


def test_a_bad_fault_spec_fails_start_and_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = LocalHub(root=tmp_path / "hub", faults={"status_codes": [200]})
    with pytest.raises(BadRequest):
        hub.start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = hub.url
    monkeypatch.setenv(FAULTS_ENV, "{not json")
    with pytest.raises(BadRequest, match="not JSON"):
        LocalHub(root=tmp_path / "hub").start()
