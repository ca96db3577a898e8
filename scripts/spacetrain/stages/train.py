"""The train stage: start a run on a training backend and follow it to the end.

Training runs detached where the backend puts it (the Space's app, see
:mod:`spacetrain.stages.space_backend`; the seam is :mod:`spacetrain.stages.backend`),
so this stage is only a follower and the owner of what happens around the run. Unless
the backend already knows our run id, it first has the runner check itself
(``preflight``: token, write access, model and dataset, GPU): a failed check ends the
stage at once, exit 2 (configuration) or 3 (the Hub), and the Space is released. Then
it asks ``start`` for a run with *our* run id (idempotent: a retry, or a second
``spacetrain train --run-id X``, gets the same run back and starts nothing), then
polls its status and pages its log (:mod:`spacetrain.stages.follow`), printing the
run's log lines as they come. A dropped connection, an app restart or a Space that
wakes up is not the run's end: the backend reconnects and the stage keeps following
the same run until it succeeds, fails, or the deadline passes.

When the runner is busy with a *different* run, the stage follows neither (exit 1):
it cannot know whose run that is, and pausing the Space would kill it.

Whatever the outcome of our run, the bill stops afterwards (the backend's ``release``:
pause the Space or move it to a CPU flavor) unless ``keep_running`` is set; on an
interrupt our run is stopped first (``stop``), so it is recorded as cancelled.

Records in the state: ``run_id``, ``run_state``, ``adapter_repo`` and
``adapter_revision`` (the commit the run pushed).

Modules: :mod:`~spacetrain.stages.params` (overrides, run ids, params, options),
:mod:`~spacetrain.stages.space_app` (the Gradio client), :mod:`~spacetrain.stages.follow`
(status and log lines), :mod:`~spacetrain.stages.backend` (the seam).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spacetrain import contract
from spacetrain.errors import SpacetrainError, TrainingFailed, UsageError
from spacetrain.hub import Hub, token_from_env
from spacetrain.stages.backend import FINAL, ForeignRun, RunStatus, TrainingBackend
from spacetrain.stages.follow import Follower, duration, readable
from spacetrain.stages.params import TrainOptions
from spacetrain.stages.progress import Progress, progress_for, relay
from spacetrain.stages.space_backend import SpaceBackend
from spacetrain.stages.state import PipelineState

# State key (and step output) saying why train left the Space as it is: the workflow's
# release step is skipped on it. Never written empty: an unset output reads as ''.
HOLD_KEY = "space_hold"
# State keys about one run's adapter: stale as soon as another run starts.
DOWNSTREAM_KEYS = ("adapter_revision", "adapter_dir", "report", "promoted_tag", "card_commit")


@dataclass(frozen=True)
class TrainResult:
    """How the run ended and what it produced."""

    run_id: str
    state: str
    created: bool
    adapter_repo: str | None
    adapter_revision: str | None
    step: int = 0
    total: int | None = None
    loss: float | None = None
    seconds: float = 0.0
    reconnects: int = 0
    released: str = ""

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object."""
        return dataclasses.asdict(self)


def make_backend(
    options: TrainOptions,
    hub: Hub,
    *,
    deadline: float,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
) -> TrainingBackend:
    """The backend ``options`` asks for (today: the Space's app, the only one)."""
    return SpaceBackend(
        options.space,
        hub,
        deadline=deadline,
        after_training=options.after_training,
        progress=progress,
        clock=clock,
    )


def check_release_rights(hub: Hub, space: str) -> None:
    """HF_TOKEN must be able to pause ``space`` before anything starts there: a run it
    starts but cannot stop would bill on (a read token can start runs on a private
    Space it can read). The rule is whoami's, as in preflight (``train.write_access``).

    Raises:
        UsageError: whoami says the token may not write the Space (exit 2).
    """
    if token_from_env() is None:
        return  # the Space's API refuses or answers on its own terms; nothing to stop
    who = hub.call("check the token in HF_TOKEN", hub.api.whoami)
    can, why = contract.trainer.write_access(who, "space", space)
    if can is False:
        raise UsageError(
            f"HF_TOKEN cannot pause {space} ({why}), so a run it started could not be "
            "stopped: use a token that can write the Space"
        )


def _say_start(status: RunStatus, backend: TrainingBackend, progress: Progress) -> None:
    if status.created:
        progress(f"started run {status.run_id} on {backend.target}")
    else:
        progress(
            f"run {status.run_id} already exists on {backend.target} "
            f"(started {status.created_at or 'earlier'}, {status.state}): "
            "following it, starting nothing"
        )


def run_training(
    hub: Hub,
    options: TrainOptions,
    state: PipelineState,
    *,
    progress: Progress | None = None,
    backend: TrainingBackend | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> TrainResult:
    """Start (or rejoin) the run, follow it, record it, release the GPU.

    ``backend`` defaults to :func:`make_backend`'s (built here, closed here).

    Raises:
        TrainingFailed: the run failed (its error and log tail were printed); exit 1.
        ForeignRun: the Space is busy with another run (nothing released); exit 1.
        SpaceBuildFailed: the Space crashed or was paused underneath us; exit 1.
        StageTimeout: the run did not end before ``options.timeout``; exit 3.
        UsageError, AuthError, HubUnreachable: bad params, token or Hub (exit 2/3).
    """
    progress = progress or progress_for("train")
    started = clock()
    deadline = started + options.timeout
    hold: str | None = None  # why the Space must be left as it is
    outcome: TrainResult | None = None
    if state.data.pop(HOLD_KEY, None) is not None:  # a hold of an earlier train is stale
        state.save()
    runner = backend or make_backend(
        options, hub, deadline=deadline, progress=progress, clock=clock
    )
    try:
        try:
            runner.preflight(options.params)
            status = runner.start(options.params)
            _say_start(status, runner, progress)
        except ForeignRun as exc:
            hold = f"another run is active ({exc.active}): pausing would end it"
            state.update(**{HOLD_KEY: f"the Space is training run {exc.active}, not ours"})
            raise
        except UsageError:
            if not runner.answered:  # no such Space, or a refused token: nothing to release
                hold = "it never answered"
            raise
        try:  # from here on the run is ours: a cancel stops it before the release
            _record_start(state, options, status)
            follower = Follower(
                runner,
                options.run_id,
                poll_interval=options.poll_interval,
                deadline=deadline,
                progress=progress,
                clock=clock,
                sleep=sleep,
            )
            final = follower.run()
        except KeyboardInterrupt:
            stopped = runner.stop(options.run_id)
            if stopped in FINAL:  # the next train starts a new run, not this one
                state.update(run_state=stopped)
            raise
        outcome = _finish(
            state, options, final, status.created, clock() - started, runner, progress
        )
    except KeyboardInterrupt:
        progress(f"interrupted while following run {options.run_id}")
        raise
    finally:
        if backend is None:
            runner.close()
        released = _release(runner, options, hold, failed=outcome is None, progress=progress)
    assert outcome is not None  # every other way out of the block raised
    return dataclasses.replace(outcome, released=released)


def _record_start(state: PipelineState, options: TrainOptions, status: RunStatus) -> None:
    values: dict[str, Any] = {"run_id": options.run_id, "run_state": status.state}
    repo = status.output_repo or options.params.get("output_repo")
    if repo:
        values["adapter_repo"] = repo
    if state.get("run_id") != options.run_id:
        values.update(dict.fromkeys(DOWNSTREAM_KEYS))
    state.update(**values)


def _finish(
    state: PipelineState,
    options: TrainOptions,
    status: RunStatus,
    created: bool,
    seconds: float,
    backend: TrainingBackend,
    progress: Progress,
) -> TrainResult:
    run_id = options.run_id
    if status.state in ("failed", "cancelled"):  # cancelled: someone pressed Stop
        state.update(run_state=status.state, adapter_revision=None)
        tail = readable(status.log_tail)
        if tail:
            progress(f"---- last {len(tail)} line(s) of run {run_id}'s log ----")
            for line in tail:
                relay(line)
            progress("----")
        verb = "was cancelled" if status.state == "cancelled" else "failed"
        raise TrainingFailed(f"run {run_id} {verb}: {status.error or 'no error recorded'}")
    repo, revision = status.adapter_repo, status.adapter_revision
    if not revision:
        state.update(run_state="succeeded", adapter_revision=None)
        raise TrainingFailed(
            f"run {run_id} succeeded but pushed no adapter (was it started with push=false?)"
        )
    expected = options.params.get("output_repo")
    if expected and repo != expected:
        progress(f"note: run {run_id} pushed to {repo}, not to {expected}")
    state.update(run_state="succeeded", adapter_repo=repo, adapter_revision=revision)
    reconnects = backend.reconnects
    progress(
        f"run {run_id} succeeded in {duration(seconds)}: adapter {repo}@{revision}"
        + (f" ({reconnects} reconnect(s))" if reconnects else "")
    )
    return TrainResult(
        run_id=run_id,
        state="succeeded",
        created=created,
        adapter_repo=repo,
        adapter_revision=revision,
        step=status.step,
        total=status.total,
        loss=status.loss,
        seconds=seconds,
        reconnects=reconnects,
    )


def _release(
    backend: TrainingBackend,
    options: TrainOptions,
    hold: str | None,
    *,
    failed: bool,
    progress: Progress,
) -> str:
    if options.keep_running:
        progress(f"--keep-running: {options.space} keeps its hardware (and its bill)")
        return "kept running"
    if hold:
        progress(f"{options.space} left as it is: {hold}")
        return "not released"
    try:
        return backend.release(ours=options.run_id)
    except SpacetrainError as exc:
        if failed:  # the run's own failure is the error to report; say this one too
            progress(f"warning: could not release the GPU: {exc}")
            return "release failed"
        raise


__all__ = [
    "DOWNSTREAM_KEYS",
    "HOLD_KEY",
    "TrainResult",
    "check_release_rights",
    "make_backend",
    "run_training",
]
