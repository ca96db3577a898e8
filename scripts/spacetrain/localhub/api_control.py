"""localhub's own control plane (``/_localhub/*``): health, reset, the billing meter,
the request log, and fault injection. Guarded in the URL table (see ``auth.Auth.guard``)."""

from __future__ import annotations

from typing import Any

from spacetrain.localhub.billing import merge
from spacetrain.localhub.context import Context
from spacetrain.localhub.faults import parse_faults
from spacetrain.localhub.wire import Request, Response, json_response


def health(ctx: Context, req: Request) -> Response:
    return json_response({"ok": True})


def reset(ctx: Context, req: Request) -> Response:
    ctx.reset()
    return json_response({"ok": True})


def billing(ctx: Context, req: Request) -> Response:
    """Every meter for the admin; a user's token sees the Spaces it can see and the Jobs
    of the namespaces it may read."""
    if req.admin:
        return json_response(merge(ctx.meter.snapshot(), ctx.jobs.billing()))

    def visible(space_id: str) -> bool:
        repo = ctx.store.find("space", space_id)
        return repo is not None and ctx.auth.can_see(req.caller, repo.private, "space", space_id)

    return json_response({**ctx.meter.snapshot(visible), **ctx.jobs.billing(viewer=req.caller)})


def requests(ctx: Context, req: Request) -> Response:
    if req.method == "DELETE":
        ctx.requests.clear()
        return json_response({"ok": True})
    return json_response(list(ctx.requests))


def faults(ctx: Context, req: Request) -> Response:
    if req.method == "DELETE":
        ctx.faults.clear()
    elif req.method == "POST":
        apply_faults(ctx, req.json())
    return json_response({"rules": ctx.faults.to_json()})


def apply_faults(ctx: Context, payload: Any) -> None:
    """Add fault rules and carry out Space actions (also used for ``LOCALHUB_FAULTS``);
    the payload is checked whole first (``faults.parse_faults``)."""
    rules, actions = parse_faults(payload)
    for action in actions:
        if "kill_job" in action or "job_start_error" in action:
            ctx.jobs.apply_fault(action)
        elif "kill_space" in action:
            ctx.spaces.kill(ctx.find_space(action["kill_space"]))
        elif "app_outage" in action:
            spec = action["app_outage"]
            ctx.spaces.outage(ctx.find_space(spec["repo"]), float(spec.get("seconds", 5)))
        else:
            spec = action["force_stage"]
            ctx.spaces.force_stage(
                ctx.find_space(spec["repo"]),
                str(spec["stage"]),
                spec.get("message"),
                str(spec.get("when", "now")),
            )
    ctx.faults.add(rules)


__all__ = ["apply_faults", "billing", "faults", "health", "requests", "reset"]
