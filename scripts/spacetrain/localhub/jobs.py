"""HF Jobs without a cluster: a Job runs its command as a local process from a checkout
of the Space commit its image names.

huggingface_hub's ``run_job(image="hf.co/spaces/<owner>/<space>", ...)`` sends
``spaceId``; the Hub runs the command in that Space's image. Here the "image" is a
checkout of the Space's commit (the head of ``main``, or ``<owner>/<space>@<rev>``) and
the command runs in it as a "container" (:mod:`procs`, the same tagging that ends a
Space's tree), with the Job's environment and secrets, ``HF_ENDPOINT`` pointing back
at localhub and ``python`` meaning the interpreter that runs Space apps.

Rules, as strict as the Hub where safety or cost depend on them:

- every Jobs call needs a token (:meth:`Auth.check_namespace`): running and cancelling
  need write rights on the namespace, inspecting, listing and logs read rights; the
  Space whose image is used must be visible to the caller;
- a Job is SCHEDULING until its process starts, RUNNING while it runs, then COMPLETED
  (exit 0), ERROR (another exit, a kill, a start failure, its timeout: 30 minutes
  unless it says otherwise, as on the Hub) or CANCELED;
- the meter (:class:`billing.BillingMeter`, group "jobs") runs from the start of the
  process to the end of its whole tree: cancel and timeout end the tree first
  (SIGTERM, then SIGKILL to every tagged process), then stop the meter;
- secrets reach the process only: ``inspect_job`` lists their names, never values, and
  nothing here writes them to a file.

Nothing here parses HTTP: ``api_jobs.py`` turns requests into these calls.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacetrain.localhub.auth import Auth, Caller, user_id
from spacetrain.localhub.billing import FLAVORS, BillingMeter, Flavor
from spacetrain.localhub.errors import (
    BadRequest,
    HubError,
    NotFound,
    RepoNotFound,
    Unprocessable,
)
from spacetrain.localhub.spaces import BASE_ENV, AppProcess, LogBuffer, SpaceOptions
from spacetrain.localhub.store import RepoStore, now_iso

# Stages (huggingface_hub's JobStage).
SCHEDULING = "SCHEDULING"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
CANCELED = "CANCELED"
ERROR = "ERROR"
DELETED = "DELETED"
STAGES = (SCHEDULING, RUNNING, COMPLETED, CANCELED, ERROR, DELETED)
TERMINAL = (COMPLETED, CANCELED, ERROR, DELETED)

# The first log line of every Job; huggingface_hub's fetch_job_logs drops it.
STARTED_LINE = "===== Job started at {at} ====="
_UNSUPPORTED = ("volumes", "expose", "ssh", "network", "resourceGroupId")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_LABEL_KEY = re.compile(r"^[^=\s]+$")  # list_jobs filters by "key=value"
_REVISION = re.compile(r"^(?P<id>[^/@:]+/[^/@:]+)(?:[@:](?P<rev>.+))?$")


def _job_flavors() -> dict[str, Flavor]:
    """huggingface_hub 2.4.0's JobHardware, in its order, priced for Jobs.

    CPU prices and the T4s' storage are from huggingface.co/docs/hub/jobs-pricing
    (CPU basic is not free for a Job); the GPUs cost what the same hardware costs a
    Space. The H200 rows were not in what we could read: their prices are estimates.
    """
    space = FLAVORS
    rows = [
        Flavor("cpu-basic", "CPU Basic", "2 vCPU", "16 GB", usd_per_hour=0.01, storage="50 GB"),
        Flavor("cpu-upgrade", "CPU Upgrade", "8 vCPU", "32 GB", usd_per_hour=0.03, storage="50 GB"),
        Flavor(
            "cpu-performance",
            "CPU Performance",
            "32 vCPU",
            "256 GB",
            None,
            0,
            None,
            1.90,
            "1024 GB",
        ),
        Flavor("cpu-xl", "CPU XL", "16 vCPU", "124 GB", None, 0, None, 1.00, "1000 GB"),
        dataclasses.replace(space["t4-small"], storage="50 GB"),
        dataclasses.replace(space["t4-medium"], storage="100 GB"),
        *(
            space[name]
            for name in (
                "l4x1",
                "l4x4",
                "l40sx1",
                "l40sx4",
                "l40sx8",
                "a10g-small",
                "a10g-large",
                "a10g-largex2",
                "a10g-largex4",
                "a100-large",
                "a100x4",
                "a100x8",
            )
        ),
        *(
            Flavor(
                f"h200{suffix}",
                f"{n}x Nvidia H200" if n > 1 else "Nvidia H200",
                f"{23 * n} vCPU",
                f"{256 * n} GB",
                "H200",
                n,
                f"{141 * n} GB",
                5.00 * n,  # estimate: not read
            )
            for suffix, n in (("", 1), ("x2", 2), ("x4", 4), ("x8", 8))
        ),
        *(space[f"rtx-pro-6000{s}"] for s in ("", "x2", "x4", "x8")),
    ]
    return {f.name: f for f in rows}


JOB_FLAVORS = _job_flavors()
DEFAULT_JOB_FLAVOR = "cpu-basic"
# A Job sent without ``timeoutSeconds`` is stopped after 30 minutes on the Hub (the
# huggingface_hub maintainers, PRs #3281 and #3665): a training Job must send its own.
DEFAULT_TIMEOUT_S = 30 * 60


class _JobLog(LogBuffer):
    """A Job's output. The process's end does not close it (AppProcess would): the
    Job closes it once its stage is final, so a follower that sees the stream end and
    asks for the stage (huggingface_hub does) reads a terminal one."""

    def close(self) -> None:
        """Ignored: see :meth:`finish`."""

    def finish(self) -> None:
        super().close()


@dataclass
class Job:
    """One Job: what was asked, and where it is."""

    id: str
    namespace: str
    user: str  # who ran it (the initiator)
    space_id: str  # as asked, with its revision if one was named
    repo_id: str
    sha: str
    command: list[str]
    arguments: list[str]
    environment: dict[str, str]
    secrets: dict[str, str] = field(repr=False)
    flavor: str = DEFAULT_JOB_FLAVOR
    timeout: int = DEFAULT_TIMEOUT_S
    labels: dict[str, str] = field(default_factory=dict)
    home: Path = Path()
    log: _JobLog = field(default_factory=_JobLog)
    created: float = field(default_factory=time.time)
    started: float | None = None
    started_mono: float | None = None
    finished: float | None = None
    stage: str = SCHEDULING
    message: str | None = None
    proc: AppProcess | None = None
    # (stage, message) decided before the process is gone: a cancel or a timeout.
    ending: tuple[str, str | None] | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def done(self) -> bool:
        return self.stage in TERMINAL

    def to_json(self) -> dict[str, Any]:
        """``inspect_job``'s JobInfo: secrets by name only, never their values."""
        with self.lock:
            now = time.time()
            end = self.finished if self.finished is not None else now
            scheduled = (self.started if self.started is not None else end) - self.created
            return {
                "id": self.id,
                "createdAt": now_iso(self.created),
                "startedAt": now_iso(self.started) if self.started is not None else None,
                "finishedAt": now_iso(self.finished) if self.finished is not None else None,
                "spaceId": self.space_id,
                "command": list(self.command),
                "arguments": list(self.arguments),
                "environment": dict(self.environment),
                "secrets": dict.fromkeys(self.secrets),
                "flavor": self.flavor,
                "labels": dict(self.labels) or None,
                "timeoutSeconds": self.timeout,
                "status": {"stage": self.stage, "message": self.message},
                "durations": {
                    "schedulingSecs": int(scheduled),
                    "runningSecs": int(end - self.started) if self.started is not None else None,
                    "totalSecs": int(end - self.created),
                },
                "owner": {"id": user_id(self.namespace), "name": self.namespace, "type": "user"},
                "initiator": {"type": "user", "id": user_id(self.user), "name": self.user},
            }


@dataclass
class _StartFault:
    """Fault: the next ``count`` Jobs (of ``namespace``, or any) fail to start."""

    namespace: str | None
    message: str
    count: int
    acted: int = 0


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{what} must be a list of strings")
    return list(value)


def _mapping(value: Any, what: str, key: re.Pattern[str] = _ENV_KEY) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be an object of NAME: value")
    out = {}
    for name, item in value.items():
        if not isinstance(name, str) or not key.match(name):
            raise BadRequest(f"{what}: {name!r} is not a valid name")
        if item is None or isinstance(item, dict | list):
            raise BadRequest(f"{what}: {name} needs a string value")
        out[name] = str(item)
    return out


def _timeout(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise BadRequest(f"timeoutSeconds must be a positive number of seconds, got {value!r}")
    return int(value)


class JobSupervisor:
    """Every Job's process, stage, log and bill."""

    def __init__(
        self,
        store: RepoStore,
        auth: Auth,
        *,
        root: Path,
        hub_url: Callable[[], str],
        options: SpaceOptions | None = None,
    ) -> None:
        self._store = store
        self._auth = auth
        self._root = root
        self._hub_url = hub_url
        self.options = options or SpaceOptions()
        self.meter = BillingMeter(flavors=JOB_FLAVORS, group="jobs")
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._start_faults: list[_StartFault] = []
        self._closing = threading.Event()
        self._ticker: threading.Thread | None = None
        self.stopping = threading.Event()  # set by the server: log streams end

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._closing.clear()
        self._ticker = threading.Thread(target=self._tick, name="localhub-jobs", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        """End every running Job's tree (the server stops: nothing outlives it)."""
        self._closing.set()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            self._end(job, CANCELED, "localhub stopped")
        if self._ticker is not None:
            self._ticker.join(2)
            self._ticker = None

    def reset(self) -> None:
        self.close()
        with self._lock:
            self._jobs.clear()
            self._start_faults.clear()
        self.meter.reset()
        shutil.rmtree(self._root / "_jobs", ignore_errors=True)
        self.start()

    # ------------------------------------------------------------ the API

    def run(self, caller: Caller, namespace: str, spec: dict[str, Any]) -> Job:
        """Start a Job in ``namespace`` (``run_job``'s body); it starts SCHEDULING."""
        user = self._auth.check_namespace(caller, namespace, write=True)
        for key in _UNSUPPORTED:
            if spec.get(key):
                raise Unprocessable(f"localhub does not emulate Job {key}")
        if spec.get("attempts") not in (None, 1):
            raise Unprocessable("localhub runs a Job once: attempts other than 1 are not emulated")
        command = _strings(spec.get("command"), "command")
        if not command:
            raise BadRequest("command is required: a non-empty list of strings")
        flavor = spec.get("flavor") or DEFAULT_JOB_FLAVOR
        if flavor not in JOB_FLAVORS:
            raise BadRequest(f"Invalid flavor {flavor!r}: see list_jobs_hardware()")
        space_id, repo_id, sha = self._image(caller, spec)
        labels = _mapping(spec.get("labels"), "labels", _LABEL_KEY)
        job_id = uuid.uuid4().hex[:24]
        home = self._root / "_jobs" / job_id
        home.mkdir(parents=True, exist_ok=True)
        job = Job(
            id=job_id,
            namespace=namespace,
            user=user,
            space_id=space_id,
            repo_id=repo_id,
            sha=sha,
            command=command,
            arguments=_strings(spec.get("arguments"), "arguments"),
            environment=_mapping(spec.get("environment"), "environment"),
            secrets=_mapping(spec.get("secrets"), "secrets"),
            flavor=flavor,
            timeout=_timeout(spec.get("timeoutSeconds")) or DEFAULT_TIMEOUT_S,
            labels=labels,
            home=home,
            log=_JobLog(home / "job.log"),
        )
        with self._lock:
            self._jobs[job_id] = job
        threading.Thread(
            target=self._launch, args=(job,), name=f"job-{job_id}", daemon=True
        ).start()
        return job

    def get(self, caller: Caller, namespace: str, job_id: str) -> Job:
        """``inspect_job``: read rights on the namespace; 404 for an unknown id."""
        self._auth.check_namespace(caller, namespace, write=False)
        return self._find(namespace, job_id)

    def list(
        self, caller: Caller, namespace: str, stages: list[str], labels: list[str]
    ) -> list[Job]:
        """``list_jobs``: the namespace's Jobs, newest first, filtered by stage and by
        ``key=value`` labels (all must match)."""
        self._auth.check_namespace(caller, namespace, write=False)
        wanted = dict(item.partition("=")[::2] for item in labels)
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.namespace == namespace]
        return [
            j
            for j in sorted(jobs, key=lambda j: j.created, reverse=True)
            if (not stages or j.stage in stages)
            and all(j.labels.get(k) == v for k, v in wanted.items())
        ]

    def cancel(self, caller: Caller, namespace: str, job_id: str) -> Job:
        """``cancel_job``: write rights; ends the whole tree, then CANCELED. A Job that
        already ended stays as it was."""
        user = self._auth.check_namespace(caller, namespace, write=True)
        job = self._find(namespace, job_id)
        self._end(job, CANCELED, f"Canceled by {user}")
        return job

    def follow(self, job: Job, tail: int | None = None) -> Iterator[tuple[float, str] | None]:
        """The Job's log lines (the last ``tail`` ones, or all), then new ones until it
        ends; ``None`` now and then while nothing comes (a keep-alive)."""
        start = max(0, job.log.size() - tail) if tail is not None else 0
        return job.log.follow(self.stopping, start=start)

    @staticmethod
    def hardware() -> list[dict[str, Any]]:
        """``list_jobs_hardware``."""
        return [f.to_json() for f in JOB_FLAVORS.values()]

    def billing(self, viewer: Caller | None = None) -> dict[str, Any]:
        """The meter, one entry per Job, with the namespace it bills. For a ``viewer``
        (a user's look, not the admin's): the Jobs of namespaces it may read, no total."""
        with self._lock:
            owners = {job_id: job.namespace for job_id, job in self._jobs.items()}

        def readable(job_id: str) -> bool:
            try:
                self._auth.check_namespace(viewer, owners.get(job_id, ""), write=False)
            except HubError:
                return False
            return True

        snap = self.meter.snapshot(None if viewer is None else readable)
        for job_id, entry in snap["jobs"].items():
            entry.pop("builds", None)
            entry.pop("restarts", None)
            entry["namespace"] = owners.get(job_id)
        return snap

    # ------------------------------------------------------------ faults

    def apply_fault(self, action: dict[str, Any]) -> None:
        """``{"kill_job": id}`` SIGKILLs a Job's tree (an OOM kill: ERROR);
        ``{"job_start_error": {"namespace", "message", "count"}}`` makes the next Jobs
        fail before their process starts (ERROR, never billed)."""
        if "kill_job" in action:
            with self._lock:
                job = self._jobs.get(str(action["kill_job"]))
            if job is None:
                raise NotFound(f"no Job {action['kill_job']!r}")
            with job.lock:
                proc = job.proc
            if proc is None or job.done:
                raise BadRequest(f"Job {job.id} is not running ({job.stage})")
            proc.kill()
            return
        spec = action["job_start_error"]
        if not isinstance(spec, dict):
            raise BadRequest("job_start_error needs {namespace?, message?, count?}")
        count = spec.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BadRequest(f"job_start_error: count must be a positive integer, got {count!r}")
        namespace = spec.get("namespace")
        with self._lock:
            self._start_faults.append(
                _StartFault(
                    namespace=str(namespace) if namespace else None,
                    message=str(spec.get("message") or "localhub: injected Job start failure"),
                    count=count,
                )
            )

    def _start_fault(self, namespace: str) -> str | None:
        with self._lock:
            for fault in self._start_faults:
                if fault.acted < fault.count and fault.namespace in (None, namespace):
                    fault.acted += 1
                    return fault.message
        return None

    # ------------------------------------------------------------ inside

    def _find(self, namespace: str, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.namespace != namespace:
            raise NotFound(f"Job {namespace}/{job_id} not found")
        return job

    def _image(self, caller: Caller, spec: dict[str, Any]) -> tuple[str, str, str]:
        """The Space (as asked), its repo id and the commit whose checkout is the image."""
        space_id = spec.get("spaceId")
        if not isinstance(space_id, str) or not space_id:
            image = spec.get("dockerImage")
            raise Unprocessable(
                f"localhub runs Jobs from Space images only (hf.co/spaces/<owner>/<space>), "
                f"not {image!r}: it has no Docker"
            )
        match = _REVISION.match(space_id)
        if match is None:
            raise BadRequest(f"spaceId {space_id!r} is not <owner>/<space>[@<revision>]")
        repo = self._store.find("space", match["id"])
        if repo is None or not self._auth.can_see(caller, repo.private, "space", repo.repo_id):
            raise RepoNotFound("space", match["id"])
        return space_id, repo.repo_id, repo.resolve(match["rev"])

    def _env(self, job: Job) -> dict[str, str]:
        home, tmp = job.home / "home", job.home / "tmp"
        home.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(parents=True, exist_ok=True)
        env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
        bindir = str(Path(self.options.python).parent)  # torchrun, accelerate: same venv
        env["PATH"] = os.pathsep.join(p for p in (bindir, env.get("PATH")) if p)
        env.update(self.options.env)
        env.update(
            {
                "HF_ENDPOINT": self._hub_url(),
                "HOME": str(home),
                "TMPDIR": str(tmp),  # a container's own /tmp (a literal /tmp path is shared)
                "HF_HOME": str(home / ".cache" / "huggingface"),
                "PYTHONUNBUFFERED": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1",
            }
        )
        env.update(job.environment)
        env.update(job.secrets)
        return env

    def _argv(self, job: Job) -> list[str]:
        argv = [*job.command, *job.arguments]
        if argv[0] in ("python", "python3"):  # the image's Python is the one running apps
            argv[0] = self.options.python
        return argv

    def _launch(self, job: Job) -> None:
        """Check the Space commit out and start the command (SCHEDULING → RUNNING)."""
        fault = self._start_fault(job.namespace)
        if fault is not None:
            self._finish(job, ERROR, fault)
            return
        workdir = job.home / "work"
        try:
            repo = self._store.find("space", job.repo_id)
            if repo is None:
                raise FileNotFoundError(f"the Space {job.repo_id} no longer exists")
            repo.archive(job.sha, workdir)
        except Exception as exc:
            self._finish(job, ERROR, f"could not pull the image of {job.space_id}: {exc}")
            return
        with job.lock:  # held while starting: a fast exit reports after RUNNING
            if job.done or job.ending is not None or self._closing.is_set():
                self._finish(job, *(job.ending or (CANCELED, None)))
                return
            job.log.append(STARTED_LINE.format(at=now_iso()))
            # The meter runs from the spawn: a command that exits while AppProcess is
            # still being set up (a loaded machine) has run, and is billed for it.
            self.meter.bill(job.id, job.flavor)
            try:
                proc = AppProcess(
                    self._argv(job),
                    cwd=workdir,
                    env=self._env(job),
                    port=0,
                    sha=job.sha,
                    log=job.log,
                    on_exit=lambda p: self._on_exit(job, p),
                )
            except OSError as exc:
                self._finish(job, ERROR, f"could not start {job.command[0]!r}: {exc.strerror}")
                return
            job.proc = proc
            job.started = time.time()
            job.started_mono = time.monotonic()
            job.stage = RUNNING

    def _on_exit(self, job: Job, proc: AppProcess) -> None:
        """The process (and its tree) ended: the stage says how."""
        with job.lock:
            if job.ending is not None:
                stage, message = job.ending
            else:
                code = proc.returncode
                if code == 0:
                    stage, message = COMPLETED, None
                elif code is not None and code < 0:
                    stage, message = ERROR, f"Killed by signal {signal.Signals(-code).name}."
                else:
                    stage, message = ERROR, f"Job failed with exit code: {code}."
        self._finish(job, stage, message)

    def _finish(self, job: Job, stage: str, message: str | None) -> None:
        """The one way a Job ends: stage, end time and meter first, then the log closes."""
        with job.lock:
            if job.done:
                return
            job.stage, job.message = stage, message
            job.finished = time.time()
            self.meter.bill(job.id, None)
        job.log.finish()
        shutil.rmtree(job.home / "work", ignore_errors=True)

    def _end(self, job: Job, stage: str, message: str | None) -> None:
        """Cancel or time out: end the whole tree (SIGTERM, then SIGKILL to every tagged
        process), then land on ``stage``. Returns once the tree is gone."""
        with job.lock:
            if job.done or job.ending is not None:
                proc = None if job.done else job.proc
                if proc is None:
                    return
            else:
                job.ending = (stage, message)
                proc = job.proc
            if proc is None:  # still scheduling: it never starts
                self._finish(job, stage, message)
                return
        proc.stop(self.options.stop_timeout)
        self._finish(job, *(job.ending or (stage, message)))

    def _tick(self) -> None:
        """End Jobs that ran past their timeout."""
        while not self._closing.wait(0.1):
            now = time.monotonic()
            with self._lock:
                jobs = list(self._jobs.values())
            for job in jobs:
                with job.lock:
                    due = (
                        job.stage == RUNNING
                        and job.ending is None
                        and job.started_mono is not None
                        and now - job.started_mono >= job.timeout
                    )
                    if due:  # decided here, so the next tick does not stop it twice
                        job.ending = (ERROR, f"Job timed out after {job.timeout} seconds")
                if due:
                    threading.Thread(
                        target=self._end,
                        args=(job, ERROR, None),
                        name=f"timeout-{job.id}",
                        daemon=True,
                    ).start()


__all__ = [
    "CANCELED",
    "COMPLETED",
    "DEFAULT_JOB_FLAVOR",
    "DEFAULT_TIMEOUT_S",
    "ERROR",
    "JOB_FLAVORS",
    "RUNNING",
    "SCHEDULING",
    "STAGES",
    "TERMINAL",
    "Job",
    "JobSupervisor",
]
