"""A Space's address is a gateway: private Spaces need a token that can read them,
streams pass through unbuffered, an outage answers 503, the address outlives restarts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError

from spacetrain.localhub import LocalHub, use_endpoint

from .spaceapps import GRADIO_APP, write_space

pytestmark = pytest.mark.e2e

ALICE, BOB = "hf_gatewayAlice", "hf_gatewayBob"
PRIVATE, PUBLIC = "alice/private-app", "alice/stream-app"

# Streams three SSE events a second apart, flushing each; answers 200 on / for the probe.
STREAM_APP = """\
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path != "/stream":
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(3):
            data = f"data: {i}\\n\\n".encode()
            self.wfile.write(b"%x\\r\\n%s\\r\\n" % (len(data), data))
            self.wfile.flush()
            time.sleep(1)
        self.wfile.write(b"0\\r\\n\\r\\n")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["GRADIO_SERVER_PORT"])), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    root = tmp_path_factory.mktemp("gateway")
    # A rebuild takes 2 s, as a real one takes minutes: long enough that "nothing serves
    # while it restarts" is seen however slow the machine (the apps here start at once).
    with LocalHub(root=root / "hub", tokens={ALICE: "alice", BOB: "bob"}, build_delay=2.0) as hub:
        api = HfApi(endpoint=hub.url, token=ALICE)
        api.create_repo(PRIVATE, repo_type="space", space_sdk="docker", private=True)
        api.upload_folder(
            repo_id=PRIVATE, repo_type="space", folder_path=write_space(root / "g", GRADIO_APP)
        )
        api.create_repo(PUBLIC, repo_type="space", space_sdk="docker")
        api.upload_folder(
            repo_id=PUBLIC, repo_type="space", folder_path=write_space(root / "s", STREAM_APP)
        )
        for space in (PRIVATE, PUBLIC):
            assert api.wait_for_space(space, timeout=120, poll_interval=0.1).stage == "RUNNING"
        yield hub


def _host(hub: LocalHub, space: str) -> str:
    host = HfApi(endpoint=hub.url, token=ALICE).space_info(space).host
    assert host is not None
    return host


def test_a_private_spaces_app_answers_only_a_token_that_can_read_it(strict: LocalHub) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    host = _host(strict, PRIVATE)
    assert httpx.get(f"{host}/config").status_code == 401
    bearer = {"Authorization": f"Bearer {BOB}"}
    assert httpx.get(f"{host}/config", headers=bearer).status_code == 404  # no hint
    wrong = {"Authorization": "Bearer hf_nobody"}
    assert httpx.get(f"{host}/config", headers=wrong).status_code == 401
    assert httpx.get(f"{host}/config", headers={"x-hf-authorization": f"Bearer {ALICE}"}).is_success
    with use_endpoint(strict.url):
        with pytest.raises(RepositoryNotFoundError):  # the Hub hides it: space_info is 404
            Client(PRIVATE, verbose=False, token=False)  # type: ignore[arg-type]
        with pytest.raises(AuthenticationError):  # and its address refuses the anonymous
            Client(host, verbose=False, token=False)  # type: ignore[arg-type]
        client = Client(PRIVATE, verbose=False, token=ALICE)
        try:
            assert client.predict("bob", api_name="/greet").startswith(f"hello bob from {PRIVATE}")
        finally:
            client.close()


def test_a_public_spaces_app_is_open_and_streams_unbuffered(strict: LocalHub) -> None:
    host = _host(strict, PUBLIC)
    started = time.monotonic()
    seen: list[tuple[str, float]] = []
    with httpx.stream("GET", f"{host}/stream", timeout=10) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/event-stream"
        for line in reply.iter_lines():
            if line:
                seen.append((line, time.monotonic() - started))
    assert [line for line, _ in seen] == ["data: 0", "data: 1", "data: 2"]
    assert seen[0][1] < 0.8, seen  # the first event before the app's next one: not buffered
    assert seen[2][1] >= 1.8


def test_an_outage_is_503_then_the_same_address_serves_again(strict: LocalHub) -> None:
    api = HfApi(endpoint=strict.url, token=ALICE)
    host = _host(strict, PUBLIC)
    strict.add_faults({"app_outage": {"repo": PUBLIC, "seconds": 0.5}})
    assert httpx.get(host).status_code == 503
    time.sleep(0.6)
    assert httpx.get(host).text == "ok"
    api.restart_space(PUBLIC, factory_reboot=True)
    assert httpx.get(host).status_code == 503  # rebuilding: nothing serves, the door answers
    assert api.wait_for_space(PUBLIC, timeout=60, poll_interval=0.1).stage == "RUNNING"
    assert _host(strict, PUBLIC) == host  # the Space's address outlives its app
    assert httpx.get(host).text == "ok"
    assert api.get_space_runtime(PUBLIC).raw["domains"] == [
        {"domain": host.removeprefix("http://"), "stage": "READY"}
    ]
