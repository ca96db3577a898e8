"""Following one run: its status polled, its log streamed, progress lines with an ETA.

Backend-neutral: :class:`Follower` reads a :class:`~spacetrain.stages.backend.TrainingBackend`
until the run reaches a final state or the deadline passes, printing the run's own log
lines (event lines dropped, tokens masked) and, every :data:`PROGRESS_EVERY` seconds
while the numbers change, ``run X running: step 12/40 (30%), ..., ETA 3m12s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spacetrain import contract
from spacetrain.errors import StageTimeout
from spacetrain.redact import mask
from spacetrain.stages.backend import RunStatus, TrainingBackend
from spacetrain.stages.progress import Progress, relay

PROGRESS_EVERY = 10.0  # seconds between progress lines while the run's numbers change


@dataclass
class _Pace:
    """ETA from the steps this follower has seen, and when to print next."""

    progress: Progress
    clock: Callable[[], float] = time.monotonic
    first: tuple[float, int] | None = None
    last_print: float = float("-inf")
    last_key: tuple[Any, ...] = field(default_factory=tuple)

    def eta(self, step: int, total: int | None) -> float | None:
        now = self.clock()
        if self.first is None or step < self.first[1]:
            self.first = (now, step)
            return None
        t0, s0 = self.first
        if not total or step <= s0:
            return None
        return (now - t0) / (step - s0) * max(0, total - step)

    def show(self, status: RunStatus) -> None:
        eta = self.eta(status.step, status.total)
        key = (status.state, status.step)
        now = self.clock()
        changed_state = key[0] != (self.last_key[0] if self.last_key else None)
        if key == self.last_key or (not changed_state and now - self.last_print < PROGRESS_EVERY):
            return
        self.last_key, self.last_print = key, now
        self.progress(progress_line(status, eta))


def progress_detail(status: RunStatus, eta: float | None = None) -> str:
    """``step 12/40 (30%), epoch 1.20, loss 2.3456, ETA 3m12s`` (what is known of it)."""
    parts = []
    step, total = status.step, status.total
    if total:
        parts.append(f"step {step}/{total} ({100 * step // max(1, int(total))}%)")
    elif step:
        parts.append(f"step {step}")
    if status.epoch is not None:
        parts.append(f"epoch {status.epoch:.2f}")
    if status.loss is not None:
        parts.append(f"loss {status.loss:.4f}")
    if eta is not None:
        parts.append(f"ETA {duration(eta)}")
    return ", ".join(parts)


def progress_line(status: RunStatus, eta: float | None) -> str:
    """``run X running: step 12/40 (30%), epoch 1.20, loss 2.3456, ETA 3m12s``."""
    detail = progress_detail(status, eta)
    return f"run {status.run_id} {status.state}" + (f": {detail}" if detail else "")


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def readable(text: str) -> list[str]:
    """The log's lines for people: event lines dropped, anything token-like masked."""
    return [
        mask(line)
        for line in text.splitlines()
        if line.strip() and not line.startswith(contract.EVENT_PREFIX)
    ]


class Follower:
    """Polls one run's status and streams its log, from a byte offset, until it ends.

    Progress lines go to ``progress``; the run's own log lines, as they are, to ``log``.
    """

    def __init__(
        self,
        backend: TrainingBackend,
        run_id: str,
        *,
        poll_interval: float,
        deadline: float,
        progress: Progress,
        log: Progress = relay,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.backend = backend
        self.log = log
        self.run_id = run_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.progress = progress
        self.offset = 0
        self._clock = clock
        self._sleep = sleep
        self._pace = _Pace(progress, clock)

    def drain_logs(self) -> bool:
        """Print every complete log line past the offset; True when the log is done."""
        for _ in range(10_000):
            page = self.backend.logs(self.run_id, self.offset)
            for line in readable(page.text):
                self.log(line)
            moved = page.next_offset > self.offset
            self.offset = page.next_offset
            if page.done:
                return True
            if not moved or not page.more:
                return False
        return False

    def run(self) -> RunStatus:
        """Follow to a final state; returns the last status."""
        while True:
            status = self.backend.status(self.run_id)
            if status.final:
                for _ in range(20):  # the log's last lines may land just after the state
                    if self.drain_logs():
                        break
                    self._sleep(min(0.5, self.poll_interval))
                return status
            self.drain_logs()
            self._pace.show(status)
            if self._clock() >= self.deadline:
                detail = progress_detail(status)
                raise StageTimeout(
                    f"run {self.run_id} is still {status.state} at the deadline"
                    + (f" ({detail})" if detail else "")
                    + "; the Space is released unless --keep-running, which stops the run"
                )
            self._sleep(max(0.0, min(self.poll_interval, self.deadline - self._clock())))


__all__ = ["PROGRESS_EVERY", "Follower", "duration", "progress_detail", "progress_line", "readable"]
