"""Stop the GPU bill once training is over, whether it succeeded or not.

DESIGN.md's reliability rule: after training the Space stops billing GPU time. With
``after_training = "pause"`` the Space is paused (nothing runs, nothing is billed, only
``restart_space`` brings it back: the next `sync` + `wait` does that). With a CPU flavor
(``"cpu-basic"``) the Space is moved to it: it keeps serving its UI on free hardware.

It is idempotent, so it can sit in a ``finally`` and in an ``if: always()`` workflow step
at once: an already paused Space, or one already on the flavor, is left alone and no
call that changes anything is made.

It is also the one place that decides whether releasing is safe, for every entry point
(`spacetrain release`, the train stage, the pipeline, the workflow's release step): a
Space that is training a run that is not ``ours`` is held, not paused (pausing would end
someone else's run), and the result says why.

Example (the training stage, after following a run)::

    from spacetrain.stages.release import release
    result = release(hub, config.space, after_training=config.after_training)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from spacetrain.config import SPACE_FLAVORS
from spacetrain.errors import UsageError
from spacetrain.hub import Hub
from spacetrain.stages.progress import Progress, progress_for
from spacetrain.stages.space_runtime import SERVING, Runtime, active_run, get_runtime


@dataclass(frozen=True)
class ReleaseResult:
    """What `release` did.

    Attributes:
        space: the Space id.
        action: ``paused``, ``already-paused``, ``downgraded``, ``already-downgraded``, or
            ``held`` (the Space trains a run that is not ours; nothing was changed).
        stage: the Space's stage afterwards.
        hardware: the requested flavor afterwards.
        changed: whether a call that changes the Space was made.
        reason: why the Space was held (``None`` otherwise).
    """

    space: str
    action: str
    stage: str
    hardware: str | None
    changed: bool
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object (``spacetrain release`` prints it)."""
        return asdict(self)


def untouched(space: str | None, before: str, *, progress: Progress | None = None) -> None:
    """Say why an interrupted command leaves the Space as it is: it stopped ``before`` it
    changed anything there, so whatever the Space does (and bills) is not this run's."""
    which = space or "the Space"
    progress = progress or progress_for("release")
    progress(
        f"interrupted {before}: {which} was not touched by this run and is left as it was; "
        "`spacetrain release` pauses it",
    )


def release(
    hub: Hub,
    space: str,
    *,
    after_training: str = "pause",
    ours: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> ReleaseResult:
    """Pause ``space``, or move it to the CPU flavor ``after_training``, unless it trains
    a run that is not ``ours``.

    Args:
        hub: the Hub client (``Hub.from_env()``).
        space: the Space id, e.g. ``owner/kwanzaa-training``.
        after_training: ``"pause"`` or a Space flavor (``[tool.spacetrain] after_training``).
        ours: the run id this pipeline started (its state's ``run_id``); a run with
            another id that is queued or running holds the Space as it is.
        force: release even then (a person's decision to end that run).

    Returns:
        A :class:`ReleaseResult`; never an error for a Space already released.

    Raises:
        UsageError: ``after_training`` is not "pause" or a flavor; no such Space (exit 2).
        AuthError: the token may not manage the Space (exit 2).
        HubUnreachable: the Hub kept failing until the retry deadline (exit 3): the
            Space may still be billing, and the message says so.
    """
    if after_training != "pause" and after_training not in SPACE_FLAVORS:
        raise UsageError(
            f"after_training {after_training!r} must be 'pause' or a Space flavor "
            f"({', '.join(SPACE_FLAVORS)})"
        )
    progress = progress or progress_for("release")
    before = get_runtime(hub, space)
    if before.stage in SERVING and not force:
        running = active_run(hub, space)
        if running is not None and running != ours:
            reason = (
                f"it is training run {running}, which is not "
                + (f"this pipeline's run {ours}" if ours else "one this pipeline started")
                + "; pausing would end it"
            )
            progress(f"{space} left as it is: {reason}")
            return ReleaseResult(
                space, "held", before.stage, before.requested_hardware, False, reason
            )
    if after_training == "pause":
        return _pause(hub, space, before, progress)
    return _downgrade(hub, space, before, after_training, progress)


def _pause(hub: Hub, space: str, before: Runtime, progress: Progress) -> ReleaseResult:
    if before.stage == "PAUSED":
        progress(f"{space} is already paused: nothing is billed")
        hardware = before.requested_hardware
        return ReleaseResult(space, "already-paused", before.stage, hardware, False)
    progress(f"pausing {space} ({before.stage} on {before.requested_hardware or '?'})")
    after = Runtime.of(hub.call(f"pause Space {space}", hub.api.pause_space, space))
    progress(f"{space} is {after.stage}: no more GPU time is billed")
    return ReleaseResult(space, "paused", after.stage, after.requested_hardware, True)


def _downgrade(
    hub: Hub, space: str, before: Runtime, flavor: str, progress: Progress
) -> ReleaseResult:
    if before.requested_hardware == flavor:
        progress(f"{space} is already on {flavor}")
        return ReleaseResult(space, "already-downgraded", before.stage, flavor, False)
    progress(f"moving {space} from {before.requested_hardware or '?'} to {flavor}")
    after = Runtime.of(
        hub.call(
            f"request {flavor} hardware for Space {space}",
            hub.api.request_space_hardware,
            space,
            flavor,
        )
    )
    progress(f"{space} now requests {after.requested_hardware} ({after.stage})")
    return ReleaseResult(space, "downgraded", after.stage, after.requested_hardware, True)


__all__ = ["ReleaseResult", "release"]
