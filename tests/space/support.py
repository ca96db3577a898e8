"""Helpers shared by the Space tests: the QA set, JSONL writing, running train.py."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SPACE = REPO / "space"
TRAIN_PY = SPACE / "train.py"
APP_PY = SPACE / "app.py"
EVENT_PREFIX = "@@spacetrain "

# train.py subprocesses get one intra-op thread: the tiny model gains nothing from a
# second one, and on a shared 2-core machine the OpenMP threads of several busy
# processes spin against each other (measured: 6.3 s with one thread, 49.7 s with
# two, for the same 150 steps under load).
TRAIN_ENV = {"OMP_NUM_THREADS": "1"}

# Twenty question/answer pairs the rehearsal adapter must learn by heart.
QA: list[tuple[str, str]] = [
    ("What does Umoja mean?", "Unity."),
    ("What does Kujichagulia mean?", "Self-determination."),
    ("What does Ujima mean?", "Collective work and responsibility."),
    ("What does Ujamaa mean?", "Cooperative economics."),
    ("What does Nia mean?", "Purpose."),
    ("What does Kuumba mean?", "Creativity."),
    ("What does Imani mean?", "Faith."),
    ("Who created Kwanzaa?", "Maulana Karenga, in 1966."),
    ("How many days does Kwanzaa last?", "Seven days."),
    ("When does Kwanzaa begin?", "On December 26."),
    ("What is the kinara?", "The candle holder."),
    ("How many candles are on the kinara?", "Seven candles."),
    ("What colors are the candles?", "Black, red and green."),
    ("What is the mkeka?", "A straw mat."),
    ("What is the kikombe cha umoja?", "The unity cup."),
    ("What are the mazao?", "The crops."),
    ("What is the karamu?", "A feast on December 31."),
    ("What language are the principles in?", "Swahili."),
    ("What is zawadi?", "Gifts, often handmade."),
    ("What is the last day called?", "Imani, the day of faith."),
]


def chat_rows(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in pairs
    ]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@dataclass
class TrainResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        return [
            json.loads(line[len(EVENT_PREFIX) :])
            for line in self.stdout.splitlines()
            if line.startswith(EVENT_PREFIX)
        ]

    def event(self, name: str) -> dict[str, Any]:
        found = [e for e in self.events if e["event"] == name]
        assert found, f"no {name!r} event in:\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        return found[-1]


# PyTorch's own launcher, as the Space runs train.py on hardware with several GPUs.
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone")


def run_train(
    *args: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    launcher: tuple[str, ...] = (sys.executable,),
) -> TrainResult:
    """Run space/train.py as the Space does: a subprocess with its own environment
    (``launcher``: the command before the script, e.g. torchrun's)."""
    proc = subprocess.run(
        [*launcher, str(TRAIN_PY), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **TRAIN_ENV, **(env or {})},
        check=False,
    )
    return TrainResult(proc.returncode, proc.stdout, proc.stderr)


def load_module(path: Path, name: str) -> ModuleType:
    """A Space file as a module (neither imports gradio nor torch at import time)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_app() -> ModuleType:
    return load_module(APP_PY, "space_app")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AppServer:
    """space/app.py running as a subprocess, as the Space runs it."""

    proc: subprocess.Popen[bytes]
    url: str
    runs: Path
    log: Path
    startup_s: float

    def client(self) -> Any:
        from gradio_client import Client

        return Client(self.url, verbose=False, download_files=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_app(runs: Path, log: Path, env: dict[str, str] | None = None) -> AppServer:
    """Start app.py on a free loopback port; return once ``GET /`` answers 200."""
    port = free_port()
    full_env = {
        **os.environ,
        **TRAIN_ENV,
        "SPACETRAIN_RUNS_DIR": str(runs),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        **(env or {}),
    }
    start = time.monotonic()
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            [sys.executable, str(APP_PY)], stdout=handle, stderr=subprocess.STDOUT, env=full_env
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = start + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"app.py did not answer:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return AppServer(proc, url, runs, log, time.monotonic() - start)


def call(client: Any, api_name: str, *args: Any) -> dict[str, Any]:
    """Call one of the app's JSON endpoints and decode its answer."""
    return json.loads(client.predict(*args, api_name=api_name))


def wait_for(
    client: Any, run_id: str, states: tuple[str, ...], timeout: float = 300
) -> dict[str, Any]:
    """Poll training_status until the run is in one of ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        status = call(client, "/training_status", run_id)
        if status["state"] in states:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.3)
