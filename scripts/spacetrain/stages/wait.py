"""Wait until the Space runs *the synced commit*, not merely until it says RUNNING.

A pushed Space keeps serving its previous commit while the new one builds
(RUNNING_BUILDING, then RUNNING_APP_STARTING): a client that trusted "RUNNING" would
start training on the old code. So the runtime's ``sha`` must equal the commit `sync`
recorded (``space_commit`` in the state), on the hardware that was requested.

What each stage means here:

- BUILDING, APP_STARTING, RUNNING_* or RUNNING on another commit: keep polling.
- BUILD_ERROR, CONFIG_ERROR, NO_APP_FILE, RUNTIME_ERROR of this commit: exit 1 with the
  Hub's error message and the tail of the build (or run) log on stderr.
- PAUSED, STOPPED, SLEEPING: restart the Space once (it says so) and keep waiting.
- the deadline: exit 3 (:class:`StageTimeout`) saying what the Space was doing.

Polling starts fast (a first answer within a tenth of a second, which keeps tests
quick) and backs off to about ten seconds, resetting whenever the stage changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from spacetrain.errors import CheckFailed, SpaceBuildFailed, StageTimeout
from spacetrain.hub import Hub
from spacetrain.stages.progress import Progress, progress_for
from spacetrain.stages.space_runtime import (
    FAILED,
    STOPPED,
    Runtime,
    get_runtime,
    log_tail,
    short,
)

BUILD_LOG_STAGES = frozenset({"BUILD_ERROR", "CONFIG_ERROR", "NO_APP_FILE"})


@dataclass(frozen=True)
class Backoff:
    """Seconds between polls: ``initial``, times ``factor`` each poll, at most ``maximum``."""

    initial: float = 0.1
    factor: float = 1.5
    maximum: float = 10.0


@dataclass(frozen=True)
class WaitResult:
    """The Space runs ``commit``.

    Attributes:
        space, commit: what was waited for.
        stage: ``RUNNING``.
        hardware: the flavor it runs on.
        elapsed: seconds waited.
        polls: runtime reads made.
        restarted: whether `wait` restarted a paused or sleeping Space.
    """

    space: str
    commit: str
    stage: str
    hardware: str | None
    elapsed: float
    polls: int
    restarted: bool

    def to_json(self) -> dict[str, object]:
        """The result as a JSON object."""
        return {
            "space": self.space,
            "commit": self.commit,
            "stage": self.stage,
            "hardware": self.hardware,
            "elapsed_s": round(self.elapsed, 3),
            "polls": self.polls,
            "restarted": self.restarted,
        }


class _Waiter:
    """One wait: the loop's memory (last stage seen, restart done, head cache)."""

    def __init__(
        self,
        hub: Hub,
        space: str,
        commit: str,
        *,
        timeout: float,
        backoff: Backoff,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        progress: Progress,
    ) -> None:
        self.hub, self.space, self.commit = hub, space, commit
        self.progress = progress
        self.timeout, self.backoff = timeout, backoff
        self.sleep, self.clock = sleep, clock
        self.start = clock()
        self.polls = 0
        self.restarted = False
        self.left_stopped_after_restart = False
        self.last: tuple[str, str | None, str | None] | None = None
        self.warned_no_sha = False

    def elapsed(self) -> float:
        return self.clock() - self.start

    def say(self, message: str) -> None:
        self.progress(f"{self.elapsed():7.1f}s  {message}")

    def head(self) -> str:
        info = self.hub.call(
            f"read Space {self.space}", self.hub.api.repo_info, self.space, repo_type="space"
        )
        return str(info.sha)

    def runs_commit(self, rt: Runtime) -> bool:
        """Whether the runtime is about our commit (the repo head when the Hub omits it)."""
        if rt.sha is not None:
            return rt.sha == self.commit
        if not self.warned_no_sha:
            self.say("the runtime does not name its commit: judging by the Space's head commit")
            self.warned_no_sha = True
        return self.head() == self.commit

    def report(self, rt: Runtime, ours: bool) -> None:
        key = (rt.stage, rt.sha, rt.hardware)
        if key == self.last:
            return
        self.last = key
        whose = "the synced commit" if ours else f"not yet {short(self.commit)}"
        if rt.hardware is None:
            hardware = f"{rt.requested_hardware or '?'} (requested)"
        elif rt.requested_hardware and rt.requested_hardware != rt.hardware:
            hardware = f"{rt.hardware}, switching to {rt.requested_hardware}"
        else:
            hardware = rt.hardware
        self.say(f"{rt.stage:<20} at {short(rt.sha)} ({whose}) on {hardware}")

    def fail(self, rt: Runtime) -> SpaceBuildFailed:
        build = rt.stage in BUILD_LOG_STAGES
        tail = log_tail(self.hub, self.space, build=build)
        if tail:
            self.say(f"last {len(tail)} line(s) of the {'build' if build else 'run'} log:")
            for line in tail:
                self.progress(f"  | {line}")
        detail = (rt.error or "").strip().splitlines()
        reason = f": {detail[0]}" if detail else ""
        return SpaceBuildFailed(
            f"Space {self.space} reached {rt.stage} at {short(self.commit)}{reason} "
            f"(`spacetrain logs{' --build' if build else ''}` shows the whole log)"
        )

    def superseded(self, rt: Runtime) -> None:
        """A settled runtime on another commit: fine while the head is ours, else give up."""
        head = self.head()
        if head != self.commit:
            raise CheckFailed(
                f"Space {self.space} moved on: its head is {short(head)}, not the synced "
                f"{short(self.commit)} (another push?); run `spacetrain sync` again"
            )

    def restart(self, rt: Runtime) -> None:
        self.say(f"the Space is {rt.stage}: restarting it (once)")
        self.hub.call(f"restart Space {self.space}", self.hub.api.restart_space, self.space)
        self.restarted = True

    def run(self) -> WaitResult:
        delay = self.backoff.initial
        while True:
            rt = get_runtime(self.hub, self.space)
            self.polls += 1
            changed = (rt.stage, rt.sha, rt.hardware) != self.last
            ours = self.runs_commit(rt)
            self.report(rt, ours)
            if changed:
                delay = self.backoff.initial
            if self.restarted and rt.stage not in STOPPED:
                self.left_stopped_after_restart = True
            if ours and rt.stage == "RUNNING":
                if rt.requested_hardware is None or rt.hardware == rt.requested_hardware:
                    elapsed = self.elapsed()
                    self.say(f"the Space runs {short(self.commit)} on {rt.hardware or '?'}")
                    return WaitResult(
                        self.space,
                        self.commit,
                        rt.stage,
                        rt.hardware,
                        elapsed,
                        self.polls,
                        self.restarted,
                    )
            elif ours and rt.stage in FAILED:
                raise self.fail(rt)
            elif rt.stage in STOPPED:
                if not self.restarted:
                    self.restart(rt)
                    delay = self.backoff.initial
                elif self.left_stopped_after_restart:
                    raise SpaceBuildFailed(
                        f"Space {self.space} went {rt.stage} again after a restart; "
                        "check its sleep time and `spacetrain status`"
                    )
            elif not ours and (rt.stage == "RUNNING" or rt.stage in FAILED) and changed:
                self.superseded(rt)
            remaining = self.timeout - self.elapsed()
            if remaining <= 0:
                raise StageTimeout(
                    f"Space {self.space} does not run {short(self.commit)} after "
                    f"{self.timeout:.0f} s: it is {rt.stage} at {short(rt.sha)} on "
                    f"{rt.hardware or 'no hardware'} (requested {rt.requested_hardware or '?'})"
                )
            self.sleep(min(delay, remaining))
            delay = min(delay * self.backoff.factor, self.backoff.maximum)


def wait(
    hub: Hub,
    space: str,
    commit: str,
    *,
    timeout: float = 3600.0,
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
) -> WaitResult:
    """Poll the Space until it runs ``commit`` (RUNNING, on the requested hardware).

    Args:
        hub: the Hub client.
        space: the Space id.
        commit: the full sha `sync` recorded (``space_commit``).
        timeout: seconds before giving up.
        backoff: poll intervals (default: 0.1 s growing to 10 s).
        sleep, clock: injectable for tests of the loop itself.

    Raises:
        SpaceBuildFailed: this commit failed to build or start, or the Space stopped
            again after a restart (exit 1).
        CheckFailed: the Space's head moved past the commit (exit 1).
        StageTimeout: the deadline passed (exit 3).
        AuthError, UsageError, HubUnreachable: from the Hub calls (exit 2 or 3).
    """
    progress = progress or progress_for("wait")
    progress(f"waiting for {space} to run {short(commit)} (timeout {timeout:.0f} s)")
    waiter = _Waiter(
        hub,
        space,
        commit,
        timeout=timeout,
        backoff=backoff or Backoff(),
        sleep=sleep,
        clock=clock,
        progress=progress,
    )
    return waiter.run()


__all__ = ["Backoff", "WaitResult", "wait"]
