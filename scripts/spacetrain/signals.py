"""SIGTERM as an interrupt, so every command's ``finally`` runs when CI cancels a job.

GitHub cancels a job with SIGINT, then SIGTERM (and SIGKILL after that); a process that
dies on SIGTERM skips its ``finally`` blocks, and a Space left RUNNING bills GPU time.
The CLI's one error boundary (:func:`spacetrain.cli.main`) runs every command inside
:func:`sigterm_as_interrupt`, so the train stage and the pipeline release the Space (or
say why they hold it) and localhub stops its apps, whichever signal arrives.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt for the block (main thread only: signals go
    there); the previous handler is put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["sigterm_as_interrupt"]
