"""spacetrain.signals: SIGTERM and SIGINT become Interrupted inside the CLI's boundary."""

from __future__ import annotations

import os
import signal
import time

import pytest

from spacetrain.signals import Interrupted, sigterm_as_interrupt


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_in_the_block_is_an_interrupted_and_the_handlers_come_back(sig: int) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(KeyboardInterrupt) as info, sigterm_as_interrupt():
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the handler runs here and raises (PEP 475)
    # Caught as a KeyboardInterrupt by every `except KeyboardInterrupt`, but never a bare
    # one: CPython may kill a process with SIGINT (exit -2) after a bare one was handled.
    assert type(info.value) is Interrupted
    assert str(info.value) == f"signal {int(sig)}"
    assert {s: signal.getsignal(s) for s in before} == before
