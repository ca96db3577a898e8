"""A Space's runtime and settings: runtime, restart, pause, hardware, sleep time,
variables and secrets, and its build and run logs (Server-Sent Events).

Reading the runtime (and variables) is a read; everything else is a write, secrets
included. The rules themselves are :class:`spaces.SpaceSupervisor`'s.
"""

from __future__ import annotations

from spacetrain.localhub.context import Context
from spacetrain.localhub.errors import BadRequest
from spacetrain.localhub.store import now_iso
from spacetrain.localhub.wire import Request, Response, json_response, sse_response


def space_runtime(ctx: Context, req: Request, ns: str, name: str) -> Response:
    return json_response(ctx.spaces.runtime(ctx.space(req, ns, name, write=False)))


def space_restart(ctx: Context, req: Request, ns: str, name: str) -> Response:
    repo = ctx.space(req, ns, name, write=True)
    return json_response(ctx.spaces.restart(repo, factory=req.flag("factory")))


def space_pause(ctx: Context, req: Request, ns: str, name: str) -> Response:
    return json_response(ctx.spaces.pause(ctx.space(req, ns, name, write=True)))


def space_hardware(ctx: Context, req: Request, ns: str, name: str) -> Response:
    repo = ctx.space(req, ns, name, write=True)
    body = req.json_object()
    flavor = body.get("flavor")
    if not isinstance(flavor, str):
        raise BadRequest("flavor is required")
    return json_response(ctx.spaces.set_hardware(repo, flavor, body.get("sleepTimeSeconds")))


def space_sleeptime(ctx: Context, req: Request, ns: str, name: str) -> Response:
    repo = ctx.space(req, ns, name, write=True)
    return json_response(ctx.spaces.set_sleep_time(repo, req.json_object().get("seconds")))


def space_env(ctx: Context, req: Request, ns: str, name: str, kind: str) -> Response:
    """GET, POST (add) or DELETE a variable or secret (``kind``)."""
    repo = ctx.space(req, ns, name, write=req.method != "GET" or kind == "secrets")
    if req.method == "GET":
        return json_response(
            ctx.spaces.variables(repo) if kind == "variables" else ctx.spaces.secrets(repo)
        )
    body = req.json_object()
    key = body.get("key")
    if not isinstance(key, str):
        raise BadRequest("key is required")
    if req.method == "POST":
        if "value" not in body:
            raise BadRequest("value is required")
        ctx.spaces.set_env(repo, kind, key, str(body["value"]), body.get("description"))
    else:
        ctx.spaces.set_env(repo, kind, key, None, None)
    if kind == "variables":
        return json_response(ctx.spaces.variables(repo))
    return Response(200)


def space_logs(ctx: Context, req: Request, ns: str, name: str, which: str) -> Response:
    repo = ctx.space(req, ns, name, write=True)
    space = ctx.spaces.space(repo)
    log = space.build_log if which == "build" else space.run_log

    return sse_response(
        None if item is None else {"data": item[1], "timestamp": now_iso(item[0])}
        for item in log.follow(ctx.stopping)
    )


__all__ = [
    "space_env",
    "space_hardware",
    "space_logs",
    "space_pause",
    "space_restart",
    "space_runtime",
    "space_sleeptime",
]
