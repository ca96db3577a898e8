"""The Space's app: a "Start Training" button, a live log, and an API for CI.

Training runs DETACHED from every request. A Gradio handler that owned the train.py
process would kill it when the browser tab or the CI client disconnects, so a start
spawns a supervisor (``python app.py --supervise RUN_DIR``) in its own session. The
supervisor runs train.py (``--params-file RUN_DIR/params.json``: parameters never travel
in argv) in that session's process group with stdout and stderr in ``RUN_DIR/train.log``,
records the exit code in ``RUN_DIR/state.json`` and releases the one-run lock
(``RUNS/.active.json``), which holds while any process of the group lives. Everything the app
reports is read back from the run folder, so a restarted app still knows every run.

API (gradio_client, explicit api_names; every argument and result is a JSON string):
- ``start_training(params)``: params is a JSON object (see ``PARAMS``; missing keys
  fall back to the Space variables). Idempotent: while a run is active it returns
  that run; a different explicit ``run_id`` is refused. The Space serves only what it
  was set up for (``train.check_served``): ``output_repo`` from ``OUTPUT_REPO`` or
  ``SPACETRAIN_OUTPUT_REPOS``, model and dataset as Hub ids unless
  ``SPACETRAIN_ALLOW_LOCAL_PATHS=1``; with the ``SPACETRAIN_TRIGGER`` secret set, the
  params carry ``"trigger"`` (``train.check_trigger``, constant time, never stored).
- ``training_status(run_id)``: state (queued/running/succeeded/failed), step/total,
  epoch, loss; adapter repo and commit when done; error and log tail when failed.
- ``training_logs(run_id, offset)``: ``{"text", "offset", "next_offset", "done"}``.
- ``training_preflight(params)``: the Space checks itself for those params (train.py's
  ``preflight``: token, write access, model and dataset at their revisions, GPU) and
  answers ``{"ok", "exit_code", "checks", "error", "active_run"}``; nothing starts.

Only the pinned stack and the stdlib are imported (never spacetrain); gradio is imported
when the UI starts and torch only in a background thread, so the port answers at once.
The HF token reaches train.py through the environment (the HF_TOKEN secret) only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # train.py sits beside this file (also when imported by path)
    sys.path.insert(0, str(HERE))
import train as trainer  # noqa: E402 - the contract: parameters, checks, events, run ids

TRAIN_PY = HERE / "train.py"
EVENT_PREFIX = trainer.EVENT_PREFIX
PARAMS = trainer.PARAMS
STATES = ("queued", "running", "succeeded", "failed")
LOG_CHUNK = 64 * 1024
TAIL_LINES = 40


class ParamsError(trainer.ParamError):
    """Malformed start parameters: shown to the caller, and no run is started."""


class UnknownRun(LookupError):
    """No run with that id in the runs folder."""


# ------------------------------------------------------------------ small helpers


def runs_dir() -> Path:
    """``SPACETRAIN_RUNS_DIR``, else ``$HOME/spacetrain-runs``, else a temp folder."""
    configured = os.environ.get(trainer.ENV_RUNS_DIR)
    if configured:
        path = Path(configured)
    else:
        home = Path(os.environ.get("HOME") or "/nonexistent")
        path = home / "spacetrain-runs"
        if not os.access(home, os.W_OK):
            path = Path(tempfile.gettempdir()) / "spacetrain-runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Atomic write: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _start_ticks(pid: int) -> int | None:
    """Process start time from /proc, to tell a live pid from a recycled one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def pid_alive(pid: int | None, ticks: int | None = None) -> bool:
    """True for a running process (not a zombie) that is the one we started."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): kill(0) is all we know
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    return ticks is None or int(fields[19]) == ticks


def group_alive(pgid: int | None, ticks: int | None = None) -> bool:
    """True while a process of group ``pgid`` still runs (zombies do not count).

    The lock follows a run's whole process group, not the supervisor alone: a killed
    supervisor leaves train.py training (and billing), and a second run must not start
    beside it. ``ticks``: the start time of the group's leader as recorded; a member
    started before it belongs to a recycled group id, not to the run.
    """
    if not pgid:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True  # not Linux: killpg(0) is all we know
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) != pgid or fields[0] in ("Z", "X"):
            continue
        if ticks is None or int(fields[19]) >= ticks:
            return True
    return False


@contextlib.contextmanager
def runs_lock(root: Path) -> Iterator[None]:
    """Serialise lock changes between app processes (and the supervisors)."""
    with (root / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_run_id() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"run-{stamp}-{os.urandom(3).hex()}"


# ------------------------------------------------------------------ parameters


def parse_params(text: str | None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON object of ``start_training`` merged over the Space variables, checked
    against the contract (``train.PARAMS``: types, ranges, choices) and the Space's rules
    (``train.check_trigger``, ``train.check_served``) before anything starts."""
    env = os.environ if env is None else env
    text = (text or "").strip() or "{}"
    try:
        trainer.check_trigger(_trigger_of(text), env)
        given = trainer.read_params(text, "params")
    except trainer.ParamError as exc:
        raise ParamsError(str(exc)) from None
    params: dict[str, Any] = {}
    try:
        for name, spec in PARAMS.items():
            if name in given:
                params[name] = given[name]
            elif spec.variable and env.get(spec.variable, "").strip():
                params[name] = trainer.check_param(
                    name, env[spec.variable], text=True, source=f"Space variable {spec.variable}"
                )
        trainer.check_served(params, env)
    except trainer.ParamError as exc:
        raise ParamsError(str(exc)) from None
    return params


def _trigger_of(text: str) -> Any:
    """The ``trigger`` of a params object (None when there is none, or no object)."""
    if len(text) > trainer.MAX_PARAMS:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value.get(trainer.TRIGGER_KEY) if isinstance(value, dict) else None


def require_complete(params: dict[str, Any]) -> dict[str, Any]:
    """What a new run needs beyond well-formed params: a model, data, a destination."""
    for name in ("base_model", "dataset"):
        if not params.get(name):
            variable = PARAMS[name].variable
            raise ParamsError(f"no {name}: pass params.{name} or set the Space variable {variable}")
    params.setdefault("push", True)
    if params["push"] and not params.get("output_repo"):
        raise ParamsError(
            "no output_repo: pass params.output_repo, set the Space variable OUTPUT_REPO, "
            'or pass "push": false'
        )
    return params


# ------------------------------------------------------------------ runs on disk


@dataclass
class LogSummary:
    """What the events of a run's log said so far (parsed incrementally)."""

    offset: int = 0
    last_step: dict[str, Any] | None = None
    total: int | None = None
    pushed: dict[str, Any] | None = None
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def feed(self, line: str) -> None:
        if not line.startswith(EVENT_PREFIX):
            return
        try:
            event = json.loads(line[len(EVENT_PREFIX) :])
        except ValueError:
            return
        name = event.get("event")
        if name == "step":
            self.last_step = event
        elif name == "train_begin":
            self.total = event.get("total")
        elif name == "pushed":
            self.pushed = event
        elif name == "done":
            self.done = event
        elif name == "error":
            self.error = event
        elif name in ("plan", "model", "dataset"):
            self.extra[name] = event


LOCK_NAME = ".active.json"  # no run id starts with a dot: the lock can never be a run's name


def _lock_alive(lock: dict[str, Any]) -> bool:
    """The run of a lock still has a live process (its supervisor's group: train.py too)."""
    return group_alive(lock.get("pgid") or lock.get("pid"), lock.get("ticks"))


class Runs:
    """The runs folder: one sub-folder per run, ``.active.json`` as the one-run lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._mutex = threading.Lock()
        self._summary_mutex = threading.Lock()  # Gradio answers status calls in threads
        self._summaries: dict[str, LogSummary] = {}

    # -- the lock

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_NAME

    def live_lock(self) -> dict[str, Any] | None:
        """The lock's content while its run's processes live (read only)."""
        lock = read_json(self.lock_path)
        if lock is not None and _lock_alive(lock):
            return lock
        return None

    def active(self) -> dict[str, Any] | None:
        """Like :meth:`live_lock`, and a stale lock is dropped on the way."""
        lock = read_json(self.lock_path)
        if lock is None:
            return None
        if _lock_alive(lock):
            return lock
        with runs_lock(self.root):
            again = read_json(self.lock_path)
            if again == lock:
                self.lock_path.unlink(missing_ok=True)
        return None

    # -- starting

    def start(self, params: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Start a run, or return the active one. ``(status, created)``."""
        with self._mutex, runs_lock(self.root):
            lock = self.live_lock()
            if lock is not None:
                wanted = params.get("run_id")
                if wanted and wanted != lock["run_id"]:
                    raise ParamsError(
                        f"run {lock['run_id']} is still active; it must finish before run "
                        f"{wanted} can start (one run at a time)"
                    )
                return self.status(lock["run_id"]), False
            self.lock_path.unlink(missing_ok=True)  # stale: its processes are gone
            run_id = params.get("run_id") or new_run_id()
            run_dir = self.root / run_id
            if run_dir.exists() and not run_dir.is_dir():
                raise ParamsError(f"run id {run_id!r} names a file of the runs folder, not a run")
            if (run_dir / "launch.json").exists():  # a retried start of a finished run
                return self.status(run_id), False
            params = require_complete(dict(params))
            run_dir.mkdir(exist_ok=True)
            # The parameters reach train.py in a file (checked there again), never in argv.
            write_json(run_dir / "params.json", {**params, "run_id": run_id})
            launch = {
                "run_id": run_id,
                "created_at": now(),
                "params": params,
                "argv": [
                    "--params-file",
                    str(run_dir / "params.json"),
                    "--output-dir",
                    str(run_dir / "adapter"),
                ],
            }
            write_json(run_dir / "launch.json", launch)
            with (run_dir / "train.log").open("ab") as log:
                child = subprocess.Popen(
                    [
                        sys.executable,
                        "-u",
                        str(Path(__file__).resolve()),
                        "--supervise",
                        str(run_dir),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Its own session and process group, which train.py joins: no signal
                    # from the app's session reaches them, and the lock follows the group.
                    start_new_session=True,
                    cwd=run_dir,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            write_json(
                self.lock_path,
                {
                    "run_id": run_id,
                    "pid": child.pid,
                    "pgid": child.pid,  # a session leader's group id is its pid
                    "ticks": _start_ticks(child.pid),
                    "since": now(),
                },
            )
        # Reap the supervisor when it ends so it never lingers as a zombie of this app.
        threading.Thread(target=child.wait, name=f"reap-{run_id}", daemon=True).start()
        print(f"[app] started run {run_id} (supervisor pid {child.pid})", flush=True)
        return self.status(run_id), True

    # -- reading

    def run_dir(self, run_id: str) -> Path:
        if not trainer.RUN_ID_RE.fullmatch(run_id or ""):
            raise UnknownRun(f"no run {run_id!r}")
        path = self.root / run_id
        if not (path / "launch.json").is_file():
            raise UnknownRun(f"no run {run_id!r}")
        return path

    def latest(self) -> str | None:
        lock = self.active()
        if lock:
            return lock["run_id"]
        runs = [p for p in self.root.iterdir() if (p / "launch.json").is_file()]
        if not runs:
            return None
        return max(runs, key=lambda p: (p / "launch.json").stat().st_mtime).name

    def _summary(self, run_id: str, log: Path) -> LogSummary:
        with self._summary_mutex:
            summary = self._summaries.setdefault(run_id, LogSummary())
            try:
                with log.open("rb") as handle:
                    handle.seek(summary.offset)
                    data = handle.read()
            except OSError:
                return summary
            complete = data[: data.rfind(b"\n") + 1]  # a partial last line waits for its end
            for line in complete.decode("utf-8", errors="replace").splitlines():
                summary.feed(line)
            summary.offset += len(complete)
            return summary

    def state_of(self, run_id: str) -> tuple[str, dict[str, Any]]:
        """(state, state.json) from the files.

        Running while a process of the run lives (train.py outlives a killed supervisor);
        after that, a run without a recorded exit code is judged by its log's last event.
        """
        run_dir = self.run_dir(run_id)
        state = read_json(run_dir / "state.json") or {}
        if "returncode" in state:
            return ("succeeded" if state["returncode"] == 0 else "failed"), state
        lock = self.live_lock()
        if lock and lock["run_id"] == run_id:
            return ("running" if state else "queued"), state
        summary = self._summary(run_id, run_dir / "train.log")
        if summary.done is not None and summary.error is None:
            return "succeeded", state
        return "failed", state

    def status(self, run_id: str) -> dict[str, Any]:
        run_dir = self.run_dir(run_id)
        state, record = self.state_of(run_id)
        launch = read_json(run_dir / "launch.json") or {}
        summary = self._summary(run_id, run_dir / "train.log")
        step = summary.last_step or {}
        out: dict[str, Any] = {
            "run_id": run_id,
            "state": state,
            "step": step.get("step", 0),
            "total": step.get("total", summary.total),
            "epoch": step.get("epoch"),
            "loss": step.get("loss"),
            "tokens_per_s": step.get("tokens_per_s"),
            "created_at": launch.get("created_at"),
            "started_at": record.get("started_at"),
            "finished_at": record.get("finished_at"),
            "returncode": record.get("returncode"),
            "params": launch.get("params", {}),
            "adapter": None,
            "error": None,
            "log_tail": None,
        }
        plan = summary.extra.get("plan")
        if plan:
            out["loss_mode"], out["packing"] = plan.get("loss_mode"), plan.get("packing")
        if summary.pushed:
            out["adapter"] = {
                "repo": summary.pushed.get("repo"),
                "revision": summary.pushed.get("revision"),
                "url": summary.pushed.get("url"),
            }
        elif state == "succeeded":
            out["adapter"] = {"repo": None, "revision": None, "path": str(run_dir / "adapter")}
        if state == "failed":
            if summary.error:
                out["error"] = summary.error.get("error")
            elif "returncode" in record:
                out["error"] = f"train.py exited with code {record['returncode']}"
            else:
                out["error"] = "the training process ended without recording a result"
            out["log_tail"] = self.tail(run_id)
        return out

    def tail(self, run_id: str, lines: int = TAIL_LINES) -> str:
        log = self.run_dir(run_id) / "train.log"
        try:
            with log.open("rb") as handle:
                handle.seek(max(0, log.stat().st_size - LOG_CHUNK))
                data = handle.read()
        except OSError:
            return ""
        text = data.decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def logs(self, run_id: str, offset: int, limit: int = LOG_CHUNK) -> dict[str, Any]:
        """A page of the raw log from ``offset``; ends on a line break when it can."""
        log = self.run_dir(run_id) / "train.log"
        state, _ = self.state_of(run_id)
        size = log.stat().st_size if log.exists() else 0
        offset = min(max(0, offset), size)
        with log.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(limit)
        if offset + len(data) < size and b"\n" in data:
            data = data[: data.rfind(b"\n") + 1]
        elif offset + len(data) == size and state in ("queued", "running") and b"\n" in data:
            data = data[: data.rfind(b"\n") + 1]  # the last line may still be growing
        next_offset = offset + len(data)
        finished = state in ("succeeded", "failed")
        return {
            "run_id": run_id,
            "text": data.decode("utf-8", errors="replace"),
            "offset": offset,
            "next_offset": next_offset,
            "size": size,
            "state": state,
            "done": finished and next_offset >= size,
        }


# ------------------------------------------------------------------ the supervisor


def supervise(run_dir: Path) -> int:
    """Run train.py for one run, record how it ended, release the lock."""
    launch = read_json(run_dir / "launch.json")
    if launch is None:
        print(f"[app] {run_dir}: no launch.json", flush=True)
        return 2
    root = run_dir.parent
    record = {"run_id": launch["run_id"], "supervisor_pid": os.getpid(), "started_at": now()}
    with (run_dir / "train.log").open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-u", str(TRAIN_PY), *launch["argv"]],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
        )
        record["train_pid"] = child.pid
        write_json(run_dir / "state.json", record)

        def forward(signum: int, _frame: object) -> None:
            child.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        returncode = child.wait()
    record.update(returncode=returncode, finished_at=now())
    write_json(run_dir / "state.json", record)
    with runs_lock(root):
        lock = read_json(root / LOCK_NAME)
        if lock and lock.get("run_id") == launch["run_id"]:
            (root / LOCK_NAME).unlink(missing_ok=True)
    return 0


# ------------------------------------------------------------------ diagnostics


DIAGNOSTICS: dict[str, Any] = {"python": sys.version.split()[0], "status": "checking"}
GPU_FACTS: dict[str, Any] = {}  # train.gpu_facts() as the start-up diagnostics found them
DIAGNOSE_TIMEOUT = 120.0  # torch import + CUDA start + bitsandbytes on a cold Space


def diagnose() -> None:
    """Say at start-up what the GPU stack looks like (train.gpu_facts), in a child.

    CUDA visible or not, device, driver and CUDA versions, bitsandbytes' CUDA library and
    a 4-bit matmul. A Space that should have a GPU and has none says so here, seconds
    after start, not after a model has loaded. Never takes the app down.
    """
    info = DIAGNOSTICS
    done = _train_in_child("train.gpu_facts()", DIAGNOSE_TIMEOUT)
    facts = done if isinstance(done, dict) else {"cuda_available": False, "error": done}
    if isinstance(done, dict):
        GPU_FACTS.update(done)
    info.update(facts, gpu=trainer.describe_gpu(facts))
    expected = os.environ.get(trainer.ENV_EXPECT_GPU, "").strip() == "1"
    if not facts.get("cuda_available"):
        info["warning"] = (
            f"{trainer.ENV_EXPECT_GPU}=1 but {info['gpu']}: this Space's hardware has no "
            "usable GPU; every run will fail its self-check until GPU hardware is requested"
            if expected
            else f"{info['gpu']}: runs will train on the CPU (slow; fine for tiny models)"
        )
    elif facts.get("bnb_error"):
        info["warning"] = f"bitsandbytes cannot use this GPU: {facts['bnb_error']}"
    info["status"] = "done"
    if "warning" in info:
        print(f"[app] WARNING {info['warning']}", flush=True)
    print("[app] diagnostics " + json.dumps(info), flush=True)


def _train_in_child(expression: str, timeout: float) -> dict[str, Any] | str:
    """``train.<expression>``'s JSON value from a short-lived process, or why not (str).

    A CUDA context made in the app would hold GPU memory for the app's lifetime, memory
    the training process then lacks; a child gives it all back when it exits.
    """
    env = {k: v for k, v in os.environ.items() if k != trainer.ENV_TOKEN}  # it needs none
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import train; "
        f"print(json.dumps({expression}))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(HERE)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError) as exc:
        return f"the GPU check did not finish ({type(exc).__name__})"
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        try:
            value = json.loads(lines[-1])
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
    return f"the GPU check crashed (exit {done.returncode}): {last}"


# ------------------------------------------------------------------ API functions


@functools.cache
def runs() -> Runs:
    """One Runs per process, made on first use (after the environment is final)."""
    return Runs(runs_dir())


def _gr_error(message: str) -> Exception:
    import gradio as gr

    return gr.Error(message, print_exception=False)


def start_training(params: str = "") -> str:
    """Start a training run (JSON params) or return the active one; returns JSON."""
    try:
        parsed = parse_params(params)
        status, created = runs().start(parsed)
    except ParamsError as exc:
        raise _gr_error(str(exc)) from None
    return json.dumps({**status, "created": created})


def training_status(run_id: str = "") -> str:
    """State, progress, adapter commit or error of a run (empty id: the latest); JSON."""
    run_id = (run_id or "").strip() or runs().latest() or ""
    if not run_id:
        return json.dumps({"run_id": None, "state": None, "error": "no run yet"})
    try:
        return json.dumps(runs().status(run_id))
    except UnknownRun as exc:
        raise _gr_error(str(exc)) from None


def training_logs(run_id: str = "", offset: float = 0, limit: float = LOG_CHUNK) -> str:
    """A page (<= ``limit`` bytes) of a run's raw log from byte ``offset``; JSON."""
    run_id = (run_id or "").strip() or runs().latest() or ""
    limit = min(max(int(limit or LOG_CHUNK), 1), 1024 * 1024)
    try:
        return json.dumps(runs().logs(run_id, int(offset or 0), limit))
    except UnknownRun as exc:
        raise _gr_error(str(exc)) from None


# Seconds the self-check retries an unreachable Hub: its answer must come well within a
# client's call timeout (the CLI waits 60 s), and a Hub that is down is exit 3 either way.
PREFLIGHT_HUB_DEADLINE = 20.0
GPU_CHECK_TIMEOUT = 35.0  # torch import + CUDA start on a cold Space; + the Hub cap < 60 s


def _gpu_check_in_child() -> dict[str, Any]:
    """train.py's GPU check (with the facts it decided on), in a short-lived process.

    The start-up diagnostics already ran the same probe in a child (20 s cold on an
    H200): their facts decide when they are in, so a self-check costs no second probe.
    """
    if GPU_FACTS:
        return trainer.gpu_verdict(GPU_FACTS)
    done = _train_in_child("train.check_gpu()", GPU_CHECK_TIMEOUT)
    if isinstance(done, dict):
        return done
    return {"name": "gpu", "ok": False, "detail": done, "exit_code": trainer.EXIT_USAGE}


def self_check(params: dict[str, Any]) -> dict[str, Any]:
    """train.py's checks for complete ``params``, summarised, plus the active run if any."""
    gpu = None
    if os.environ.get(trainer.ENV_EXPECT_GPU, "").strip() == "1":
        gpu = _gpu_check_in_child
    checks = trainer.preflight(
        params,
        hub_deadline_s=PREFLIGHT_HUB_DEADLINE,
        gpu=gpu,
        local_paths=trainer.local_paths_allowed(),
    )
    lock = runs().live_lock()
    summary = trainer.preflight_summary(checks)
    failed = ", ".join(c["name"] for c in checks if not c["ok"]) or "none"
    print(f"[app] self-check: ok={summary['ok']} failed={failed}", flush=True)
    return {**summary, "active_run": lock["run_id"] if lock else None}


def training_preflight(params: str = "") -> str:
    """Check token, write access, model, dataset and GPU for these params; returns JSON.

    Starts nothing. Params are read exactly as ``start_training`` reads them.
    """
    try:
        parsed = require_complete(parse_params(params))
    except ParamsError as exc:
        raise _gr_error(str(exc)) from None
    return json.dumps(self_check(parsed))


# ------------------------------------------------------------------ the UI


def _readable(text: str) -> str:
    """The log without the machine-readable event lines."""
    return "\n".join(line for line in text.splitlines() if not line.startswith(EVENT_PREFIX))


def _panel(run_id: str | None) -> tuple[dict[str, Any], str]:
    run_id = run_id or runs().latest()
    if not run_id:
        return {"state": "no run yet", "diagnostics": DIAGNOSTICS}, ""
    try:
        status = runs().status(run_id)
        log = _readable(runs().tail(run_id, lines=400))
    except UnknownRun:
        return {"state": f"no run {run_id}"}, ""
    shown = {k: v for k, v in status.items() if k not in ("log_tail", "params")}
    shown["diagnostics"] = DIAGNOSTICS
    return shown, log


def _with_trigger(params: str, trigger: str) -> str:
    """The UI's params with the trigger of its password box added (when one was typed)."""
    if not (trigger or "").strip():
        return params
    try:
        value = json.loads((params or "").strip() or "{}")
    except (ValueError, RecursionError):
        return params  # parse_params says what is wrong with it
    if not isinstance(value, dict):
        return params
    return json.dumps({**value, trainer.TRIGGER_KEY: trigger.strip()})


def build_ui() -> Any:
    import gradio as gr

    def ui_start(params: str, trigger: str = "") -> tuple[str, dict[str, Any], str]:
        try:
            parsed = parse_params(_with_trigger(params, trigger))
            if runs().live_lock() is None:  # a new run: check first (an active one is shown)
                report = self_check(require_complete(dict(parsed)))
                if not report["ok"]:
                    message = f"the Space's self-check failed: {report['error']}"
                    raise gr.Error(message, print_exception=False)
            status, _ = runs().start(parsed)
        except ParamsError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        panel, log = _panel(status["run_id"])
        return status["run_id"], panel, log

    def ui_refresh(run_id: str) -> tuple[dict[str, Any], str]:
        return _panel(run_id)

    defaults = {
        k: os.environ[p.variable] for k, p in PARAMS.items() if os.environ.get(p.variable or "")
    }
    with gr.Blocks(title="QLoRA trainer") as demo:
        gr.Markdown(
            "# QLoRA trainer\nPress **Start Training** to fine-tune the base model on the "
            "dataset (defaults: the Space variables). Training runs in the background: "
            "closing this page does not stop it."
        )
        current = gr.State("")
        with gr.Row():
            with gr.Column(scale=1):
                params = gr.Code(
                    value=json.dumps(defaults, indent=2) if defaults else "{}",
                    language="json",
                    label="Parameters (JSON; empty keys use the Space variables)",
                )
                trigger = gr.Textbox(
                    label=f"Trigger (the Space's {trainer.ENV_TRIGGER} secret)",
                    type="password",
                    visible=bool(os.environ.get(trainer.ENV_TRIGGER)),
                )
                button = gr.Button("Start Training", variant="primary")
            with gr.Column(scale=1):
                panel = gr.JSON(label="Status")
        log = gr.Textbox(label="Log", lines=24, max_lines=24, autoscroll=True, interactive=False)
        button.click(
            ui_start,
            inputs=[params, trigger],
            outputs=[current, panel, log],
            api_visibility="private",
            concurrency_limit=1,
        )
        timer = gr.Timer(2.0)
        timer.tick(
            ui_refresh,
            inputs=current,
            outputs=[panel, log],
            api_visibility="private",
            concurrency_limit=None,
        )
        demo.load(ui_refresh, inputs=current, outputs=[panel, log], api_visibility="private")
        gr.api(start_training, api_name="start_training", concurrency_limit=1)
        gr.api(training_status, api_name="training_status", concurrency_limit=None)
        gr.api(training_logs, api_name="training_logs", concurrency_limit=None)
        gr.api(training_preflight, api_name="training_preflight", concurrency_limit=2)
    return demo


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--supervise":
        return supervise(Path(sys.argv[2]))
    print(f"[app] runs folder {runs().root}", flush=True)
    threading.Thread(target=diagnose, name="diagnostics", daemon=True).start()
    demo = build_ui()
    import gradio as gr

    demo.queue(default_concurrency_limit=4).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),  # noqa: S104 - a container
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        theme=gr.themes.Soft(),
        footer_links=["api", "gradio", "settings"],
        show_error=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
