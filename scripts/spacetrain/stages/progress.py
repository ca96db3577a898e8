"""Progress lines: one type, one output style, injected into every stage.

A stage says what it is doing through a :data:`Progress` function it is given (keyword
``progress``); it never prints. The command line gives each stage :func:`progress_for`
its name, so every line in a CI log reads ``[stage] message`` on stderr, flushed at
once; results go to stdout from the command modules. A runner of several stages (the
pipeline) is given a :data:`ProgressFactory` instead and hands each stage its own. The
training run's own log, relayed line by line, is not ours to tag: :func:`relay`.
Tests inject a list's ``append``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Progress = Callable[[str], None]
# What a runner of several stages (the pipeline) is given: a stage name -> its Progress.
ProgressFactory = Callable[[str], Progress]


def progress_for(stage: str) -> Progress:
    """``[stage] message`` lines on stderr, flushed for live CI logs."""

    def emit(message: str) -> None:
        print(f"[{stage}] {message}", file=sys.stderr, flush=True)

    return emit


def relay(line: str) -> None:
    """A line of someone else's log (the training run's, relayed by the train stage): not
    a progress line of ours, so it goes to stderr as it is, with its own ``[tag]``."""
    print(line, file=sys.stderr, flush=True)


def quiet(message: str) -> None:
    """A progress function that says nothing (a probe whose lines nobody needs)."""


__all__ = ["Progress", "ProgressFactory", "progress_for", "quiet", "relay"]
