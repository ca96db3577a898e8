"""A Space's public address: a small reverse proxy in front of its app.

On the Hub a Space's URL goes through the Hub's proxy: a private Space answers only a
request carrying a token that can read it (``Authorization: Bearer`` or gradio_client's
``x-hf-authorization: Bearer``), and a Space that is not up answers 503, not a refused
connection. Here each Space gets one gateway, on a port that stays the same across
rebuilds and restarts (the Space's "domain"); ``space_info().host`` points at it, and it
forwards to whatever port the app serves on now.

Streams pass through unbuffered: Server-Sent Events (gradio_client's ``sse_v3``) are
relayed chunk by chunk as the app flushes them. The gateway knows nothing about tokens
or repos: ``admit`` (given by the server) says yes, or which status and message to
answer. ``down_until`` simulates the Space's proxy failing (an outage fault): every
request is answered 503 until then.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable

from spacetrain.localhub.wire import QuietHandler, ThreadedServer, read_body

# Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
Admit = Callable[[dict[str, str]], tuple[int, str] | None]


class AppGateway:
    """The front door of one Space: admits, forwards, streams.

    Args:
        repo_id: the Space, for messages.
        upstream: the port the app serves on now, or None when there is no app.
        admit: ``None`` to let a request through, else ``(status, message)``; it gets
            the request's headers with lower-case names.
    """

    def __init__(self, repo_id: str, upstream: Callable[[], int | None], admit: Admit) -> None:
        self.repo_id = repo_id
        self.upstream = upstream
        self.admit = admit
        self.down_until = 0.0
        handler = type("GatewayHandler", (_Handler,), {"gateway": self})
        self._server = ThreadedServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"gateway-{repo_id}",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the Space's domain."""
        return f"127.0.0.1:{self.port}"

    def outage(self, seconds: float) -> None:
        """Answer 503 to everything for ``seconds`` (the Hub's proxy failing)."""
        self.down_until = time.monotonic() + seconds

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _Handler(QuietHandler):
    server_version = "localhub-space"
    gateway: AppGateway

    def do_GET(self) -> None:
        self._proxy()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _refuse(self, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _proxy(self) -> None:
        gateway = self.gateway
        try:
            body = read_body(self.headers, self.rfile)
        except (ValueError, OSError):
            self.close_connection = True
            return
        if time.monotonic() < gateway.down_until:
            self._refuse(503, f"localhub: injected outage of {gateway.repo_id}'s proxy")
            return
        refusal = gateway.admit({k.lower(): v for k, v in self.headers.items()})
        if refusal is not None:
            self._refuse(*refusal)
            return
        port = gateway.upstream()
        if port is None:
            self._refuse(503, f"Space {gateway.repo_id} is not running")
            return
        # The body was read whole (chunked or not): its length is the one sent on, so a
        # request with both Content-Length and chunked cannot desynchronise the app.
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in (*_HOP, "content-length")
        }
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
        except (OSError, http.client.HTTPException):
            upstream.close()
            self._refuse(503, f"Space {gateway.repo_id} is not answering (starting or stopped)")
            return
        try:
            self._relay(reply)
        except (BrokenPipeError, ConnectionResetError, OSError, http.client.HTTPException):
            self.close_connection = True
        finally:
            upstream.close()

    def _relay(self, reply: http.client.HTTPResponse) -> None:
        """Status, headers, then the body as it comes (a length, or until the app ends)."""
        self.send_response_only(reply.status, reply.reason)
        length = reply.getheader("Content-Length")
        for key, value in reply.getheaders():
            if key.lower() not in _HOP and key.lower() not in ("date", "server"):
                self.send_header(key, value)
        self.send_header("Date", self.date_time_string())
        if length is None and self.command != "HEAD" and reply.status not in (204, 304):
            self.send_header("Connection", "close")  # delimited by the end of the stream
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        while True:
            chunk = reply.read1(65536)
            if not chunk:
                break
            self.wfile.write(chunk)
            self.wfile.flush()


__all__ = ["AppGateway"]
