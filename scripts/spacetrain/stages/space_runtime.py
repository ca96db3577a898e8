"""What the Space-control stages share: stage names, runtime reading.

The Hub reports a Space's life as a ``stage`` string (huggingface_hub's ``SpaceStage``
plus ``SLEEPING`` from huggingface.js). These groups decide what `wait` does with each,
what `release` may skip and what `status` flags; keeping them in one place keeps the
stages agreeing. Progress lines: :mod:`spacetrain.stages.progress`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from huggingface_hub import SpaceRuntime

from spacetrain.errors import SpacetrainError
from spacetrain.hub import Hub

# Still getting there: keep polling.
BUSY = frozenset(
    {"BUILDING", "APP_STARTING", "RUNNING_BUILDING", "RUNNING_APP_STARTING", "DELETING"}
)
# Serving requests (perhaps an older commit while a new one builds).
SERVING = frozenset({"RUNNING", "RUNNING_BUILDING", "RUNNING_APP_STARTING"})
# The Space's own failure: its files, its build or its app (exit 1).
FAILED = frozenset({"BUILD_ERROR", "CONFIG_ERROR", "NO_APP_FILE", "RUNTIME_ERROR"})
# Not running, not failed: only ``restart_space`` (or a visit) brings it back.
STOPPED = frozenset({"PAUSED", "STOPPED", "SLEEPING"})
# The Hub bills hardware in these (localhub's meter agrees).
BILLED = frozenset({"APP_STARTING", *SERVING})

CPU_FLAVORS = frozenset({"cpu-basic", "cpu-upgrade", "cpu-performance", "cpu-xl"})


@dataclass(frozen=True)
class Runtime:
    """The few fields of a ``SpaceRuntime`` the stages act on."""

    stage: str
    sha: str | None  # the commit the runtime is about (None when the Hub does not say)
    hardware: str | None  # current flavor (None while not running)
    requested_hardware: str | None
    error: str | None  # errorMessage of an error stage
    raw: dict[str, Any]

    @classmethod
    def of(cls, runtime: SpaceRuntime) -> Runtime:
        """Wrap huggingface_hub's object (its ``raw`` keeps what it does not parse)."""
        raw = dict(runtime.raw or {})
        sha = raw.get("sha")
        error = raw.get("errorMessage")
        return cls(
            stage=str(runtime.stage),
            sha=sha if isinstance(sha, str) and sha else None,
            hardware=runtime.hardware,
            requested_hardware=runtime.requested_hardware,
            error=str(error) if error else None,
            raw=raw,
        )


def get_runtime(hub: Hub, space: str) -> Runtime:
    """The Space's runtime, read through the Hub's retries."""
    return Runtime.of(
        hub.call(f"read the runtime of Space {space}", hub.api.get_space_runtime, space)
    )


def active_run(hub: Hub, space: str, *, patience: float = 10.0) -> str | None:
    """The run the Space is training now (queued or running), or ``None``.

    Only a serving Space can be training; its app is asked through ``training_status``
    (space/app.py). An app that does not answer that within ``patience`` seconds (not
    this project's app, or one that hangs) counts as idle: it trains nothing we can see.
    """
    if get_runtime(hub, space).stage not in SERVING:
        return None
    from spacetrain.stages.progress import quiet
    from spacetrain.stages.space_app import SpaceApp

    # A Space still starting gets longer. ``patience`` is generous: an app that answers
    # late under load must not be taken for idle (releasing would end its run).
    deadline = time.monotonic() + 3 * patience
    try:
        with SpaceApp(space, hub, deadline=deadline, progress=quiet) as app:
            app.disconnect_limit = patience
            status = app.call("/training_status", "")
    except Exception:  # not our app, no answer in time, or a gr.Error: no run to protect
        return None
    if status.get("state") in ("queued", "running") and status.get("run_id"):
        return str(status["run_id"])
    return None


def log_tail(hub: Hub, space: str, *, build: bool, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of the build or run log; empty when they cannot be read.

    Used to explain a failure, so it never raises: a missing log must not hide the
    failure it was meant to explain.
    """
    try:
        text = "".join(
            hub.call(
                f"read the {'build' if build else 'run'} logs of Space {space}",
                lambda: list(hub.api.fetch_space_logs(space, build=build)),
            )
        )
    except SpacetrainError:  # a best-effort explanation
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def short(sha: str | None) -> str:
    """A sha cut to 12 characters for people (full shas stay in state and JSON)."""
    return sha[:12] if sha else "?"


__all__ = [
    "BILLED",
    "BUSY",
    "CPU_FLAVORS",
    "FAILED",
    "SERVING",
    "STOPPED",
    "Runtime",
    "active_run",
    "get_runtime",
    "log_tail",
    "short",
]
