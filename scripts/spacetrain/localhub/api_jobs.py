"""The HF Jobs API surface (huggingface_hub 2.4.0's ``run_job``, ``inspect_job``,
``fetch_job_logs``, ``cancel_job``, ``list_jobs``, ``list_jobs_hardware``).

Thin: each handler reads the request, calls :class:`jobs.JobSupervisor` (which holds
the rules: rights, stages, meter) and answers JSON, or the log as the Hub's SSE.
"""

from __future__ import annotations

import re

from spacetrain.localhub.context import Context
from spacetrain.localhub.errors import BadRequest
from spacetrain.localhub.store import now_iso
from spacetrain.localhub.wire import Request, Response, event_stream, json_response


def run_job(ctx: Context, req: Request, ns: str) -> Response:
    """``POST /api/jobs/{ns}``: the JobInfo of a Job that starts SCHEDULING."""
    return json_response(ctx.jobs.run(req.caller, ns, req.json_object()).to_json())


def list_jobs(ctx: Context, req: Request, ns: str) -> Response:
    """``GET /api/jobs/{ns}?stage=…&label=k=v``: one page, newest first."""
    stages = [s.upper() for s in req.query.get("stage", [])]
    jobs = ctx.jobs.list(req.caller, ns, stages, req.query.get("label", []))
    return json_response([job.to_json() for job in jobs])


def inspect_job(ctx: Context, req: Request, ns: str, job_id: str) -> Response:
    """``GET /api/jobs/{ns}/{id}``."""
    return json_response(ctx.jobs.get(req.caller, ns, job_id).to_json())


def cancel_job(ctx: Context, req: Request, ns: str, job_id: str) -> Response:
    """``POST /api/jobs/{ns}/{id}/cancel``: answers once the Job's tree is gone."""
    ctx.jobs.cancel(req.caller, ns, job_id)
    return Response(200)


def job_logs(ctx: Context, req: Request, ns: str, job_id: str) -> Response:
    """``GET /api/jobs/{ns}/{id}/logs[?tail=N]``: SSE ``data: {"data", "timestamp"}``,
    every line so far (or the last N), then new ones until the Job ends; a comment
    line now and then keeps a quiet stream open."""
    job = ctx.jobs.get(req.caller, ns, job_id)
    tail = req.arg("tail")
    if tail is not None and not re.fullmatch(r"\d+", tail):
        raise BadRequest(f"tail must be a whole number, got {tail!r}")
    lines = ctx.jobs.follow(job, int(tail) if tail is not None else None)
    return event_stream(
        None if item is None else {"data": item[1].rstrip("\n"), "timestamp": now_iso(item[0])}
        for item in lines
    )


def jobs_hardware(ctx: Context, req: Request) -> Response:
    """``GET /api/jobs/hardware``."""
    return json_response(ctx.jobs.hardware())


__all__ = ["cancel_job", "inspect_job", "job_logs", "jobs_hardware", "list_jobs", "run_job"]
