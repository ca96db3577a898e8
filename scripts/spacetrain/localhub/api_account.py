"""Who am I, and the telemetry pings the libraries send (answered, never kept)."""

from __future__ import annotations

from spacetrain.localhub.context import Context
from spacetrain.localhub.store import now_iso
from spacetrain.localhub.wire import Request, Response, json_response


def whoami(ctx: Context, req: Request) -> Response:
    return json_response(ctx.auth.whoami(req.caller, now_iso()))


def telemetry(ctx: Context, req: Request) -> Response:
    return Response(200)


__all__ = ["telemetry", "whoami"]
