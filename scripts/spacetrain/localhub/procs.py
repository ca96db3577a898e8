"""A Space's whole process tree, ended the way a container ends.

On the Hub a Space is a container: pausing, stopping, restarting, sleeping or an
out-of-memory kill ends every process in it, including one that detached itself
(``start_new_session=True``, as ``space/app.py`` starts its training supervisor).
localhub runs apps as plain processes, so a process group is not enough: a detached
child leaves it. Each app is started with a unique :data:`TAG_ENV` value in its
environment instead; children inherit it through fork and exec, and
``/proc/<pid>/environ`` shows it for as long as they live, whatever their session,
group or parent. Ending the Space is then "signal every process carrying the tag,
again, until none is left" (a process forking meanwhile is caught by the next pass).

Chosen over ``PR_SET_CHILD_SUBREAPER`` (it would make the whole localhub process, or the
pytest process hosting it, the parent of every orphan of every Space, with no way to
tell whose orphan it is) and over cgroups (they need privileges). A process that
scrubs its own environment could escape; Space code does not do that.
Linux only (``/proc``); elsewhere the app's process group is all that is ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

TAG_ENV = "LOCALHUB_CONTAINER_ID"
_PROC = Path("/proc")


def new_tag() -> str:
    """A value no other app carries (one per app process started)."""
    return uuid.uuid4().hex


def tagged(tag: str) -> list[int]:
    """Live processes whose environment carries ``TAG_ENV=tag`` (zombies show none)."""
    needle = f"{TAG_ENV}={tag}".encode()
    pids = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(_PROC):
            if not entry.name.isdigit():
                continue
            try:
                environ = (_PROC / entry.name / "environ").read_bytes()
            except OSError:  # gone meanwhile, or not ours
                continue
            if needle in environ.split(b"\0"):
                pids.append(int(entry.name))
    return pids


def signal_all(tag: str, sig: int) -> int:
    """Send ``sig`` to every process carrying ``tag``; how many there were."""
    pids = tagged(tag)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return len(pids)


def kill_all(tag: str, timeout: float = 5.0) -> bool:
    """SIGKILL every process carrying ``tag``, pass after pass, until none is left.

    Returns False if some were still there after ``timeout`` (a process in
    uninterruptible sleep); True once the tree is gone.
    """
    deadline = time.monotonic() + timeout
    while signal_all(tag, signal.SIGKILL):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


__all__ = ["TAG_ENV", "kill_all", "new_tag", "signal_all", "tagged"]
