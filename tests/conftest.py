"""What every test shares: isolation, the ``e2e`` marker's one meaning, artefacts built once.

Isolation: no token, private HF caches, loopback only (``_isolated``); one OpenMP thread.

Markers: a test is ``e2e`` when it opens a socket, starts a process (a localhub, the Space
app, train.py, a browser, a CLI in a subprocess) or loads the model stack (torch,
transformers, gradio...); every other test is a unit test, plain Python in this process,
and ``make test-fast`` runs those. A test that uses one of ``E2E_FIXTURES`` is marked
here; the rest is checked, so the marker cannot drift: an unmarked test that opens a
socket or starts a process (itself, or in a fixture's set-up, even a cached one) fails
with a line that says so (an audit hook), and a run of unit tests only refuses to import
the model stack (tests/test_markers.py shows each case).

Parallel runs (pytest-xdist, ``--dist loadgroup``): the tests of a module that share a
module-scoped fixture (a running Space, a trained world) run on one worker, so it is
built once; e2e tests are handed out first, so the long ones do not finish last; and
what is expensive and read-only (the tiny models, the random adapter) is built once per
run for all workers (``build_once``). Every test has its own tmp_path, free ports and
monkeypatched environment, so any two can run at the same time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import ipaddress
import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from filelock import FileLock

pytest_plugins = ["pytester"]  # tests/test_markers.py runs a throwaway suite with this file

REPO = Path(__file__).resolve().parent.parent

# One intra-op thread in every process of the run (this one, the xdist workers and the
# subprocesses they start, which inherit it): the parallelism is the workers'. Several
# busy processes whose OpenMP threads outnumber the cores spin against each other (an
# in-process evaluation took minutes instead of seconds under four workers).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Fixtures that start servers or processes, or load a real model: a test that uses one
# (directly or through another fixture) is e2e.
E2E_FIXTURES = frozenset(
    {"localhub", "tiny_model", "tiny_llama", "eval_model", "random_adapter", "world"}
)
# The model stack: loading it takes seconds, so a test that imports it is e2e too. A run
# of unit tests only (make test-fast) refuses these imports, which makes every unit test
# that needs them fail; in a run with e2e tests an earlier one may have loaded them.
MODEL_STACK = frozenset(
    {"torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets", "gradio"}
)
# Audit events that mean "this test is e2e" (https://docs.python.org/3/library/audit_events.html).
E2E_EVENTS = frozenset(
    {"socket.bind", "socket.connect", "subprocess.Popen", "os.posix_spawn", "os.system",
     "os.fork", "os.exec"}
)  # fmt: skip


def _is_loopback(address: object) -> bool:
    if isinstance(address, str):  # AF_UNIX path
        return True
    if not isinstance(address, tuple) or not address:
        return True
    host = str(address[0])
    if host in {"localhost", ""}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _isolated(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Blank tokens, point the HF caches at a temp dir and refuse non-loopback sockets."""
    home = tmp_path_factory.mktemp("hf_home")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("DO_NOT_TRACK", "1")

    real_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: object) -> None:
        if not _is_loopback(address):
            raise OSError(f"tests may only use loopback; refused connect to {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield


# ------------------------------------------------------------------ the e2e marker


class _E2EWatch:
    """Audit hook: notes e2e events (``E2E_EVENTS``) into every open record. Only the main
    thread's count: a server thread an earlier e2e test left running is not this test's."""

    def __init__(self) -> None:
        self.records: list[list[str]] = []
        self.main = threading.main_thread()

    def __call__(self, event: str, args: tuple) -> None:
        if self.records and event in E2E_EVENTS and threading.current_thread() is self.main:
            detail = args[1] if event == "subprocess.Popen" else args[-1] if args else ""
            for record in self.records:
                record.append(f"{event} {detail!r}"[:160])

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[str]]:
        record: list[str] = []
        self.records.append(record)
        try:
            yield record
        finally:
            # By identity: records are lists, and two equal records are not the same one.
            self.records[:] = [r for r in self.records if r is not record]


_WATCH = _E2EWatch()
sys.addaudithook(_WATCH)  # audit hooks cannot be removed; it is idle outside a record
# Fixture definitions whose set-up did an e2e event: a test using one is e2e even when it
# gets the fixture from the cache, set up by an earlier test.
_E2E_FIXTURE_DEFS: set[tuple[str, str]] = set()


def _key(fixturedef: pytest.FixtureDef) -> tuple[str, str]:
    return (fixturedef.baseid, fixturedef.argname)


def _fixturedefs(item: pytest.Item) -> list[pytest.FixtureDef]:
    info = getattr(item, "_fixtureinfo", None)
    return [defs[-1] for defs in info.name2fixturedefs.values() if defs] if info else []


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    xdist = config.pluginmanager.hasplugin("xdist")
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
        if xdist and any(d.scope in ("module", "class", "package") for d in _fixturedefs(item)):
            # One worker runs the module, so its module-scoped fixtures are built once.
            _xdist_group(config, item, item.nodeid.split("::")[0])
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # e2e first: the scheduler hands tests out in this order, so the long ones start early.
        items.sort(key=lambda i: i.get_closest_marker("e2e") is None)


class _RefuseModelStack(importlib.abc.MetaPathFinder):
    """In a run of unit tests only: importing the model stack is a unit test's mistake."""

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if _WATCH.records and name.partition(".")[0] in MODEL_STACK:
            for record in _WATCH.records:
                record.append(f"import {name}")
            raise ImportError(f"{name} is the model stack: mark the test e2e (tests/conftest.py)")


def pytest_collection_finish(session: pytest.Session) -> None:
    units_only = not any(item.get_closest_marker("e2e") for item in session.items)
    if session.items and units_only:
        loaded = MODEL_STACK & set(sys.modules)
        assert not loaded, (
            f"a test module imports {sorted(loaded)} at import time: import it in the test"
        )
        sys.meta_path.insert(0, _RefuseModelStack())


def _xdist_group(config: pytest.Config, item: pytest.Item, name: str) -> None:
    item.add_marker(pytest.mark.xdist_group(name))
    # xdist 3.8 tells the scheduler the group by renaming the item to "<id>@<group>", but
    # it sets the old ``_nodeid`` field, which pytest 9.2's structured ids ignore: every
    # group is silently lost (pytest-dev/pytest-xdist#1386). Rename it the new way.
    if config.getoption("loadgroup", False) and hasattr(item, "_id"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(f"{item.nodeid}@{name}")


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> object:
    with _WATCH.recording() as record:
        result = yield
    if record:
        _E2E_FIXTURE_DEFS.add(_key(fixturedef))
    return result


def _watched(item: pytest.Item, phase: str) -> Iterator[None]:
    if item.get_closest_marker("e2e") is not None:
        yield
        return
    with _WATCH.recording() as record:
        yield
    record += [
        f"fixture {d.argname} (its set-up did)"
        for d in _fixturedefs(item)
        if _key(d) in _E2E_FIXTURE_DEFS
    ]
    if record:
        raise pytest.fail.Exception(
            f"{item.nodeid} is not marked e2e but in its {phase} used: "
            f"{'; '.join(dict.fromkeys(record))[:400]}. Mark it "
            "(@pytest.mark.e2e, or pytestmark in its module) or use an e2e fixture "
            "(E2E_FIXTURES in tests/conftest.py).",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    return (yield from _watched(item, "set-up"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _watched(item, "call"))


# ------------------------------------------------------------ built once per run


BuildOnce = Callable[[str, Callable[[Path], object]], Path]


@pytest.fixture(scope="session")
def build_once(tmp_path_factory: pytest.TempPathFactory) -> BuildOnce:
    """``build_once(key, build)``: the folder ``build(path)`` made for ``key`` in this run.

    The first worker to ask builds it; the others wait on a lock and reuse it (the
    folder lies above each xdist worker's basetemp, so it is this run's alone). What it
    returns is shared: read it, and copy it before changing anything in it.
    """
    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once"
    cache.mkdir(exist_ok=True)

    def get(key: str, build: Callable[[Path], object]) -> Path:
        target = cache / key
        with FileLock(str(cache / f"{key}.lock")):
            if not target.is_dir():
                partial = cache / f"{key}.partial"
                shutil.rmtree(partial, ignore_errors=True)
                build(partial)
                partial.rename(target)
        return target

    return get


@pytest.fixture(scope="session")
def tiny_llama(build_once: BuildOnce) -> Callable[[Sequence[str]], Path]:
    """``tiny_llama(corpus)``: spacetrain.tinymodel's tiny Llama for that corpus, built once
    per run (it is deterministic) and shared read-only by every test and worker."""

    def get(corpus: Sequence[str]) -> Path:
        from spacetrain.tinymodel import build_tiny_llama

        key = "tiny-llama-" + hashlib.sha256(json.dumps(list(corpus)).encode()).hexdigest()[:16]
        return build_once(key, lambda path: build_tiny_llama(path, corpus))

    return get


class TrainProcesses:
    """``train_processes(run_id)``: the live train.py processes of a Space run, found in
    /proc whatever their session or parent (the supervisor runs ``train.py --params-file
    RUNS/<run_id>/params.json``); ``.gone(run_id)`` waits until there are none."""

    def __call__(self, run_id: str) -> list[int]:
        wanted = f"/{run_id}/params.json".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            script = any(a.endswith(b"train.py") for a in argv)
            if script and any(a.endswith(wanted) for a in argv) and state != "Z":
                pids.append(int(proc.name))
        return pids

    def gone(self, run_id: str, timeout: float = 15) -> bool:
        """Whether the run's train.py processes end within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self(run_id):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


@pytest.fixture(scope="session")
def train_processes() -> TrainProcesses:
    return TrainProcesses()
