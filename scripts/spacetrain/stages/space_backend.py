"""The first training backend: the Space's own Gradio API (space/app.py).

Training runs detached inside the Space; :class:`SpaceBackend` keeps the
:class:`~spacetrain.stages.backend.TrainingBackend` contract with the app's endpoints:

- ``preflight`` -> ``training_status`` (a known run is rejoined unchecked), else
  ``training_preflight``: token, write access, model and dataset, GPU;
- ``start`` -> ``start_training`` (idempotent by run id; "run X is still active" is a
  :class:`~spacetrain.stages.backend.ForeignRun`);
- ``status`` / ``logs`` -> ``training_status`` / ``training_logs`` (by byte offset);
- ``stop`` -> ``stop_training`` within seconds;
- ``release`` -> the release stage: pause the Space or move it to a CPU flavor, held
  when it trains a run that is not ours.

``SPACETRAIN_TRIGGER`` (the Space's start guard) is added to the JSON at each call
and never kept in options, state or logs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from spacetrain import contract
from spacetrain.errors import HubUnreachable, TrainingFailed, UsageError
from spacetrain.hub import Hub
from spacetrain.redact import mask
from spacetrain.stages.backend import ForeignRun, LogPage, RunStatus
from spacetrain.stages.progress import Progress
from spacetrain.stages.release import release
from spacetrain.stages.setup import trigger_from_env
from spacetrain.stages.space_app import SpaceApp, is_app_error, one_line

# Cancelled (SIGINT/SIGTERM): stop_training waits this long for the run to end, and the
# call gets this long in all; CI sends SIGKILL some seconds after its SIGTERM.
STOP_WAIT = 5.0
STOP_CALL_DEADLINE = 8.0
LOG_PAGE = 64 * 1024
_BUSY = re.compile(r"run (\S+) is still active")


def with_trigger(params: Mapping[str, Any]) -> str:
    """``params`` as the JSON the Space takes, with ``SPACETRAIN_TRIGGER`` when it is set.

    Added only here, at the call: the trigger is never part of the options, the state or
    a log line.
    """
    trigger = trigger_from_env()
    return json.dumps({**params, contract.TRIGGER_KEY: trigger} if trigger else dict(params))


def _refused(exc: BaseException) -> UsageError:
    """The Space refused the params (or the trigger): exit 2, one line naming the parameter."""
    return UsageError(f"the Space refused the training parameters: {one_line(exc)}")


class SpaceBackend:
    """Training on a Space through its app (see the module docstring).

    Args:
        space: the Space id (``owner/name``) or the app's URL (nothing to release then).
        hub: the Hub client (runtime checks while reconnecting, the release).
        deadline: ``clock()`` value after which lost connections are given up (exit 3).
        after_training: ``"pause"`` or a CPU flavor, for :meth:`release`.
        progress: where the backend's own lines go (reconnects, the self-check, stop).
    """

    name = "space"

    def __init__(
        self,
        space: str,
        hub: Hub,
        *,
        deadline: float,
        after_training: str = "pause",
        progress: Progress,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = space
        self.hub = hub
        self.after_training = after_training
        self.progress = progress
        self._clock = clock
        self.app = SpaceApp(
            space, hub, deadline=deadline, progress=progress, clock=clock, sleep=sleep
        )

    @property
    def answered(self) -> bool:
        """The app answered at least once: the Space is there (and may bill)."""
        return self.app.answered

    @property
    def reconnects(self) -> int:
        """Lost-and-found connections to the app so far."""
        return self.app.reconnects

    def close(self) -> None:
        """Stop the client's background threads."""
        self.app.close()

    def __enter__(self) -> SpaceBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def preflight(self, params: Mapping[str, Any]) -> None:
        """Before a NEW run, ask the Space to check itself (``training_preflight``).

        A missing or rejected token, an output repo it cannot write, a model or dataset it
        cannot read: each would otherwise surface after the GPU has billed for an hour. A
        run the Space already knows by our id is followed as it is, unchecked; a failed
        check while another run is active is that run's business (:class:`ForeignRun`).

        Raises:
            UsageError: a check failed that the configuration must fix (exit 2).
            HubUnreachable: the Space could not reach the Hub (exit 3).
            ForeignRun: the check failed and the Space is busy with another run.
        """
        run_id = str(params["run_id"])
        try:
            self.app.call("/training_status", run_id)
            return  # the Space knows this run: rejoin it
        except Exception as exc:
            if not is_app_error(exc):
                raise
        try:
            report = self.app.call("/training_preflight", with_trigger(params))
        except Exception as exc:
            if not is_app_error(exc):
                raise
            raise _refused(exc) from None
        checks = [c for c in report.get("checks") or [] if isinstance(c, dict)]
        if report.get("ok"):
            names = ", ".join(str(c.get("name")) for c in checks)
            self.progress(f"the Space checked itself: {names or 'no checks'} ok")
            return
        for check in checks:
            if not check.get("ok"):
                self.progress(
                    mask(f"self-check failed: {check.get('name')}: {check.get('detail')}")
                )
        active = report.get("active_run")
        if active and active != run_id:
            raise ForeignRun(str(active), run_id)  # held: releasing would kill that run
        error = mask(str(report.get("error") or "no detail"))
        message = f"the Space's self-check failed: {error}"
        if report.get("exit_code") == HubUnreachable.exit_code:
            raise HubUnreachable(message)
        raise UsageError(message)

    def start(self, params: Mapping[str, Any]) -> RunStatus:
        """Ask for our run (``start_training``); a different active run is a ForeignRun."""
        run_id = str(params["run_id"])
        try:
            answer = self.app.call("/start_training", with_trigger(params))
        except Exception as exc:
            if not is_app_error(exc):
                raise
            busy = _BUSY.search(str(exc))
            if busy:
                raise ForeignRun(busy.group(1), run_id) from None
            raise _refused(exc) from None
        if answer.get("run_id") != run_id:
            raise ForeignRun(str(answer.get("run_id")), run_id)
        return RunStatus.from_json(answer)

    def _lost(self, exc: BaseException, run_id: str) -> BaseException:
        if is_app_error(exc):
            return TrainingFailed(
                f"the Space no longer knows run {run_id} ({one_line(exc)}); "
                "was it restarted without persistent storage?"
            )
        return exc

    def status(self, run_id: str) -> RunStatus:
        """``training_status``; a run the app does not know is a TrainingFailed."""
        try:
            return RunStatus.from_json(self.app.call("/training_status", run_id))
        except Exception as exc:
            raise self._lost(exc, run_id) from None

    def logs(self, run_id: str, offset: int) -> LogPage:
        """``training_logs`` from byte ``offset``, a page of at most :data:`LOG_PAGE`."""
        try:
            page = self.app.call("/training_logs", run_id, offset, LOG_PAGE)
        except Exception as exc:
            raise self._lost(exc, run_id) from None
        nxt = int(page.get("next_offset", offset))
        return LogPage(
            text=str(page.get("text", "")),
            next_offset=nxt,
            done=bool(page.get("done")),
            more=nxt < int(page.get("size", 0)),
        )

    def stop(self, run_id: str) -> str | None:
        """Ask the Space to stop OUR run (``stop_training``) before the Space is released.

        Pausing alone also ends the run, but as a killed process whose record says it
        "ended without recording a result"; stopped first, it ends cleanly and is recorded
        as cancelled. Best effort within seconds: the release must follow whatever happens.
        Returns the run's state as the Space answered it, or None.
        """
        self.progress(f"stopping run {run_id} on {self.target}")
        app = self.app
        saved, app.deadline = app.deadline, min(app.deadline, self._clock() + STOP_CALL_DEADLINE)
        try:
            status = app.call("/stop_training", with_trigger({"run_id": run_id, "wait": STOP_WAIT}))
        except Exception as exc:  # an older app without the endpoint, a lost Space: release anyway
            self.progress(f"could not stop run {run_id}: {one_line(exc)}")
            return None
        finally:
            app.deadline = saved
        state = str(status.get("state"))
        self.progress(f"run {run_id} is {state}")
        return state

    def release(self, *, ours: str | None) -> str:
        """Stop the GPU bill with the release stage: ``paused``, ``downgraded``,
        ``already-…``, or ``held`` when the Space trains a run that is not ``ours``;
        ``"not a Space"`` for an app URL (nothing to release there)."""
        if self.target.startswith(("http://", "https://")):
            self.progress(f"{self.target} is a URL, not a Space id: nothing to release")
            return "not a Space"
        done = release(
            self.hub,
            self.target,
            after_training=self.after_training,
            ours=ours,
            progress=self.progress,
        )
        return done.action


__all__ = ["LOG_PAGE", "STOP_CALL_DEADLINE", "STOP_WAIT", "SpaceBackend", "with_trigger"]
