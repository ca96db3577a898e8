"""The hub's request handler: one request through faults, the URL table, the guard,
the handler, the request log, and out.

Domain errors (``errors.HubError``) become the Hub's error protocol here and nowhere
else; a bug answers 500 rather than hanging the client. Faults act before routing, so
an injected error never reaches a handler. The shapes follow
../shared/reference/hub-api.md (huggingface_hub 2.4.0 and gradio_client 2.7.2).
"""

from __future__ import annotations

import time
import traceback
import uuid
from urllib.parse import parse_qs

from spacetrain.localhub.context import Context
from spacetrain.localhub.errors import HubError
from spacetrain.localhub.urls import match
from spacetrain.localhub.wire import (
    QuietHandler,
    Request,
    Response,
    error_response,
    json_response,
    read_body,
)


class HubHandler(QuietHandler):
    """One connection to the hub; every answer has a length, or closes (a stream)."""

    server_version = "localhub"
    ctx: Context  # set on the subclass the server builds

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _handle(self) -> None:
        started = time.monotonic()
        raw_path, _, raw_query = self.path.partition("?")
        try:
            body = read_body(self.headers, self.rfile)
        except (ValueError, OSError):
            self.close_connection = True
            return
        try:
            response = self._answer(raw_path, raw_query, body)
        except HubError as exc:
            response = error_response(exc)
        except Exception as exc:  # a bug must still answer, not hang the client
            traceback.print_exc()
            response = json_response({"error": f"localhub internal error: {exc!r}"}, 500)
        # Logged before the answer goes out: a client that reads the log next sees it.
        self.ctx.requests.append(
            {
                "method": self.command,
                "path": raw_path,
                "query": raw_query,
                "status": response.status,
                "ms": round((time.monotonic() - started) * 1000, 2),
            }
        )
        try:
            self._send(response)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _answer(self, raw_path: str, raw_query: str, body: bytes) -> Response:
        ctx = self.ctx
        decision = ctx.faults.decide(self.command, raw_path)
        if decision.delay_s:
            time.sleep(decision.delay_s)
        if decision.status is not None:
            raise _Injected(decision.status)
        entry, params = match(self.command, raw_path)
        caller, admin = ctx.auth.guard(entry.guard, self.headers.get("Authorization"))
        host = self.headers.get("Host")
        req = Request(
            method=self.command,
            path=raw_path,
            query=parse_qs(raw_query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            caller=caller,
            base=f"http://{host}" if host else ctx.base_url(),
            admin=admin,
        )
        return entry.handler(ctx, req, **params)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        headers = {"X-Request-Id": uuid.uuid4().hex, **response.headers}
        if response.stream is not None:
            headers["Connection"] = "close"
            self.close_connection = True
        else:
            headers.setdefault("Content-Length", str(len(response.body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.stream is not None:
            for chunk in response.stream:
                self.wfile.write(chunk)
                self.wfile.flush()
        elif response.body:
            self.wfile.write(response.body)


class _Injected(HubError):
    def __init__(self, status: int) -> None:
        super().__init__(f"localhub: injected fault ({status})")
        self.status = status
        if status == 429:
            self.headers["Retry-After"] = "0"


__all__ = ["HubHandler"]
