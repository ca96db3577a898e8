"""Docker Spaces without Docker: each Space's app runs as ``python app.py`` here.

A commit to a Space checks its files (NO_APP_FILE, CONFIG_ERROR), "builds" it (a log
and an optional delay), checks the commit out under ``<root>/_spaces/`` and starts the
app as a "container" (:mod:`procs`: whatever stops it ends everything it started,
detached or not) with the Space's variables and secrets as environment,
``GRADIO_SERVER_PORT`` set to a free port and ``HF_ENDPOINT`` pointing back at
localhub; the Space's address is its gateway (:mod:`gateway`). The stage follows the
real process: APP_STARTING until the port answers HTTP, RUNNING after, RUNTIME_ERROR
when it dies. A commit while RUNNING keeps the old app serving (RUNNING_BUILDING,
RUNNING_APP_STARTING) until the new one answers.

Every state change bumps the Space's generation; a deployment thread that finds the
generation moved on stops what it started and returns. Nothing here parses the Hub's
HTTP; the gateway only relays to the app.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacetrain.localhub import procs
from spacetrain.localhub.billing import (
    DEFAULT_FLAVOR,
    FLAVORS,
    FREE_SLEEP_SECONDS,
    BillingMeter,
    check_flavor,
)
from spacetrain.localhub.card import FrontMatterError, SpaceConfig, space_config
from spacetrain.localhub.errors import BadRequest, HubError
from spacetrain.localhub.gateway import AppGateway
from spacetrain.localhub.store import Repo, RepoStore, now_iso

# Stages (huggingface_hub's SpaceStage, plus SLEEPING from huggingface.js).
NO_APP_FILE = "NO_APP_FILE"
CONFIG_ERROR = "CONFIG_ERROR"
BUILDING = "BUILDING"
BUILD_ERROR = "BUILD_ERROR"
APP_STARTING = "APP_STARTING"
RUNNING = "RUNNING"
RUNNING_BUILDING = "RUNNING_BUILDING"
RUNNING_APP_STARTING = "RUNNING_APP_STARTING"
RUNTIME_ERROR = "RUNTIME_ERROR"
PAUSED = "PAUSED"
SLEEPING = "SLEEPING"
STOPPED = "STOPPED"
DELETING = "DELETING"
STAGES = (
    NO_APP_FILE,
    CONFIG_ERROR,
    BUILDING,
    BUILD_ERROR,
    APP_STARTING,
    RUNNING,
    RUNNING_BUILDING,
    RUNNING_APP_STARTING,
    RUNTIME_ERROR,
    PAUSED,
    SLEEPING,
    STOPPED,
    DELETING,
)
SERVING = (RUNNING, RUNNING_BUILDING, RUNNING_APP_STARTING)
BILLED = (APP_STARTING, *SERVING)
ERRORS = (NO_APP_FILE, CONFIG_ERROR, BUILD_ERROR, RUNTIME_ERROR)

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOG_LINES = 20_000
_TAIL_LINES = 20
BASE_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT", "LD_LIBRARY_PATH")


class LogBuffer:
    """Timestamped lines, appended by one writer and followed by many readers."""

    def __init__(self, path: Path | None = None) -> None:
        self._cond = threading.Condition()
        self._lines: list[tuple[float, str]] = []
        self._dropped = 0
        self.closed = False
        self._file = path.open("a", encoding="utf-8") if path is not None else None

    def append(self, line: str) -> None:
        if not line.endswith("\n"):
            line += "\n"
        with self._cond:
            self._lines.append((time.time(), line))
            if len(self._lines) > _LOG_LINES:
                self._lines.pop(0)
                self._dropped += 1
            if self._file is not None and not self._file.closed:
                self._file.write(line)
                self._file.flush()
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            if self._file is not None:
                self._file.close()
            self._cond.notify_all()

    def events(self, start: int = 0) -> list[tuple[float, str]]:
        """Lines from absolute index ``start`` on."""
        with self._cond:
            return self._lines[max(0, start - self._dropped) :]

    def size(self) -> int:
        """How many lines were ever appended (the absolute index of the next one)."""
        with self._cond:
            return self._dropped + len(self._lines)

    def follow(
        self, stop: threading.Event, poll: float = 0.5, start: int = 0
    ) -> Iterator[tuple[float, str] | None]:
        """Every line from absolute index ``start`` (those still kept), then new ones as
        they come; ``None`` now and then as a keep-alive."""
        with self._cond:
            index = max(start, self._dropped)
        while True:
            with self._cond:
                batch = self._lines[max(0, index - self._dropped) :]
                if not batch:
                    if self.closed or stop.is_set():
                        return
                    self._cond.wait(poll)
                    batch = self._lines[max(0, index - self._dropped) :]
            index += len(batch)
            if batch:
                yield from batch
            else:
                yield None

    def tail(self, n: int = _TAIL_LINES) -> str:
        with self._cond:
            return "".join(line for _, line in self._lines[-n:])


def _closed_log() -> LogBuffer:
    log = LogBuffer()
    log.close()
    return log


def _free_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens there, else a port the kernel hands out."""
    for port in (preferred, 0):
        if port is None:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the app's server will: a port whose old connections linger in TIME_WAIT is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError("no free port")  # pragma: no cover - port 0 always binds


def _answers_http(port: int, timeout: float = 0.5) -> bool:
    """Whether something on ``port`` speaks HTTP (any status counts, as the Hub's probe)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class AppProcess:
    """One run of a Space's app, its "container": the app, everything it starts (tagged,
    see :mod:`procs`), and its output in a LogBuffer."""

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        port: int,
        sha: str,
        log: LogBuffer,
        on_exit: Callable[[AppProcess], None],
    ) -> None:
        self.port = port
        self.sha = sha
        self.log = log
        self.stopping = False
        self.returncode: int | None = None
        self._on_exit = on_exit
        self.tag = procs.new_tag()  # the "container": every process that inherits it
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**env, procs.TAG_ENV: self.tag},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reaped = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"app-log-{port}", daemon=True)
        self._reader.start()
        # A child that kept the app's stdout would hold the reader past the app's end:
        # the container ends with its main process, so its end is watched on its own.
        threading.Thread(target=self._reap, name=f"app-reap-{port}", daemon=True).start()

    def _reap(self) -> None:
        """The one place the container is ended (the one /proc scan once the app is
        gone): whoever ends the app, or the app itself, then waits for this."""
        self.proc.wait()
        procs.kill_all(self.tag)
        self._reaped.set()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.log.append(raw.decode("utf-8", "replace"))
        self.proc.stdout.close()
        self.returncode = self.proc.wait()
        self._reaped.wait()  # the app is gone, so is its "container" (see _reap)
        self.log.close()
        self._on_exit(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL every process of the Space, as an out-of-memory kill of the container
        would (no ``stopping`` flag: the Space lands in RUNTIME_ERROR)."""
        self._signal(signal.SIGKILL)
        self._reaped.wait(timeout)  # the app is dead: _reap ends the rest

    def stop(self, timeout: float = 5.0) -> None:
        """End the Space's whole process tree as ``docker stop`` ends a container.

        SIGTERM goes to the app's group (the container's main process); once it exits,
        or after ``timeout``, every process still carrying the tag gets SIGKILL (by
        ``_reap``), detached training included, pass after pass until none is left.
        Waits for the log to drain.
        """
        self.stopping = True
        if self.alive():
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        self._signal(signal.SIGKILL)  # stragglers left in the group
        self._reaped.wait(timeout)  # and those that left it
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout)


@dataclass
class Space:
    """The runtime state of one Space (its settings live in the repo's metadata)."""

    repo_id: str
    home: Path
    lock: threading.RLock = field(default_factory=threading.RLock)
    stage: str = BUILDING
    sha: str | None = None  # the commit the runtime is about: serving, or being deployed
    error: str | None = None
    port: int | None = None
    app: AppProcess | None = None  # serving
    starting: AppProcess | None = None  # the next one, until it answers
    generation: int = 0
    running_since: float | None = None
    # (stage, message, generation when it was set): only a deployment that starts
    # after the fault was set may use it up, not a build already under way.
    forced_next_build: tuple[str, str | None, int] | None = None
    build_log: LogBuffer = field(default_factory=_closed_log)
    run_log: LogBuffer = field(default_factory=_closed_log)
    sdk: str | None = None
    gateway: AppGateway | None = None  # the Space's address (see gateway.py)


@dataclass(frozen=True)
class SpaceOptions:
    """How Spaces run here; the defaults suit tests and rehearsals."""

    python: str = sys.executable
    build_delay: float = 0.0
    startup_timeout: float = 300.0
    stop_timeout: float = 5.0
    env: Mapping[str, str] = field(default_factory=dict)


class SpaceSupervisor:
    """Every Space's app process, stage, logs and billing."""

    def __init__(
        self,
        store: RepoStore,
        meter: BillingMeter,
        *,
        hub_url: Callable[[], str],
        options: SpaceOptions | None = None,
        admit: Callable[[str, dict[str, str]], tuple[int, str] | None] | None = None,
    ) -> None:
        self._admit = admit or (lambda repo_id, headers: None)
        self._store = store
        self._meter = meter
        self._hub_url = hub_url
        self.options = options or SpaceOptions()
        self._lock = threading.Lock()
        self._spaces: dict[str, Space] = {}
        self._threads: set[threading.Thread] = set()
        self._closing = threading.Event()
        self._ticker: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bring every Space back as it was left (paused ones stay paused)."""
        self._closing.clear()
        self._ticker = threading.Thread(target=self._tick, name="localhub-spaces", daemon=True)
        self._ticker.start()
        for repo in self._store.all("space"):
            self.resume(repo)

    def resume(self, repo: Repo) -> None:
        space = self.space(repo)
        with space.lock:
            if self._settings(repo).get("paused"):
                space.sha = repo.head()
                self._set_stage(space, PAUSED, repo)
                return
        self._deploy_async(repo, repo.head(), rebuild=True, keep_serving=False)

    def close(self) -> None:
        """Stop every app and wait for the deployment threads (LocalHub.stop)."""
        self._closing.set()
        with self._lock:
            spaces = list(self._spaces.values())
        for space in spaces:
            self._halt(space, None, STOPPED)
            self._close_gateway(space)
        for thread in list(self._threads):
            thread.join(self.options.stop_timeout + 1)
        if self._ticker is not None:
            self._ticker.join(2)
            self._ticker = None

    def reset(self) -> None:
        self.close()
        with self._lock:
            self._spaces.clear()

    def forget(self, repo_id: str) -> None:
        """The Space's repo was deleted: stop its app and drop its state."""
        with self._lock:
            space = self._spaces.pop(repo_id, None)
        if space is not None:
            self._halt(space, None, DELETING)
            self._close_gateway(space)
            shutil.rmtree(space.home, ignore_errors=True)

    # ------------------------------------------------------------ the address

    def gateway(self, space: Space) -> AppGateway:
        """The Space's front door, opened on first use; its port outlives rebuilds."""
        with space.lock:
            if space.gateway is None:
                space.gateway = AppGateway(
                    space.repo_id,
                    upstream=lambda: self._serving_port(space),
                    admit=lambda headers: self._admit(space.repo_id, headers),
                )
            return space.gateway

    @staticmethod
    def _serving_port(space: Space) -> int | None:
        with space.lock:
            return space.app.port if space.app is not None else None

    @staticmethod
    def _close_gateway(space: Space) -> None:
        with space.lock:
            gateway, space.gateway = space.gateway, None
        if gateway is not None:
            gateway.close()

    def outage(self, repo: Repo, seconds: float) -> None:
        """Fault: the Space's address answers 503 for ``seconds``; the app keeps running."""
        self.gateway(self.space(repo)).outage(seconds)

    # ------------------------------------------------------------ state

    def space(self, repo: Repo) -> Space:
        with self._lock:
            space = self._spaces.get(repo.repo_id)
            if space is None:
                home = self._store.root / "_spaces" / repo.repo_id.replace("/", "--")
                space = Space(repo.repo_id, home, sdk=repo.meta.get("sdk"))
                self._spaces[repo.repo_id] = space
            return space

    @staticmethod
    def _settings(repo: Repo) -> dict[str, Any]:
        return repo.meta.setdefault("space", {})

    def requested_flavor(self, repo: Repo) -> str:
        return self._settings(repo).get("hardware") or DEFAULT_FLAVOR

    def sleep_time(self, repo: Repo) -> int | None:
        """Seconds of idleness before SLEEPING (None: never), as the Hub reports gcTimeout."""
        value = self._settings(repo).get("sleepTime")
        if self.requested_flavor(repo) == DEFAULT_FLAVOR:
            return FREE_SLEEP_SECONDS
        return None if value in (None, -1) else int(value)

    def runtime(self, repo: Repo) -> dict[str, Any]:
        """The Hub's SpaceRuntime JSON, plus ``sha``: the commit this runtime is about."""
        space = self.space(repo)
        with space.lock:
            billed = space.stage in BILLED
            flavor = self.requested_flavor(repo)
            data: dict[str, Any] = {
                "stage": space.stage,
                "hardware": {"current": flavor if billed else None, "requested": flavor},
                "gcTimeout": self.sleep_time(repo),
                "storage": None,
                "devMode": False,
                "replicas": {"current": 1 if space.stage in SERVING else 0, "requested": 1},
                "domains": (
                    [{"domain": self.gateway(space).host, "stage": "READY"}] if space.port else []
                ),
                "sha": space.sha,
                "sdk": space.sdk,
            }
            if space.stage in ERRORS and space.error:
                data["errorMessage"] = space.error
            return data

    def host(self, repo: Repo) -> str | None:
        """Where the app answers, through its gateway: ``space_info().host``."""
        space = self.space(repo)
        with space.lock:
            return f"http://{self.gateway(space).host}" if space.port else None

    def _set_stage(
        self, space: Space, stage: str, repo: Repo | None, error: str | None = None
    ) -> None:
        """Move to ``stage`` and tell the meter (caller holds ``space.lock``)."""
        space.stage = stage
        space.error = error if stage in ERRORS else None
        if stage == RUNNING and space.running_since is None:
            space.running_since = time.monotonic()
        elif stage not in SERVING:
            space.running_since = None
        flavor = self.requested_flavor(repo) if repo is not None else DEFAULT_FLAVOR
        self._meter.bill(space.repo_id, flavor if stage in BILLED else None)

    def _halt(self, space: Space, repo: Repo | None, stage: str, error: str | None = None) -> None:
        """Bump the generation, stop both processes, and land on ``stage``."""
        with space.lock:
            space.generation += 1
            procs = [p for p in (space.app, space.starting) if p is not None]
            space.app = space.starting = None
            self._set_stage(space, stage, repo, error)
            space.build_log.close()  # an interrupted build's log ends here
        for proc in procs:
            proc.stop(self.options.stop_timeout)

    # ------------------------------------------------------------ API verbs

    def on_commit(self, repo: Repo, branch: str, sha: str) -> None:
        """A new commit: on a Space's main, rebuild unless the Space is paused."""
        if repo.repo_type != "space" or branch != "main":
            return
        space = self.space(repo)
        with space.lock:
            if self._settings(repo).get("paused"):
                return
        self._deploy_async(repo, sha, rebuild=True, keep_serving=True)

    def restart(self, repo: Repo, *, factory: bool = False) -> dict[str, Any]:
        """Restart (factory: rebuild) from the head of main; also resumes a paused Space."""
        self._settings(repo)["paused"] = False
        repo.save_meta()
        space = self.space(repo)
        head = repo.head()
        with space.lock:
            built = space.sha == head and space.stage not in (
                NO_APP_FILE,
                CONFIG_ERROR,
                BUILD_ERROR,
            )
        self._deploy_async(repo, head, rebuild=factory or not built, keep_serving=False)
        return self.runtime(repo)

    def pause(self, repo: Repo) -> dict[str, Any]:
        self._settings(repo)["paused"] = True
        repo.save_meta()
        self._halt(self.space(repo), repo, PAUSED)
        return self.runtime(repo)

    def set_hardware(self, repo: Repo, flavor: str, sleep_time: int | None) -> dict[str, Any]:
        check_flavor(flavor)
        settings = self._settings(repo)
        changed = settings.get("hardware", DEFAULT_FLAVOR) != flavor
        settings["hardware"] = flavor
        if sleep_time is not None:
            settings["sleepTime"] = check_sleep(sleep_time)
        repo.save_meta()
        if changed:
            self._restart_if_up(repo)
        return self.runtime(repo)

    def set_sleep_time(self, repo: Repo, seconds: int) -> dict[str, Any]:
        self._settings(repo)["sleepTime"] = check_sleep(seconds)
        repo.save_meta()
        return self.runtime(repo)

    def set_env(
        self, repo: Repo, kind: str, key: str, value: str | None, description: str | None
    ) -> None:
        """Add (``value`` given) or delete a variable or secret, then restart a live app."""
        if not _ENV_KEY.match(key or ""):
            raise BadRequest(f"Invalid {kind[:-1]} key {key!r}: use letters, digits and _")
        table = self._settings(repo).setdefault(kind, {})
        if value is None:
            if table.pop(key, None) is None:
                return
        else:
            entry: dict[str, Any] = {"value": str(value), "updatedAt": now_iso()}
            if description is not None:
                entry["description"] = description
            table[key] = entry
        repo.save_meta()
        self._restart_if_up(repo)

    def variables(self, repo: Repo) -> dict[str, Any]:
        return {
            k: {key: v.get(key) for key in ("value", "description", "updatedAt")}
            for k, v in self._settings(repo).get("variables", {}).items()
        }

    def secrets(self, repo: Repo) -> dict[str, Any]:
        """Keys, descriptions and times; never the values (as the Hub)."""
        return {
            k: {"description": v.get("description"), "updatedAt": v.get("updatedAt")}
            for k, v in self._settings(repo).get("secrets", {}).items()
        }

    def kill(self, repo: Repo) -> None:
        """Fault: SIGKILL the app, as an out-of-memory kill would; the stage follows."""
        space = self.space(repo)
        with space.lock:
            procs = [p for p in (space.app, space.starting) if p is not None]
        if not procs:
            raise BadRequest(f"Space {repo.repo_id} has no app process to kill")
        for proc in procs:
            proc.kill()

    def force_stage(self, repo: Repo, stage: str, message: str | None, when: str) -> None:
        """Fault: land on ``stage`` now, or make the next build end there."""
        if stage not in STAGES:
            raise BadRequest(f"Unknown stage {stage!r}: expected one of {', '.join(STAGES)}")
        space = self.space(repo)
        if when == "next_build":
            with space.lock:
                space.forced_next_build = (stage, message, space.generation)
            return
        if when != "now":
            raise BadRequest(f"force_stage: 'when' must be 'now' or 'next_build', got {when!r}")
        if stage in SERVING:
            with space.lock:
                space.generation += 1
                self._set_stage(space, stage, repo, message)
            return
        self._halt(space, repo, stage, message or f"localhub: stage forced to {stage}")

    # ------------------------------------------------------------ deployment

    def _restart_if_up(self, repo: Repo) -> None:
        space = self.space(repo)
        with space.lock:
            up = space.stage in (*BILLED, BUILDING, RUNTIME_ERROR)
        if up:
            self.restart(repo)

    def _deploy_async(self, repo: Repo, sha: str, *, rebuild: bool, keep_serving: bool) -> None:
        if self._closing.is_set():
            return
        space = self.space(repo)
        self._meter.count_start(repo.repo_id, rebuild=rebuild)
        with space.lock:
            space.generation += 1
            generation = space.generation
            serving = keep_serving and space.app is not None and space.stage in SERVING
            to_stop = [p for p in (space.starting, None if serving else space.app) if p is not None]
            space.starting = None
            if not serving:
                space.app = None
            if space.port is None:
                space.port = _free_port()
            if rebuild:
                space.build_log.close()
                space.build_log = log = LogBuffer(_log_path(space, "build.log"))
            else:
                log = LogBuffer()  # a restart keeps the last build's log, as the Hub does
            if rebuild:
                self._set_stage(space, RUNNING_BUILDING if serving else BUILDING, repo)
            else:
                self._set_stage(space, RUNNING_APP_STARTING if serving else APP_STARTING, repo)
            if not serving:
                space.sha = sha
        for proc in to_stop:
            proc.stop(self.options.stop_timeout)
        thread = threading.Thread(
            target=self._deploy,
            args=(repo, space, log, generation, sha, rebuild, serving),
            name=f"deploy-{repo.repo_id}",
            daemon=True,
        )
        with self._lock:
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)
        thread.start()

    def _current(self, space: Space, generation: int) -> bool:
        return space.generation == generation and not self._closing.is_set()

    def _fail(
        self, repo: Repo, space: Space, generation: int, sha: str, stage: str, error: str
    ) -> None:
        """End a deployment in an error stage (the serving app stops too, as on the Hub)."""
        with space.lock:
            if not self._current(space, generation):
                return
            if not space.build_log.closed:
                space.build_log.append(f"===== {stage}: {error}")
                space.build_log.close()
            space.sha = sha
        self._halt(space, repo, stage, error)

    def _deploy(
        self,
        repo: Repo,
        space: Space,
        log: LogBuffer,
        generation: int,
        sha: str,
        rebuild: bool,
        serving: bool,
    ) -> None:
        try:
            config, argv = self._check(repo, sha)
        except _DeployError as exc:
            self._fail(repo, space, generation, sha, exc.stage, str(exc))
            return
        with space.lock:
            space.sdk = config.sdk
        log.append(f"===== Build Queued at {now_iso()} / Commit SHA: {sha} =====")
        if rebuild:
            for line in self._build_lines(repo, sha, config):
                log.append(line)
            deadline = time.monotonic() + self.options.build_delay
            while time.monotonic() < deadline:
                if not self._current(space, generation):
                    return
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        with space.lock:
            forced = space.forced_next_build
            if forced is not None and forced[2] < generation:
                space.forced_next_build = None
            else:
                forced = None  # set while this build ran: it is for the next one
        if forced is not None:
            stage, message, _ = forced
            self._fail(repo, space, generation, sha, stage, message or f"localhub: forced {stage}")
            return
        if config.sdk == "static":
            log.append("===== Static Space: nothing to run =====")
            log.close()
            with space.lock:
                if self._current(space, generation):
                    space.sha = sha
                    self._set_stage(space, RUNNING, repo)
                    self._meter.bill(space.repo_id, None)  # static Spaces are never billed
            return
        workdir = space.home / "app" / f"{sha[:12]}-{generation}"
        try:
            repo.archive(sha, workdir)
        except Exception as exc:
            self._fail(repo, space, generation, sha, BUILD_ERROR, f"checkout failed: {exc}")
            return
        log.append(f"===== Application Startup at {now_iso()} =====")
        log.close()
        self._start_app(repo, space, generation, sha, argv, workdir, serving)

    def _check(self, repo: Repo, sha: str) -> tuple[SpaceConfig, list[str]]:
        """The Space's config and the command to run, or a _DeployError with its stage."""
        snap = repo.snapshot(sha)
        readme = None
        if "README.md" in snap.files:
            readme = repo.read_blob(snap.files["README.md"].oid).decode("utf-8", "replace")
        try:
            config = space_config(readme)
        except FrontMatterError as exc:
            raise _DeployError(CONFIG_ERROR, str(exc)) from None
        script = config.app_file or "app.py"
        if config.sdk == "docker":
            if "Dockerfile" not in snap.files:
                raise _DeployError(NO_APP_FILE, "No Dockerfile found: a Docker Space needs one")
            if script not in snap.files:
                raise _DeployError(
                    BUILD_ERROR,
                    f"localhub does not run Docker: it runs `python {script}` in place of the "
                    f"image, and {script} is not in the Space",
                )
        elif config.sdk == "gradio":
            if script not in snap.files:
                raise _DeployError(NO_APP_FILE, f"No application file: {script} is missing")
        elif config.sdk == "static":
            if "index.html" not in snap.files:
                raise _DeployError(NO_APP_FILE, "No application file: index.html is missing")
        else:
            raise _DeployError(
                BUILD_ERROR, f"localhub runs gradio and docker Spaces, not {config.sdk}"
            )
        return config, [self.options.python, script]

    def _build_lines(self, repo: Repo, sha: str, config: SpaceConfig) -> list[str]:
        lines = [f"localhub: building {repo.repo_id} at {sha} (sdk: {config.sdk})"]
        snap = repo.snapshot(sha)
        if config.sdk == "docker" and "Dockerfile" in snap.files:
            text = repo.read_blob(snap.files["Dockerfile"].oid).decode("utf-8", "replace")
            steps = [
                ln.strip()
                for ln in text.splitlines()
                if ln.strip() and not ln.lstrip().startswith("#") and not ln.startswith((" ", "\t"))
            ]
            for i, step in enumerate(steps, 1):
                lines.append(
                    f"--> [{i}/{len(steps)}] {step}  (not run: localhub does not run Docker)"
                )
        lines.append(
            f"--> localhub: the app runs as `{Path(self.options.python).name} "
            f"{config.app_file or 'app.py'}` from a checkout of {sha[:12]}"
        )
        return lines

    def _env(self, repo: Repo, space: Space, config_title: str, port: int) -> dict[str, str]:
        settings = self._settings(repo)
        flavor = FLAVORS[self.requested_flavor(repo)]
        home = space.home / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
        env.update(self.options.env)
        env.update({k: v["value"] for k, v in settings.get("variables", {}).items()})
        env.update({k: v["value"] for k, v in settings.get("secrets", {}).items()})
        env.update(
            {
                "SYSTEM": "spaces",
                "SPACE_ID": repo.repo_id,
                "SPACE_AUTHOR_NAME": repo.namespace,
                "SPACE_REPO_NAME": repo.name,
                "SPACE_TITLE": config_title or repo.name,
                "SPACE_HOST": self.gateway(space).host,
                "HF_ENDPOINT": self._hub_url(),
                "GRADIO_SERVER_PORT": str(port),
                "GRADIO_SERVER_NAME": "127.0.0.1",
                "PORT": str(port),
                "CPU_CORES": flavor.cpu.split()[0],
                "MEMORY": flavor.ram.replace(" GB", "Gi"),
                "HOME": str(home),
                "HF_HOME": str(home / ".cache" / "huggingface"),
                "PYTHONUNBUFFERED": "1",
                "GRADIO_ANALYTICS_ENABLED": "False",
                "HF_HUB_DISABLE_TELEMETRY": "1",
            }
        )
        if flavor.gpu:
            env["ACCELERATOR"] = flavor.gpu.lower().replace(" ", "-")
        return env

    def _start_app(
        self,
        repo: Repo,
        space: Space,
        generation: int,
        sha: str,
        argv: list[str],
        workdir: Path,
        serving: bool,
    ) -> None:
        """Start the app, wait for it to answer, then swap it in for the serving one."""
        proc = self._launch(repo, space, generation, sha, argv, workdir, serving)
        if proc is None or not self._answering(repo, space, generation, sha, proc):
            return
        with space.lock:
            stale = not self._current(space, generation) or space.starting is not proc
            if not stale:
                old, space.app, space.starting = space.app, proc, None
                space.port = proc.port
                space.sha = sha
        if stale:
            proc.stop(self.options.stop_timeout)
            return
        if old is not None:  # stopped before RUNNING is announced: one app per Space after
            old.stop(self.options.stop_timeout)
        with space.lock:
            if self._current(space, generation) and space.app is proc:
                space.running_since = None
                self._set_stage(space, RUNNING, repo)
        self._prune_checkouts(space, workdir)

    def _launch(
        self,
        repo: Repo,
        space: Space,
        generation: int,
        sha: str,
        argv: list[str],
        workdir: Path,
        serving: bool,
    ) -> AppProcess | None:
        """The app's process, started on a free port (APP_STARTING); None when this
        deployment was superseded or the process could not start (RUNTIME_ERROR)."""
        with space.lock:
            if not self._current(space, generation):
                shutil.rmtree(workdir, ignore_errors=True)
                return None
            port = _free_port(None if serving else space.port)
            if not serving:
                space.port = port
            title = ""
            with contextlib.suppress(HubError, FrontMatterError):  # the title is cosmetic
                title = space_config(
                    repo.file(sha, "README.md")[1].decode("utf-8", "replace")
                ).title
            run_log = LogBuffer(_log_path(space, "run.log"))
            run_log.append(f"===== Application Startup at {now_iso()} =====")
            try:
                proc = AppProcess(
                    argv,
                    cwd=workdir,
                    env=self._env(repo, space, title, port),
                    port=port,
                    sha=sha,
                    log=run_log,
                    on_exit=lambda p: self._on_exit(repo, space, p),
                )
            except OSError as exc:
                run_log.close()
                space.generation += 1
                space.sha = sha
                self._set_stage(space, RUNTIME_ERROR, repo, f"could not start {argv}: {exc}")
                return None
            space.run_log = run_log
            space.starting = proc
            self._set_stage(space, RUNNING_APP_STARTING if serving else APP_STARTING, repo)
            return proc

    def _answering(
        self, repo: Repo, space: Space, generation: int, sha: str, proc: AppProcess
    ) -> bool:
        """Wait until the new app answers HTTP; False (and it is dealt with) when it died,
        was superseded, or did not answer within ``startup_timeout``."""
        deadline = time.monotonic() + self.options.startup_timeout
        while True:
            if not self._current(space, generation):
                proc.stop(self.options.stop_timeout)
                return False
            if not proc.alive():
                return False  # _on_exit reports it
            if _answers_http(proc.port):
                return True
            if time.monotonic() > deadline:
                message = (
                    f"Launch timed out: the app did not answer HTTP on port {proc.port} within "
                    f"{self.options.startup_timeout:g} s (does it read GRADIO_SERVER_PORT?)"
                )
                self._fail(repo, space, generation, sha, RUNTIME_ERROR, message)
                return False
            time.sleep(0.05)

    @staticmethod
    def _prune_checkouts(space: Space, keep: Path) -> None:
        for old in (space.home / "app").iterdir():
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    def _on_exit(self, repo: Repo, space: Space, proc: AppProcess) -> None:
        """An app process ended; unless we stopped it, the Space is in RUNTIME_ERROR."""
        if proc.stopping:
            return
        with space.lock:
            if proc is not space.app and proc is not space.starting:
                return
            code = proc.returncode
            reason = (
                f"Exit code: {code}."
                if code is None or code >= 0
                else (f"Killed by signal {signal.Signals(-code).name}.")
            )
            tail = proc.log.tail()
            message = f"{reason} Reason: {tail.strip().splitlines()[-1] if tail.strip() else ''}"
            message += f"\n\nContainer logs:\n\n{tail}"
            space.sha = proc.sha
        self._halt(space, repo, RUNTIME_ERROR, message)

    def _tick(self) -> None:
        """Put idle Spaces to sleep (gcTimeout counts from when the app became RUNNING)."""
        while not self._closing.wait(0.2):
            with self._lock:
                spaces = list(self._spaces.items())
            for repo_id, space in spaces:
                repo = self._store.find("space", repo_id)
                if repo is None:
                    continue
                limit = self.sleep_time(repo)
                with space.lock:
                    since = space.running_since
                    due = (
                        space.stage == RUNNING
                        and since is not None
                        and limit is not None
                        and time.monotonic() - since >= limit
                    )
                if due:
                    self._halt(space, repo, SLEEPING)


def _log_path(space: Space, name: str) -> Path:
    """A fresh log file in the Space's folder (the Hub keeps only the latest, so do we)."""
    space.home.mkdir(parents=True, exist_ok=True)
    path = space.home / name
    path.unlink(missing_ok=True)
    return path


class _DeployError(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def new_space_settings(
    hardware: Any, sleep_time: Any, secrets: Any, variables: Any
) -> dict[str, Any]:
    """A new Space's settings from ``create_repo``'s body (400 for a malformed one)."""
    settings: dict[str, Any] = {}
    if hardware:
        settings["hardware"] = check_flavor(hardware)
    if sleep_time is not None:
        settings["sleepTime"] = check_sleep(sleep_time)
    for kind, items in (("secrets", secrets), ("variables", variables)):
        table = {}
        for item in items or []:
            if not isinstance(item, dict) or "key" not in item:
                raise BadRequest(f"{kind} must be a list of {{key, value}} objects")
            table[item["key"]] = {
                "value": str(item.get("value", "")),
                "description": item.get("description"),
                "updatedAt": now_iso(),
            }
        if table:
            settings[kind] = table
    return settings


def check_sleep(seconds: Any) -> int:
    """A sleep time the Hub accepts: a positive number of seconds, or -1 for never."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or (seconds < 1 and seconds != -1):
        raise BadRequest(f"sleep time must be a positive number of seconds or -1, got {seconds!r}")
    return seconds


__all__ = [
    "BASE_ENV",
    "BILLED",
    "ERRORS",
    "SERVING",
    "STAGES",
    "AppProcess",
    "LogBuffer",
    "Space",
    "SpaceOptions",
    "SpaceSupervisor",
    "check_sleep",
    "new_space_settings",
]
