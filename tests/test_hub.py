"""hub.py against a real HTTP server on loopback that answers what each test scripts."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from spacetrain.errors import EXIT_INFRA, EXIT_USAGE, AuthError, HubUnreachable, UsageError
from spacetrain.hub import Hub, RetryPolicy, endpoint_from_env, token_from_env

SHA = "0123456789abcdef0123456789abcdef01234567"
OK = (200, {}, {"id": "me/model", "sha": SHA, "siblings": []})


class Scripted:
    """A loopback server: each request pops the next (status, headers, body) of the script."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], dict]] = []
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(("GET", self.path, self.headers.get("Authorization")))
                status, headers, body = outer.script.pop(0) if outer.script else OK
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Scripted]:
    with Scripted() as s:
        monkeypatch.setenv("HF_ENDPOINT", s.url)
        yield s


class FakeTime:
    """Sleeps advance a clock instead of waiting, so backoff is exercised in no time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def make_hub(deadline: float = 30.0) -> tuple[Hub, FakeTime]:
    t = FakeTime()
    policy = RetryPolicy(deadline=deadline, base=0.5, cap=4.0)
    hub = Hub.from_env(retry=policy, sleep=t.sleep, clock=t.clock, seed=0)
    return hub, t


@pytest.mark.e2e
def test_endpoint_and_token_come_from_the_environment(
    server: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", server.url + "/")
    assert endpoint_from_env() == server.url
    assert token_from_env() is None
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_for_tests_only_0000")
    hub, _ = make_hub()
    assert hub.endpoint == server.url
    info = hub.call("read me/model", hub.api.model_info, "me/model")
    assert info.sha == SHA
    assert server.requests[-1][2] == "Bearer hf_secret_value_for_tests_only_0000"


@pytest.mark.e2e
def test_a_token_file_on_disk_is_never_used(server: Scripted) -> None:
    import os

    token_file = Path(os.environ["HF_HOME"]) / "token"
    token_file.write_text("hf_from_a_file_that_must_not_be_sent_000")
    hub, _ = make_hub()
    hub.call("read me/model", hub.api.model_info, "me/model")
    assert server.requests[-1][2] is None


@pytest.mark.e2e
def test_transient_errors_are_retried_with_backoff(server: Scripted) -> None:
    server.script = [(503, {}, {"error": "busy"}), (502, {}, {}), (500, {}, {}), OK]
    hub, t = make_hub()
    info = hub.call("read me/model", hub.api.model_info, "me/model")
    assert info.sha == SHA
    assert hub.attempts == 4 and len(server.requests) == 4
    assert len(t.sleeps) == 3
    assert all(0 <= s <= 4.0 for s in t.sleeps)


@pytest.mark.e2e
def test_429_honours_retry_after(server: Scripted) -> None:
    server.script = [(429, {"Retry-After": "3"}, {"error": "slow down"}), OK]
    hub, t = make_hub()
    hub.call("read me/model", hub.api.model_info, "me/model")
    assert t.sleeps and t.sleeps[0] >= 3


@pytest.mark.e2e
def test_gives_up_at_the_deadline_with_exit_3(server: Scripted) -> None:
    server.script = [(503, {}, {"error": "down"})] * 100
    hub, t = make_hub(deadline=10.0)
    with pytest.raises(HubUnreachable) as info:
        hub.call("read me/model", hub.api.model_info, "me/model")
    err = info.value
    assert err.exit_code == EXIT_INFRA
    assert str(err).startswith(f"cannot read me/model: {server.url} is unreachable (HTTP 503)")
    assert "attempt(s)" in str(err) and "\n" not in str(err)
    assert t.now <= 10.0
    assert 2 <= hub.attempts < 100


@pytest.mark.e2e
def test_connection_refused_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    hub, _ = make_hub(deadline=2.0)
    with pytest.raises(HubUnreachable, match=r"is unreachable \(ConnectError\)"):
        hub.call("read me/model", hub.api.model_info, "me/model")
    assert hub.attempts >= 2


NOT_RETRIED = [
    (
        (401, {"X-Error-Message": "Invalid credentials in Authorization header"}, {}),
        AuthError,
        "rejected the token in HF_TOKEN (401)",
    ),
    ((403, {"X-Error-Message": "forbidden"}, {"error": "forbidden"}), AuthError, "(403)"),
    (
        (404, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}),
        UsageError,
        "no such repo at",
    ),
    (
        (404, {"X-Error-Code": "RevisionNotFound"}, {"error": "Invalid rev id: nope"}),
        UsageError,
        "no such revision",
    ),
    ((400, {}, {"error": "bad"}), UsageError, "refused the request (400)"),
    ((409, {}, {"error": "conflict"}), UsageError, "refused the request (409)"),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("response", "kind", "words"), NOT_RETRIED)
def test_client_errors_are_not_retried_and_map_to_exit_2(
    server: Scripted,
    monkeypatch: pytest.MonkeyPatch,
    response: tuple,
    kind: type,
    words: str,
) -> None:
    secret = "hf_never_print_me_0000000000000000000000"
    monkeypatch.setenv("HF_TOKEN", secret)
    server.script = [response]
    hub, t = make_hub()
    with pytest.raises(kind) as info:
        hub.call("read me/model", hub.api.model_info, "me/model")
    assert info.value.exit_code == EXIT_USAGE
    assert words in str(info.value)
    assert str(info.value).startswith("cannot read me/model: ")
    assert "\n" not in str(info.value)
    assert secret not in str(info.value)
    assert hub.attempts == 1 and len(server.requests) == 1 and t.sleeps == []


@pytest.mark.e2e
def test_invalid_repo_id_is_usage_error(server: Scripted) -> None:
    hub, _ = make_hub()
    with pytest.raises(UsageError, match="cannot read the repo: "):
        hub.call("read the repo", hub.api.model_info, "not a/valid/id!!")
    assert server.requests == []


def test_deadline_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACETRAIN_HUB_DEADLINE", "7")
    assert Hub.from_env().retry.deadline == 7.0
    monkeypatch.setenv("SPACETRAIN_HUB_DEADLINE", "soon")
    with pytest.raises(UsageError, match="SPACETRAIN_HUB_DEADLINE"):
        Hub.from_env()


def test_space_train_py_retries_the_hub_by_the_same_policy() -> None:
    """space/ is standalone, so train.py keeps a copy of the retry numbers: they must agree."""
    from spacetrain import contract
    from spacetrain.hub import RETRY_STATUS

    trainer, policy = contract.trainer, RetryPolicy()
    copied = (trainer.HUB_RETRY_DEADLINE, trainer.HUB_RETRY_BASE, trainer.HUB_RETRY_CAP,
              trainer.HUB_RETRY_AFTER_CAP)  # fmt: skip
    assert copied == (policy.deadline, policy.base, policy.cap, policy.retry_after_cap)
    assert trainer.HUB_RETRY_STATUS == RETRY_STATUS


def test_the_retry_loop_hooks_can_shorten_a_wait_or_stop_and_the_deadline_ends_it() -> None:
    """hub.retry is the loop SpaceApp.call runs on: before_wait shapes each wait."""
    import random

    from spacetrain.hub import retry

    t, calls = FakeTime(), []

    def flaky() -> str:
        calls.append(t.now)
        raise ConnectionError("dropped")

    def shorter(exc: BaseException, attempt: int, wait: float) -> float:
        return min(wait, 0.25)

    with pytest.raises(TimeoutError, match="gave up after"):
        retry(flaky, policy=RetryPolicy(deadline=5.0), transient=lambda e: True,
              give_up=lambda e, n, s: TimeoutError(f"gave up after {n}"),
              before_wait=shorter, clock=t.clock, sleep=t.sleep, rng=random.Random(0))  # fmt: skip
    assert len(calls) > 3 and all(s <= 0.25 for s in t.sleeps) and t.now <= 5.0

    def stop(exc: BaseException, attempt: int, wait: float) -> float:
        raise KeyError("stop")

    calls.clear()
    with pytest.raises(KeyError):
        retry(flaky, policy=RetryPolicy(), transient=lambda e: True,
              give_up=lambda e, n, s: TimeoutError(), before_wait=stop)  # fmt: skip
    assert len(calls) == 1
    with pytest.raises(ValueError):  # not transient: raised as it is, no retry
        retry(lambda: int("x"), policy=RetryPolicy(), transient=lambda e: False,
              give_up=lambda e, n, s: TimeoutError())  # fmt: skip
