"""HTTP plumbing shared by the hub and the Space gateways; knows no route and no repo.

A leaf module (it imports only :mod:`errors`, itself a leaf): the parsed :class:`Request`, the
:class:`Response` (a body or a stream), JSON answers, the body reader (``Content-Length``
or chunked, with limits), GitHub-style pagination, byte ranges, and the threaded server
both kinds of server run on.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from spacetrain.localhub.errors import BadRequest, HubError

if TYPE_CHECKING:
    from spacetrain.localhub.auth import Caller

MAX_BODY = 1 << 30  # 1 GiB: commits carry files base64 in their body; more is a runaway
_MAX_LINE = 1024  # a chunk-size or trailer line


class ThreadedServer(ThreadingHTTPServer):
    """One thread per connection, daemon threads, a deep accept queue (parallel clients)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, ``TCP_NODELAY``, no stderr line per request."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle and the
        # client's delayed ACK add ~40 ms to every small answer.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the hub's request log (``/_localhub/requests``) replaces stderr lines."""


def read_body(headers: Any, rfile: IO[bytes], limit: int = MAX_BODY) -> bytes:
    """The whole request body, ``Content-Length`` or chunked; ValueError when it is
    malformed or longer than ``limit`` (the caller closes the connection)."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        chunks: list[bytes] = []
        total = 0
        while True:
            line = rfile.readline(_MAX_LINE)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(_MAX_LINE).strip():
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > limit:
                raise ValueError(f"request body over {limit} bytes")
            chunks.append(rfile.read(size))
            rfile.readline(_MAX_LINE)
    length = int(headers.get("Content-Length") or 0)
    if length > limit:
        raise ValueError(f"request body over {limit} bytes")
    return rfile.read(length) if length > 0 else b""


@dataclass
class Request:
    """One parsed request to the hub."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    caller: Caller
    base: str
    admin: bool = False  # holds the control plane (always, on an open server)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str) -> bool:
        return (self.arg(name) or "").lower() in ("1", "true", "yes")

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"Request body is not JSON: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise BadRequest("Request body must be a JSON object")
        return data


@dataclass
class Response:
    """A full body, or a stream (sent with ``Connection: close``)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status,
        json.dumps(data).encode(),
        {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


def error_response(exc: HubError) -> Response:
    """A domain error in the Hub's error protocol (status, X-Error-* headers, JSON)."""
    return json_response(exc.body(), exc.status, exc.wire_headers())


def paged(
    req: Request, items: list[Any], page: int, render: Callable[[list[Any]], list[Any]]
) -> Response:
    """One page of ``items`` with a GitHub-style ``Link: <…>; rel="next"``."""
    try:
        limit = max(1, min(page, int(req.arg("limit") or page)))
        start = max(0, int(req.arg("cursor") or 0))
    except ValueError:
        raise BadRequest("cursor and limit must be integers") from None
    chunk = items[start : start + limit]
    headers = {}
    if start + limit < len(items):
        query = {k: v[-1] for k, v in req.query.items()}
        query.update(cursor=str(start + limit), limit=str(limit))
        headers["Link"] = f'<{req.base}{quote(req.path)}?{urlencode(query)}>; rel="next"'
    return json_response(render(chunk), headers=headers)


KEEPALIVE_S = 10.0  # SSE keep-alive: longer than the 5 s after which a no-follow reader stops


def sse_response(events: Iterable[dict[str, Any] | None]) -> Response:
    """Server-Sent Events, the Hub's log format: one ``data: <json>`` per event, sent as
    it comes; ``None`` (nothing new yet) becomes a ``: keep-alive`` comment at most
    every KEEPALIVE_S. The stream ends when ``events`` does."""

    def stream() -> Iterator[bytes]:
        last = time.monotonic()
        for event in events:
            if event is None:
                if time.monotonic() - last >= KEEPALIVE_S:
                    last = time.monotonic()
                    yield b": keep-alive\n\n"
                continue
            yield b"data: " + json.dumps(event).encode() + b"\n\n"

    return Response(
        200,
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        stream=stream(),
    )


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(HubError):
    status = 416

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("Requested range not satisfiable", headers=headers)


def byte_range(wanted: str, data: bytes, headers: dict[str, str]) -> Response:
    """The 206 answer to a ``Range: bytes=a-b`` header; 416 when it does not fit."""
    match = _RANGE.match(wanted.strip())
    size = len(data)
    if match and (match[1] or match[2]):
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
        else:
            start, end = max(0, size - int(match[2])), size - 1
        if start < size and start <= end:
            ranged = {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
            return Response(206, data[start : end + 1], ranged)
    raise RangeNotSatisfiable({**headers, "Content-Range": f"bytes */{size}"})


__all__ = [
    "KEEPALIVE_S",
    "MAX_BODY",
    "QuietHandler",
    "RangeNotSatisfiable",
    "Request",
    "Response",
    "ThreadedServer",
    "byte_range",
    "error_response",
    "json_response",
    "paged",
    "read_body",
    "sse_response",
]
