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
- ``training_status(run_id)``: state (queued/running/succeeded/failed/cancelled),
  step/total, epoch, loss, elapsed and ETA seconds; adapter repo and commit when done;
  error and log tail when failed or cancelled.
- ``training_logs(run_id, offset)``: ``{"text", "offset", "next_offset", "done"}``.
- ``training_preflight(params)``: the Space checks itself for those params (train.py's
  ``preflight``: token, write access, model and dataset at their revisions, GPU) and
  answers ``{"ok", "exit_code", "checks", "error", "active_run"}``; nothing starts.
- ``stop_training(request)``: ``{"run_id", "trigger"}`` (or a bare run id): SIGTERM to the
  run, which ends with state ``cancelled``; answers its status once it has ended.
- ``retry_push(request)``: a failed run whose adapter was saved (the push failed) pushes
  it again, without retraining; the run then reads as succeeded.

On hardware with several GPUs (``a10g-largex2``, ``l40sx4``, ``h200x8``...) the supervisor
runs train.py under PyTorch's launcher, one process per GPU (:func:`processes`,
:func:`train_command`); ``run.json`` records the ``world_size``.

Only the pinned stack and the stdlib are imported (never spacetrain); gradio is imported
when the UI starts and torch only in a background thread, so the port answers at once.
The HF token reaches train.py through the environment (the HF_TOKEN secret) only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import html
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # train.py sits beside this file (also when imported by path)
    sys.path.insert(0, str(HERE))
import train as trainer  # noqa: E402 - the contract: parameters, checks, events, run ids

TRAIN_PY = HERE / "train.py"
EVENT_PREFIX = trainer.EVENT_PREFIX
PARAMS = trainer.PARAMS
FINAL_STATES = ("succeeded", "failed", "cancelled")
CANCEL_NAME = "cancel.json"  # in a run folder: someone asked the run to stop (and when)
PUSH_NAME = "push.json"  # in a run folder: a retried push of a failed run's saved adapter
STOP_WAIT = 20.0  # seconds stop_training waits for the run's processes to end
STOP_GRACE = 30.0  # after that long a repeated stop ends the run's processes with SIGKILL
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


def _proc_stat(pid: int | str) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name: [0] state, [2] pgid, [19] start
    ticks; None when there is no such process (or no /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    """Process start time from /proc, to tell a live pid from a recycled one."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


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
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc (not Linux): kill(0) is all we know
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
        fields = _proc_stat(entry.name)
        if fields is None or int(fields[2]) != pgid or fields[0] in ("Z", "X"):
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


def _epoch() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def _seconds_since(stamp: str | None, until: str | None = None) -> float | None:
    """Seconds between two ISO times of the run files (``until`` None: now)."""
    if not stamp:
        return None
    try:
        start = dt.datetime.fromisoformat(stamp)
        end = dt.datetime.fromisoformat(until) if until else dt.datetime.now(dt.UTC)
    except ValueError:
        return None
    return max(0.0, (end - start).total_seconds())


def _timing(
    state: str, record: dict[str, Any], step: dict[str, Any]
) -> tuple[float | None, float | None]:
    """(elapsed, ETA) in seconds: wall time since the supervisor started, and the
    training time per step so far times the steps left (None until one step is in)."""
    elapsed = _seconds_since(record.get("started_at"), record.get("finished_at"))
    eta = None
    done, total, spent = step.get("step"), step.get("total"), step.get("elapsed_s")
    if state == "running" and done and total and spent is not None:
        eta = round(float(spent) / done * max(0, total - done), 1)
    return (round(elapsed, 1) if elapsed is not None else None), eta


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
        given = trainer.read_params(text, "params", trigger_env=env)
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
class LogSummary(trainer.EventSummary):
    """What the events of a run's log said so far, and how far it was read."""

    offset: int = 0


LOCK_NAME = ".active.json"  # no run id starts with a dot: the lock can never be a run's name


class _Unread:
    """The default of a ``lock`` argument: read the lock now (a /proc scan)."""


UNREAD = _Unread()
# The live lock as a caller already read it (``None``: no active run), or UNREAD. One UI
# tick reads it once and hands it down, instead of one /proc scan per question.
Seen = dict[str, Any] | None | _Unread


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
                "processes": processes(),
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

    def state_of(self, run_id: str, lock: Seen = UNREAD) -> tuple[str, dict[str, Any]]:
        """(state, state.json) from the files.

        Running while a process of the run lives (train.py outlives a killed supervisor);
        after that, a run without a recorded exit code is judged by its log's last event.
        A run that was asked to stop and did not succeed is ``cancelled``.
        """
        run_dir = self.run_dir(run_id)
        state = read_json(run_dir / "state.json") or {}
        if "returncode" not in state:
            if isinstance(lock, _Unread):
                lock = self.live_lock()
            if lock and lock["run_id"] == run_id:
                return ("running" if state else "queued"), state
        summary = self._summary(run_id, run_dir / "train.log")
        if state.get("returncode") == 0 or (run_dir / PUSH_NAME).is_file():
            return "succeeded", state  # (a failed push retried with success counts too)
        if "returncode" not in state and summary.done is not None and summary.error is None:
            return "succeeded", state
        cancelled = (summary.error or {}).get("state") == "cancelled"
        if cancelled or (run_dir / CANCEL_NAME).is_file():
            return "cancelled", state
        return "failed", state

    def status(self, run_id: str, *, tail: bool = True, lock: Seen = UNREAD) -> dict[str, Any]:
        """The run's status as the API answers it; ``tail=False`` leaves out the log tail
        of an ended run (a 64 KiB read the table of past runs never shows)."""
        run_dir = self.run_dir(run_id)
        state, record = self.state_of(run_id, lock)
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
        if state == "succeeded" and summary.done and summary.done.get("steps"):
            out["step"] = out["total"] = summary.done["steps"]  # the last step is seldom logged
        out["elapsed_s"], out["eta_s"] = _timing(state, record, step)
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
        retried = read_json(run_dir / PUSH_NAME)
        if retried:
            out["adapter"] = {k: retried.get(k) for k in ("repo", "revision", "url")}
        if state == "cancelled":
            out["error"] = (summary.error or {}).get("error") or "cancelled: stopped on request"
        if state == "failed":
            if summary.error:
                out["error"] = summary.error.get("error")
            elif "returncode" in record:
                out["error"] = f"train.py exited with code {record['returncode']}"
            else:
                out["error"] = "the training process ended without recording a result"
        if tail and state in ("failed", "cancelled"):
            out["log_tail"] = self.tail(run_id)
        return out

    def summary(self, run_id: str) -> LogSummary:
        """The parsed events of a run's log so far (the plot's points, the plan...)."""
        return self._summary(run_id, self.run_dir(run_id) / "train.log")

    def history(self, limit: int = 20, *, lock: Seen = UNREAD) -> list[dict[str, Any]]:
        """The newest ``limit`` runs' statuses, newest first (the UI's table of past runs)."""
        if isinstance(lock, _Unread):
            lock = self.live_lock()
        found = [p for p in self.root.iterdir() if (p / "launch.json").is_file()]
        found.sort(key=lambda p: (p / "launch.json").stat().st_mtime, reverse=True)
        out = []
        for path in found[:limit]:
            with contextlib.suppress(UnknownRun):
                out.append(self.status(path.name, tail=False, lock=lock))
        return out

    def stop(self, run_id: str, wait_s: float = STOP_WAIT) -> dict[str, Any]:
        """Ask the active run to stop; wait (up to ``wait_s``) for its processes to end.

        SIGTERM goes to train.py (its ``error`` event then says ``cancelled``), or to the
        whole group while train.py has not started; ``cancel.json`` records the request,
        so the run reads as cancelled however it ended. A stop repeated after
        ``STOP_GRACE`` seconds kills the group: a run stuck in C code still ends.
        A run that is not active is returned as it is (``"stopping": false``).
        """
        run_dir = self.run_dir(run_id)
        with self._mutex, runs_lock(self.root):
            lock = self.live_lock()
            if lock is None or lock.get("run_id") != run_id:
                return {**self.status(run_id), "stopping": False}
            asked = read_json(run_dir / CANCEL_NAME)
            if asked is None:
                write_json(run_dir / CANCEL_NAME, {"requested_at": now()})
            record = read_json(run_dir / "state.json") or {}
            pgid = lock.get("pgid") or lock.get("pid")
            since = _seconds_since((asked or {}).get("requested_at"))
            hard = since is not None and since > STOP_GRACE
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if hard and pgid:
                    os.killpg(pgid, signal.SIGKILL)
                elif pid_alive(record.get("train_pid")):
                    os.kill(record["train_pid"], signal.SIGTERM)
                elif pgid:
                    os.killpg(pgid, signal.SIGTERM)
        print(f"[app] stop requested for run {run_id}{' (kill)' if hard else ''}", flush=True)
        deadline = _epoch() + wait_s
        while _lock_alive(lock) and _epoch() < deadline:
            threading.Event().wait(0.1)
        return {**self.status(run_id), "stopping": True}

    def saved_adapter(self, run_id: str) -> Path | None:
        """The run's adapter folder when train.py saved all of it (also after a failed push)."""
        out = self.run_dir(run_id) / "adapter"
        names = (*trainer.ADAPTER_FILES, "run.json", "README.md")
        return out if all((out / n).is_file() for n in names) else None

    def retry_refusal(self, run_id: str, state: str | None = None) -> str | None:
        """Why the push of ``run_id`` cannot be retried (None: it can); ``state`` as read.

        The one decision behind ``retry_push`` and the UI's "Retry push" button: a failed
        run, started with an output repo, whose adapter was saved in full.
        """
        if state is None:
            state, _ = self.state_of(run_id)
        if state != "failed":
            return f"run {run_id} is {state}: only a failed push can be retried"
        params = (read_json(self.run_dir(run_id) / "launch.json") or {}).get("params", {})
        if not params.get("output_repo") or not params.get("push", True):
            return f"run {run_id} was started without an output repo to push to"
        if self.saved_adapter(run_id) is None:
            return (
                f"run {run_id} saved no complete adapter (it failed before the end of "
                "training): start a new run"
            )
        return None

    def retry_push(self, run_id: str) -> dict[str, Any]:
        """Push a failed run's saved adapter again (one commit, as train.py pushes it).

        Hours of training must not be lost to a Hub that was down at the end: the adapter
        was saved before the push, so only the push is repeated, never the training.
        """
        run_dir = self.run_dir(run_id)
        with self._mutex:
            refusal = self.retry_refusal(run_id)
            if refusal is not None:
                raise ParamsError(refusal)
            params = (read_json(run_dir / "launch.json") or {})["params"]
            repo, out = params["output_repo"], self.saved_adapter(run_id)
            assert out is not None  # retry_refusal saw it
            try:
                revision, url = trainer.push(out, repo, run_id, bool(params.get("private")))
            except (trainer.BadInput, trainer.HubDown) as exc:
                raise ParamsError(f"the push failed again: {exc}") from None
            pushed = {"repo": repo, "revision": revision, "url": url, "pushed_at": now()}
            write_json(run_dir / PUSH_NAME, pushed)
            with (run_dir / "train.log").open("a", encoding="utf-8") as log:
                log.write(f"[app] retried push: {repo}@{revision}\n")
        print(f"[app] run {run_id}: retried push to {repo}@{revision}", flush=True)
        return self.status(run_id)

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
        finished = state in FINAL_STATES
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
            train_command(launch["argv"], int(launch.get("processes") or 1)),
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


def train_command(argv: list[str], processes: int) -> list[str]:
    """train.py's command line: one process, or PyTorch's launcher with one per GPU.

    ``torch.distributed.run`` (torchrun) starts ``processes`` copies on this machine
    (``--standalone``: its own rendezvous on a free port) and forwards a stop's SIGTERM
    to each; train.py's rank 0 alone logs, writes ``run.json`` and pushes.
    """
    if processes > 1:
        return [
            sys.executable,
            "-u",
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            str(TRAIN_PY),
            *argv,
        ]
    return [sys.executable, "-u", str(TRAIN_PY), *argv]


# ------------------------------------------------------------------ diagnostics


DIAGNOSTICS: dict[str, Any] = {"python": sys.version.split()[0], "status": "checking"}
GPU_FACTS: dict[str, Any] = {}  # train.gpu_facts() as the start-up diagnostics found them
DIAGNOSE_TIMEOUT = 120.0  # torch import + CUDA start + bitsandbytes on a cold Space


ENV_ACCELERATOR = "ACCELERATOR"  # the Space's hardware flavor, set by the Hub: "a10g-largex2"


def processes(env: dict[str, str] | None = None, facts: dict[str, Any] | None = None) -> int:
    """How many training processes a run gets: one per GPU of this Space.

    The GPUs torch sees (``torch.cuda.device_count()`` in the start-up diagnostics) once
    they are in; before that, the hardware flavor the Hub sets in ``ACCELERATOR``
    (``a10g-largex2``: 2, ``l40sx4``: 4, ``h200x8``: 8; any other flavor: 1).
    """
    env = os.environ if env is None else env
    facts = GPU_FACTS if facts is None else facts
    if facts:
        return max(1, int(facts.get("devices") or 1)) if facts.get("cuda_available") else 1
    flavor = env.get(ENV_ACCELERATOR, "").strip().lower()
    match = re.fullmatch(r"[a-z0-9-]+x(\d+)", flavor)
    return max(1, int(match.group(1))) if match else 1


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


def run_request(text: str | None, env: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """The run id of a state-changing API call on one run (``stop_training``, ``retry_push``).

    ``{"run_id": ..., "trigger": ...}`` (the trigger as ``start_training`` takes it), or a
    bare run id where the Space has no trigger; empty: the active run. Returns the run id
    (:func:`authorized_run`) and the request's other keys (``wait``).
    """
    text = (text or "").strip()
    try:
        given = trainer.json_object(text, "the request") if text.startswith("{") else None
    except trainer.ParamError as exc:
        raise ParamsError(str(exc)) from None
    given = {"run_id": text} if given is None else given
    trigger = given.pop(trainer.TRIGGER_KEY, None)
    return authorized_run(given.get("run_id"), trigger, env), given


def authorized_run(run_id: Any, trigger: Any, env: dict[str, str] | None = None) -> str:
    """The run a state-changing call acts on (empty: the active run), trigger checked.

    The API (through :func:`run_request`) and the UI's Stop and Retry buttons ask here.
    The trigger is checked before anything else, in constant time, and never echoed.
    """
    try:
        trainer.check_trigger(trigger, env)
    except trainer.ParamError as exc:
        raise ParamsError(str(exc)) from None
    run_id = run_id or ""
    if not isinstance(run_id, str):
        raise ParamsError("run_id must be a string")
    if not run_id.strip():
        lock = runs().live_lock()
        if lock is None:
            raise ParamsError("no run is active; name the run_id")
        run_id = lock["run_id"]
    return run_id.strip()


def stop_training(request: str = "") -> str:
    """Stop a run cleanly (recorded as ``cancelled``); returns its status as JSON.

    ``request``: ``{"run_id", "trigger", "wait"}`` or a bare run id (see
    :func:`run_request`). Waits up to ``wait`` seconds (default and at most ``STOP_WAIT``)
    for the run's processes to end: a CLI being cancelled has seconds, not minutes.
    ``"stopping"`` is false when the run was not active (it is returned as it is).
    """
    try:
        run_id, given = run_request(request)
        wait = given.get("wait", STOP_WAIT)
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
            raise ParamsError(f"wait must be a number of seconds >= 0, got {wait!r}")
        return json.dumps(runs().stop(run_id, min(float(wait), STOP_WAIT)))
    except (ParamsError, UnknownRun) as exc:
        raise _gr_error(str(exc)) from None


def retry_push(request: str = "") -> str:
    """Push a failed run's saved adapter again, without retraining; returns JSON status."""
    try:
        return json.dumps(runs().retry_push(run_request(request)[0]))
    except (ParamsError, UnknownRun) as exc:
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
# The page is rendered from the run folder on every tick of a timer: what it shows is
# what the API answers, for every tab and after a reload. Renderers are pure functions
# of a status (unit-tested); the handlers only read the folder and pick what changed.

FORM_LABELS = {
    "base_model": "Base model",
    "dataset": "Dataset",
    "output_repo": "Output repo",
    "epochs": "Epochs",
    "learning_rate": "Learning rate",
    "lora_r": "LoRA r",
    "lora_alpha": "LoRA alpha",
}
FORM = tuple(FORM_LABELS)  # the form's fields, in the order shown
DASH = "\u2013"  # an empty cell
# The log box follows its end by CSS alone (``column-reverse``: scrollTop 0 is the end).
# Someone who scrolled up to read keeps the lines they read in place as new ones arrive:
# Gradio patches the box in place, and this moves it back by what was added below.
LOG_JS = """
const seen = {pinned: true, top: 0, height: 0};
element.addEventListener('scroll', (event) => {
  const box = event.target;
  if (!box.classList || !box.classList.contains('st-log')) return;
  seen.pinned = box.scrollTop > -4;
  seen.top = box.scrollTop;
  seen.height = box.scrollHeight;
}, true);
watch('value', () => {
  const box = element.querySelector('.st-log');
  if (!box) return;
  box.scrollTop = seen.pinned ? 0 : seen.top - (box.scrollHeight - seen.height);
  seen.top = box.scrollTop;
  seen.height = box.scrollHeight;
});
"""
TICK_S = 1.0  # the page's refresh period
LOG_LINES = 400  # lines of the log the page shows (the whole log is a download)
CSS = """
.st-banner {padding: .6em .9em; border-radius: 8px; background: #fff4ce; color: #5c4400;
  border: 1px solid #e6c35c; font-weight: 500}
.st-progress .st-head {display: flex; flex-wrap: wrap; gap: .5em; align-items: baseline}
.st-progress .st-pct {margin-left: auto; font-size: 1.6em; font-weight: 700}
.st-bar {height: 12px; border-radius: 6px; background: #e5e7eb; overflow: hidden; margin: .4em 0}
.st-bar > div {height: 100%; background: #4f46e5; transition: width .4s}
.st-facts, .st-meta {font-size: .92em; overflow-wrap: anywhere}
.st-meta {color: #6b7280}
.st-badge {padding: .1em .55em; border-radius: 999px; font-size: .85em; font-weight: 600;
  background: #e5e7eb; color: #111827}
.st-badge.running, .st-badge.queued {background: #e0e7ff; color: #3730a3}
.st-badge.succeeded {background: #dcfce7; color: #166534}
.st-badge.failed {background: #fee2e2; color: #991b1b}
.st-badge.cancelled {background: #f3f4f6; color: #374151}
.st-plot svg {width: 100%; height: auto; max-height: 260px}
.st-log {display: flex; flex-direction: column-reverse; height: 24em; overflow: auto;
  border: 1px solid #d1d5db; border-radius: 8px; background: #0f172a; color: #e2e8f0}
#log .st-log pre {margin: 0; padding: .6em .8em; white-space: pre-wrap; overflow-wrap: anywhere;
  font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  color: #e2e8f0; background: transparent; border: 0}  /* over the theme's prose colours */
.st-card {border: 1px solid #d1d5db; border-radius: 8px; padding: .7em 1em}
.st-card.succeeded {border-color: #86efac; background: #f0fdf4}
.st-card.failed {border-color: #fca5a5; background: #fef2f2}
.st-card pre {white-space: pre-wrap; overflow-wrap: anywhere; background: #f3f4f6;
  padding: .5em; border-radius: 6px; font-size: .85em}
.st-card a, .st-history a {color: #4338ca; text-decoration: underline}
.st-msg {padding: .4em .2em; overflow-wrap: anywhere}
.st-msg.error {color: #b91c1c; font-weight: 600}
.st-msg.ok {color: #166534}
.st-history {overflow-x: auto}
.st-history table {border-collapse: collapse; width: 100%; font-size: .9em}
@media (max-width: 720px) {#status-col {order: -1}  /* a phone shows the run first */
  .st-plot text {font-size: 20px}}  /* the curve shrinks to half: its labels must not */
.st-history th, .st-history td {border-bottom: 1px solid #e5e7eb; padding: .3em .5em;
  text-align: left; white-space: nowrap}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def duration(seconds: float | None) -> str:
    """``45s``, ``3m 05s``, ``2h 04m``: short enough for a phone's header."""
    if seconds is None:
        return DASH
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    return f"{total // 3600}h {total % 3600 // 60:02d}m"


def file_url(path: Path) -> str:
    """A link to a file of the runs folder, served by Gradio (``allowed_paths``).

    Relative, so it works behind the Hub's proxy as on localhost."""
    return "gradio_api/file=" + urllib.parse.quote(str(path))


def hub_url(repo: str) -> str:
    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"
    return f"{endpoint}/{repo}"


def render_banner(diagnostics: dict[str, Any]) -> str:
    """The start-up diagnostics' warning (no GPU, bitsandbytes) as a banner; '' if none."""
    warning = diagnostics.get("warning")
    return f'<div class="st-banner" role="alert">⚠ {_esc(warning)}</div>' if warning else ""


def render_progress(status: dict[str, Any] | None, summary: LogSummary | None) -> str:
    """State, percent, step/total, elapsed, ETA, tokens/s and the run's facts."""
    if not status:
        return (
            '<div class="st-progress" data-state="none"><div class="st-head">'
            '<span class="st-badge">no run yet</span></div>'
            '<div class="st-meta">Press Start Training to begin.</div></div>'
        )
    state = status["state"]
    step, total = status.get("step") or 0, status.get("total")
    pct = 100.0 * step / total if total else 0.0
    facts = [f"step {step}/{total if total else '?'}"]
    if status.get("epoch") is not None:
        facts.append(f"epoch {status['epoch']:.2f}")
    if status.get("loss") is not None:
        facts.append(f"loss {status['loss']:.4f}")
    facts.append(f"elapsed {duration(status.get('elapsed_s'))}")
    if state in ("queued", "running"):
        facts.append(f"ETA {duration(status.get('eta_s'))}")
    if status.get("tokens_per_s") is not None:
        facts.append(f"{status['tokens_per_s']:.0f} tok/s")
    meta = []
    extra = summary.extra if summary else {}
    start = extra.get("start") or {}
    params = status.get("params") or {}
    meta.append(f"base {start.get('base_model') or params.get('base_model') or '?'}")
    dataset = extra.get("dataset") or {}
    examples = f" ({dataset['examples']} examples)" if dataset.get("examples") else ""
    meta.append(f"data {start.get('dataset') or params.get('dataset') or '?'}{examples}")
    device = ((extra.get("model") or {}).get("device") or {}).get("type")
    if device:
        meta.append(f"on {device}")
    if status.get("loss_mode"):
        meta.append(f"loss on {status['loss_mode'].replace('_', ' ')} tokens")
    return (
        f'<div class="st-progress" data-state="{_esc(state)}" data-step="{step}" '
        f'data-total="{total or 0}"><div class="st-head">'
        f'<span class="st-badge {_esc(state)}">{_esc(state)}</span>'
        f'<b>{_esc(status["run_id"])}</b><span class="st-pct">{pct:.0f}%</span></div>'
        f'<div class="st-bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
        f'aria-valuenow="{pct:.0f}"><div style="width:{pct:.1f}%"></div></div>'
        f'<div class="st-facts">{" · ".join(facts)}</div>'
        f'<div class="st-meta">{_esc(" · ".join(meta))}</div></div>'
    )


def render_plot(points: list[tuple[int, float]]) -> str:
    """The loss curve as inline SVG: light, no plotting library, scales to any width."""
    width, height, left, bottom, top, right = 600, 220, 56, 28, 12, 12
    n = len(points)
    head = f'<div class="st-plot" data-points="{n}">'
    if n == 0:
        return head + '<div class="st-meta">The loss curve appears with the first step.</div></div>'
    steps = [p[0] for p in points]
    losses = [p[1] for p in points]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    y0, y1 = min(losses), max(losses)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def xy(step: int, loss: float) -> str:
        x = left + (step - x0) / (x1 - x0) * (width - left - right)
        y = top + (y1 - loss) / (y1 - y0) * (height - top - bottom)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(s, v) for s, v in points)
    dots = "".join(
        f'<circle cx="{c.split(",")[0]}" cy="{c.split(",")[1]}" r="2.5"/>'
        for c in (xy(s, v) for s, v in points[-120:])
    )
    axis = 'font-size="12" fill="#6b7280"'
    return (
        head + f'<svg viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="training loss, {n} points, last {losses[-1]:.4f}">'
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" '
        f'y2="{height - bottom}" stroke="#d1d5db"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#d1d5db"/>'
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" {axis}>{y1:.3g}</text>'
        f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end" {axis}>{y0:.3g}</text>'
        f'<text x="{left}" y="{height - 8}" {axis}>step {x0}</text>'
        f'<text x="{width - right}" y="{height - 8}" text-anchor="end" {axis}>'
        f"step {steps[-1]} · loss {losses[-1]:.4f}</text>"
        f'<polyline fill="none" stroke="#4f46e5" stroke-width="2" points="{line}"/>'
        f'<g fill="#4f46e5">{dots}</g></svg></div>'
    )


def render_log(text: str, log_path: Path | None) -> str:
    """The log's last lines in a box that stays scrolled to its end (CSS
    ``column-reverse``: no script, and a re-render cannot lose the position), plus a
    link to the whole file."""
    link = (
        f'<a href="{_esc(file_url(log_path))}" download="train.log">Download the full log</a>'
        if log_path is not None
        else ""
    )
    body = _esc(text) if text else "(no log yet)"
    return (
        f'<div class="st-log-head st-meta">Log (last {LOG_LINES} lines) · {link}</div>'
        f'<div class="st-log" tabindex="0"><pre>{body}</pre></div>'
    )


def render_result(
    status: dict[str, Any] | None, summary: LogSummary | None, saved: Path | None
) -> str:
    """The card of an ended run: adapter links and how to load it, losses, or why not."""
    if not status or status["state"] not in FINAL_STATES:
        return ""
    state, run_id = status["state"], status["run_id"]
    points = summary.points if summary else []
    losses = ""
    if points:
        losses = f"loss {points[0][1]:.4f} → {points[-1][1]:.4f} over {points[-1][0]} steps"
        if summary and summary.done and summary.done.get("train_loss") is not None:
            losses += f" (mean {summary.done['train_loss']:.4f})"
    took = duration(status.get("elapsed_s"))
    parts = [f'<div class="st-card {state}" data-state="{state}">']
    adapter = status.get("adapter") or {}
    if state == "succeeded" and adapter.get("repo"):
        repo, revision = adapter["repo"], adapter.get("revision") or ""
        commit = adapter.get("url") or f"{hub_url(repo)}/commit/{revision}"
        snippet = (
            "from peft import AutoPeftModelForCausalLM\n\n"
            "model = AutoPeftModelForCausalLM.from_pretrained(\n"
            f'    "{repo}", revision="{revision}"\n)'
        )
        parts += [
            f"<h3>✓ Run {_esc(run_id)} succeeded in {took}</h3>",
            f'<p>Adapter <a class="st-repo" href="{_esc(hub_url(repo))}" target="_blank" '
            f'rel="noopener">{_esc(repo)}</a> at commit <a class="st-commit" '
            f'href="{_esc(commit)}" target="_blank" rel="noopener"><code>{_esc(revision[:12])}'
            "</code></a></p>",
            f"<p>{_esc(losses)}</p>" if losses else "",
            f"<p>Load it:</p><pre><code>{_esc(snippet)}</code></pre>",
        ]
    elif state == "succeeded":
        parts += [
            f"<h3>✓ Run {_esc(run_id)} succeeded in {took} (not pushed)</h3>",
            f"<p>{_esc(losses)}</p>" if losses else "",
            "<p>The adapter stays in the Space (push was off); download it below, then "
            "<code>AutoPeftModelForCausalLM.from_pretrained(folder)</code>.</p>",
        ]
    elif state == "cancelled":
        parts += [
            f"<h3>■ Run {_esc(run_id)} was cancelled after {took}</h3>",
            f"<p>Stopped at step {status.get('step') or 0}/{status.get('total') or '?'}. "
            f"{_esc(losses)}</p>",
        ]
    else:
        parts += [
            f"<h3>✗ Run {_esc(run_id)} failed after {took}</h3>",
            f'<p class="st-error">{_esc(status.get("error") or "no error recorded")}</p>',
            f"<p>{_esc(losses)}</p>" if losses else "",
        ]
        if saved is not None:
            parts.append(
                "<p>Training finished and the adapter was saved before the push failed: "
                "download it below, or press <b>Retry push</b> (no retraining).</p>"
            )
    if saved is not None and not adapter.get("repo"):
        links = " · ".join(
            f'<a href="{_esc(file_url(saved / n))}" download="{n}">{n}</a>'
            for n in (*trainer.ADAPTER_FILES, "run.json")
        )
        parts.append(f'<p class="st-files">Adapter files: {links}</p>')
    parts.append("</div>")
    return "".join(parts)


def render_history(statuses: list[dict[str, Any]]) -> str:
    """Past runs, newest first, from the run folder."""
    if not statuses:
        return '<div class="st-history st-meta">No runs yet.</div>'
    rows = []
    for s in statuses:
        adapter = s.get("adapter") or {}
        if adapter.get("repo"):
            where = (
                f'<a href="{_esc(hub_url(adapter["repo"]))}" target="_blank" rel="noopener">'
                f"{_esc(adapter['repo'])}@{_esc((adapter.get('revision') or '')[:7])}</a>"
            )
        else:
            where = "local" if adapter.get("path") else DASH
        loss = f"{s['loss']:.4f}" if isinstance(s.get("loss"), float) else DASH
        rows.append(
            f'<tr data-run="{_esc(s["run_id"])}"><td>{_esc(s["run_id"])}</td>'
            f'<td><span class="st-badge {_esc(s["state"])}">{_esc(s["state"])}</span></td>'
            f"<td>{_esc((s.get('created_at') or '')[:19].replace('T', ' '))}</td>"
            f"<td>{duration(s.get('elapsed_s'))}</td>"
            f"<td>{s.get('step') or 0}/{s.get('total') or '?'}</td><td>{loss}</td>"
            f"<td>{where}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("run", "state", "created (UTC)", "took", "steps", "loss", "adapter")
    )
    return (
        f'<div class="st-history"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def render_message(text: str, ok: bool) -> str:
    kind = "ok" if ok else "error"
    return f'<div class="st-msg {kind}" role="status">{_esc(text)}</div>'


def form_defaults(env: dict[str, str] | None = None) -> dict[str, tuple[Any, str]]:
    """Each form field's start value and where it comes from (a Space variable or
    train.py's default); an unreadable variable falls back to the default and says so."""
    env = os.environ if env is None else env
    out: dict[str, tuple[Any, str]] = {}
    for name in FORM:
        spec = PARAMS[name]
        raw = env.get(spec.variable or "", "").strip()
        if raw:
            try:
                value = trainer.check_param(name, raw, text=True)
                out[name] = (value, f"from the Space variable {spec.variable}")
                continue
            except trainer.ParamError:
                pass
        if spec.default is None:
            out[name] = (None, f"{spec.variable} is not set: required")
        else:
            out[name] = (spec.default, f"train.py's default ({spec.variable} not set)")
    return out


def form_params(values: dict[str, Any], advanced: str, trigger: str = "") -> str:
    """The form, then the Advanced JSON over it, as the JSON ``start_training`` takes.

    Empty fields are left out (the Space variables fill them); numbers keep their type.
    """
    params: dict[str, Any] = {}
    for name, value in values.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if PARAMS[name].type is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        params[name] = value.strip() if isinstance(value, str) else value
    try:
        params.update(trainer.json_object((advanced or "").strip(), "Advanced parameters"))
    except trainer.ParamError as exc:
        raise ParamsError(str(exc)) from None
    if (trigger or "").strip():
        params[trainer.TRIGGER_KEY] = trigger.strip()
    return json.dumps(params)


def shown_run(current: str | None, lock: Seen = UNREAD) -> str | None:
    """The run the page shows: the active one, else the session's, else the latest."""
    if isinstance(lock, _Unread):
        lock = runs().active()
    if lock:
        return lock["run_id"]
    if current:
        try:
            runs().run_dir(current)
            return current
        except UnknownRun:
            pass
    return runs().latest()


def page(current: str | None) -> dict[str, Any]:
    """Everything the page shows, rendered (the handlers send what changed).

    The lock is read once per tick (one /proc scan) and handed to every question.
    """
    active = runs().active()
    run_id = shown_run(current, active)
    status = summary = saved = log_path = None
    log = ""
    retry = False
    if run_id:
        try:
            status = runs().status(run_id, lock=active)
            summary = runs().summary(run_id)
            saved = runs().saved_adapter(run_id)
            log_path = runs().run_dir(run_id) / "train.log"
            log = _readable(runs().tail(run_id, lines=LOG_LINES))
            retry = runs().retry_refusal(run_id, status["state"]) is None
        except UnknownRun:
            status = None
    reason = (
        f"Run {active['run_id']} is active: Start is disabled until it ends or is stopped."
        if active
        else ""
    )
    return {
        "banner": render_banner(DIAGNOSTICS),
        "progress": render_progress(status, summary),
        "plot": render_plot(summary.points if summary else []),
        "log": render_log(log, log_path),
        "result": render_result(status, summary, saved),
        "history": render_history(runs().history(lock=active)),
        "reason": reason,
        "active": bool(active),
        "retry": retry,
    }


def _readable(text: str) -> str:
    """The log without the machine-readable event lines."""
    return "\n".join(line for line in text.splitlines() if not line.startswith(EVENT_PREFIX))


def build_ui() -> Any:
    import gradio as gr

    defaults = form_defaults()
    html_kw: dict[str, Any] = {"js_on_load": None, "padding": False}

    with gr.Blocks(title="QLoRA trainer") as demo:
        gr.Markdown(
            "# QLoRA trainer\nFine-tune the base model on the dataset with 4-bit QLoRA. "
            "Training runs in the background: closing this page does not stop it, and "
            "every tab shows the same run."
        )
        banner = gr.HTML("", elem_id="st-banner", **html_kw)
        current = gr.State("")
        seen = gr.State({})
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320, elem_id="form-col"):
                fields: dict[str, Any] = {}

                def field(name: str) -> None:
                    value, source = defaults[name]
                    label, spec = FORM_LABELS[name], PARAMS[name]
                    if spec.type is str:
                        fields[name] = gr.Textbox(
                            value=value or "", label=label, info=source, elem_id=f"f-{name}"
                        )
                    else:
                        fields[name] = gr.Number(
                            value=value,
                            label=label,
                            info=source,
                            precision=0 if spec.type is int else None,
                            step=1e-5 if name == "learning_rate" else 1,
                            elem_id=f"f-{name}",
                            min_width=140,
                        )

                for name in ("base_model", "dataset", "output_repo"):
                    field(name)
                with gr.Row():
                    field("epochs")
                    field("learning_rate")
                with gr.Row():
                    field("lora_r")
                    field("lora_alpha")
                with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                    advanced = gr.Code(
                        value="{}",
                        language="json",
                        label="JSON (wins over the form)",
                        elem_id="f-advanced",
                    )
                    gr.Markdown(
                        "Known: "
                        + ", ".join(f"`{n}`" for n in PARAMS if n not in FORM and n != "run_id")
                    )
                trigger = gr.Textbox(
                    label=f"Trigger (the Space's {trainer.ENV_TRIGGER} secret)",
                    type="password",
                    visible=bool(os.environ.get(trainer.ENV_TRIGGER)),
                    elem_id="f-trigger",
                )
                with gr.Row():
                    start = gr.Button("Start Training", variant="primary", elem_id="start")
                    stop = gr.Button(
                        "Stop", variant="stop", interactive=False, elem_id="stop", min_width=80
                    )
                reason = gr.Markdown("", elem_id="start-reason")
                message = gr.HTML("", elem_id="start-message", **html_kw)
            with gr.Column(scale=2, min_width=320, elem_id="status-col"):
                progress = gr.HTML(render_progress(None, None), elem_id="progress", **html_kw)
                plot = gr.HTML(render_plot([]), elem_id="loss-plot", **html_kw)
                result = gr.HTML("", elem_id="result", **html_kw)
                retry = gr.Button("Retry push", visible=False, elem_id="retry-push")
        log = gr.HTML(render_log("", None), elem_id="log", js_on_load=LOG_JS, padding=False)
        gr.Markdown("### Past runs")
        history = gr.HTML("", elem_id="history", **html_kw)

        html_outputs = {
            "banner": banner,
            "progress": progress,
            "plot": plot,
            "log": log,
            "result": result,
            "history": history,
        }
        outputs = [*html_outputs.values(), reason, start, stop, retry, seen]

        def refresh(run_id: str, last: dict[str, Any]) -> list[Any]:
            """One tick: send only what changed since this session's last tick."""
            now_page = page(run_id)
            sent = dict(last)
            out: list[Any] = []
            for key in html_outputs:
                value = now_page[key]
                out.append(gr.skip() if last.get(key) == value else value)
                sent[key] = value
            controls = (now_page["reason"], now_page["active"], now_page["retry"])
            if last.get("controls") == list(controls):
                out += [gr.skip(), gr.skip(), gr.skip(), gr.skip()]
            else:
                out += [
                    now_page["reason"],
                    gr.Button(interactive=not now_page["active"]),
                    gr.Button(interactive=now_page["active"]),
                    gr.Button(visible=now_page["retry"]),
                ]
            sent["controls"] = list(controls)
            return [*out, sent]

        def ui_start(*values: Any) -> tuple[Any, str]:
            *form, extra, secret = values
            try:
                text = form_params(dict(zip(FORM, form, strict=True)), extra, secret)
                parsed = parse_params(text)
                lock = runs().live_lock()
                if lock is not None:
                    raise ParamsError(
                        f"run {lock['run_id']} is active: stop it or wait for it to end; "
                        "these parameters were not used"
                    )
                report = self_check(require_complete(dict(parsed)))
                if not report["ok"]:
                    raise ParamsError(f"the Space's self-check failed: {report['error']}")
                status, created = runs().start(parsed)
            except ParamsError as exc:
                return gr.skip(), render_message(str(exc), ok=False)
            if not created:
                note = f"run {status['run_id']} is active; these parameters were not used"
                return status["run_id"], render_message(note, ok=False)
            return status["run_id"], render_message(f"Started run {status['run_id']}.", ok=True)

        def ui_stop(secret: str) -> str:
            lock = runs().live_lock()
            if lock is None:
                return render_message("No run is active.", ok=False)
            try:
                status = runs().stop(authorized_run(lock["run_id"], secret))
            except (ParamsError, UnknownRun) as exc:
                return render_message(str(exc), ok=False)
            if status["state"] in FINAL_STATES:
                return render_message(f"Run {status['run_id']} is {status['state']}.", ok=True)
            return render_message(f"Stopping run {status['run_id']}…", ok=True)

        def ui_retry(run_id: str, secret: str) -> str:
            try:
                status = runs().retry_push(authorized_run(shown_run(run_id), secret))
            except (ParamsError, UnknownRun) as exc:
                return render_message(str(exc), ok=False)
            adapter = status.get("adapter") or {}
            return render_message(f"Pushed {adapter.get('repo')}@{adapter.get('revision')}.", True)

        private: dict[str, Any] = {"api_visibility": "private"}
        # Refreshes run every second: no loading veil over the log and the plot each time.
        quiet: dict[str, Any] = {**private, "show_progress": "hidden"}
        start.click(
            ui_start,
            inputs=[*fields.values(), advanced, trigger],
            outputs=[current, message],
            concurrency_limit=1,
            **private,
        ).then(refresh, inputs=[current, seen], outputs=outputs, **quiet)
        stop.click(ui_stop, inputs=trigger, outputs=message, concurrency_limit=1, **private).then(
            refresh, inputs=[current, seen], outputs=outputs, **quiet
        )
        retry.click(
            ui_retry, inputs=[current, trigger], outputs=message, concurrency_limit=1, **private
        ).then(refresh, inputs=[current, seen], outputs=outputs, **quiet)
        timer = gr.Timer(TICK_S)
        timer.tick(
            refresh, inputs=[current, seen], outputs=outputs, concurrency_limit=None, **quiet
        )
        demo.load(refresh, inputs=[current, seen], outputs=outputs, **quiet)
        gr.api(start_training, api_name="start_training", concurrency_limit=1)
        gr.api(training_status, api_name="training_status", concurrency_limit=None)
        gr.api(training_logs, api_name="training_logs", concurrency_limit=None)
        gr.api(training_preflight, api_name="training_preflight", concurrency_limit=2)
        gr.api(stop_training, api_name="stop_training", concurrency_limit=2)
        gr.api(retry_push, api_name="retry_push", concurrency_limit=1)
    return demo


# Gradio's queue looks for work every 1 ms on Linux, and for progress to send every 10 ms
# (gradio.queueing.Queue), even with nothing queued: about 5% of a core for an idle app,
# taken from train.py in the same container. A 20 ms look adds nothing anyone sees to a
# call that takes about 80 ms.
QUEUE_IDLE_POLL_S = 0.02
QUEUE_PROGRESS_POLL_S = 0.05


def quiet_queue(demo: Any) -> bool:
    """Make the queue's idle polling slower; False where this Gradio has no such knobs."""
    queue = getattr(demo, "_queue", None)
    knobs = ("sleep_when_free", "progress_update_sleep_when_free")
    if queue is None or not all(hasattr(queue, k) for k in knobs):
        return False
    queue.sleep_when_free = QUEUE_IDLE_POLL_S
    queue.progress_update_sleep_when_free = QUEUE_PROGRESS_POLL_S
    return True


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--supervise":
        return supervise(Path(sys.argv[2]))
    print(f"[app] runs folder {runs().root}", flush=True)
    threading.Thread(target=diagnose, name="diagnostics", daemon=True).start()
    demo = build_ui()
    import gradio as gr

    demo.queue(default_concurrency_limit=4)
    quiet_queue(demo)
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),  # noqa: S104 - a container
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        theme=gr.themes.Soft(),
        css=CSS,
        footer_links=["api", "gradio", "settings"],
        show_error=True,
        # The page links the run folder's files (the full log, a saved adapter).
        allowed_paths=[str(runs().root)],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
