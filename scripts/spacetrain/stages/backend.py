"""The training-backend seam: what the train stage needs from wherever training runs.

The train stage (:mod:`spacetrain.stages.train`) owns the run's life from the
pipeline's side: the state it records, the hold-or-release decision on every way out,
the progress lines. Where the run executes is behind :class:`TrainingBackend`; the
first implementation is the Space's Gradio API
(:class:`spacetrain.stages.space_backend.SpaceBackend`); an HF Jobs implementation
(``run_job`` / ``inspect_job`` / ``fetch_job_logs`` / ``cancel_job``) plugs in the same way.

The contract every backend keeps:

``name``
    ``"space"``, ``"job"``: for messages and the state.
``target``
    What runs the training, for people (the Space id, the job's namespace).
``answered``
    Whether the backend has reached its runner at least once: a backend that never
    answered has started nothing, so there is nothing to release (the stage holds).
``reconnects``
    Lost-and-found connections so far (reported with the result; 0 if not applicable).
``preflight(params)``
    Before a *new* run, have the runner check itself (token, write access, model and
    dataset, GPU). A no-op when the backend already knows ``params["run_id"]`` (a
    rejoin is followed unchecked). Raises :class:`~spacetrain.errors.UsageError`
    (configuration, exit 2), :class:`~spacetrain.errors.HubUnreachable` (exit 3) or
    :class:`ForeignRun`.
``start(params) -> RunStatus``
    Start the run ``params["run_id"]``; idempotent by run id: asking again returns the
    same run with ``created=False`` and starts nothing. :class:`ForeignRun` when the
    runner is busy with another run; ``UsageError`` when it refuses the params.
``status(run_id) -> RunStatus``
    The run now; :class:`~spacetrain.errors.TrainingFailed` when the runner no longer
    knows it. Lost connections are retried inside, until the backend's deadline
    (:class:`~spacetrain.errors.StageTimeout`).
``logs(run_id, offset) -> LogPage``
    The run's log from byte ``offset``: text, the next offset, whether the log is done
    (the run ended and everything was read) and whether more can be read right now.
    Lines starting with :data:`spacetrain.contract.EVENT_PREFIX` are for programs;
    the stage drops them and masks tokens before printing.
``stop(run_id) -> str | None``
    Best effort within seconds (SIGINT/SIGTERM): end OUR run cleanly so it is recorded
    as cancelled; returns its state, or ``None`` when that could not be learned.
``release(ours) -> str``
    Stop the bill: what was done (``paused``, ``downgraded``, ``already-paused``,
    ``held`` when the runner trains a run that is not ``ours``, ``cancelled``...), or
    ``""`` when there is nothing to release. Raises ``SpacetrainError`` when it could
    not (the stage reports it; a run's own failure stays the error).
``close()``
    Drop connections and background threads.

Statuses are :class:`RunStatus`, the shape of space/app.py's ``training_status`` (``state``
in :data:`ACTIVE` or :data:`FINAL`, ``step``/``total``/``epoch``/``loss``, the pushed
adapter's repo and revision, ``error``, the log's tail).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from spacetrain.errors import CheckFailed

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class RunStatus:
    """One run as its backend reports it.

    Attributes:
        run_id: the run.
        state: ``queued``/``running`` (:data:`ACTIVE`) or ``succeeded``/``failed``/
            ``cancelled`` (:data:`FINAL`).
        created: ``start`` made this run now (False: it existed, nothing was started).
        created_at: when the backend started it (ISO text), if it says.
        step, total, epoch, loss: training progress (what is known of it).
        adapter_repo, adapter_revision: the commit the run pushed (a succeeded run).
        output_repo: where the run was asked to push.
        error: why it failed or was cancelled.
        log_tail: the log's last lines (shown when the run failed).
        raw: everything the backend said.
    """

    run_id: str
    state: str
    created: bool = False
    created_at: str | None = None
    step: int = 0
    total: int | None = None
    epoch: float | None = None
    loss: float | None = None
    adapter_repo: str | None = None
    adapter_revision: str | None = None
    output_repo: str | None = None
    error: str | None = None
    log_tail: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def active(self) -> bool:
        """Queued or running: the runner is busy with it."""
        return self.state in ACTIVE

    @property
    def final(self) -> bool:
        """Succeeded, failed or cancelled: it will not change any more."""
        return self.state in FINAL

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunStatus:
        """From space/app.py's JSON (``training_status``, ``start_training``)."""
        adapter = data.get("adapter") or {}
        params = data.get("params") or {}
        total = data.get("total")
        return cls(
            run_id=str(data.get("run_id") or ""),
            state=str(data.get("state")),
            created=bool(data.get("created")),
            created_at=data.get("created_at") or None,
            step=int(data.get("step") or 0),
            total=int(total) if total else None,
            epoch=None if data.get("epoch") is None else float(data["epoch"]),
            loss=None if data.get("loss") is None else float(data["loss"]),
            adapter_repo=adapter.get("repo") if isinstance(adapter, Mapping) else None,
            adapter_revision=adapter.get("revision") if isinstance(adapter, Mapping) else None,
            output_repo=params.get("output_repo") if isinstance(params, Mapping) else None,
            error=data.get("error") or None,
            log_tail=str(data.get("log_tail") or ""),
            raw=dict(data),
        )


@dataclass(frozen=True)
class LogPage:
    """A piece of a run's log.

    Attributes:
        text: the log from the asked offset (whole lines when the backend can).
        next_offset: where the next page starts.
        done: the run ended and its log has been read to the end.
        more: more can be read right now (ask again at once).
    """

    text: str
    next_offset: int
    done: bool = False
    more: bool = False


class ForeignRun(CheckFailed):
    """The runner is busy with another run: following it, or releasing, would be wrong."""

    def __init__(self, active: str, wanted: str) -> None:
        self.active = active
        super().__init__(
            f"the Space is busy with run {active}, not run {wanted}; following neither. "
            f"Wait until it ends, or follow it with --run-id {active}"
        )


class TrainingBackend(Protocol):
    """Where a training run executes; see the module docstring for the contract."""

    name: str
    target: str
    answered: bool
    reconnects: int

    def preflight(self, params: Mapping[str, Any]) -> None:
        """Have the runner check itself before a new run (no-op for a known run id)."""
        ...

    def start(self, params: Mapping[str, Any]) -> RunStatus:
        """Start ``params["run_id"]``, or return it when it exists (idempotent)."""
        ...

    def status(self, run_id: str) -> RunStatus:
        """The run now."""
        ...

    def logs(self, run_id: str, offset: int) -> LogPage:
        """The run's log from byte ``offset``."""
        ...

    def stop(self, run_id: str) -> str | None:
        """End our run cleanly, best effort within seconds; its state or None."""
        ...

    def release(self, *, ours: str | None) -> str:
        """Stop the bill; what was done, or "" when there is nothing to release."""
        ...

    def close(self) -> None:
        """Drop connections."""
        ...


__all__ = ["ACTIVE", "FINAL", "ForeignRun", "LogPage", "RunStatus", "TrainingBackend"]
