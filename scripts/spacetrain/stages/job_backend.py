"""The job backend: train.py as an HF Job in the Space's own image.

The second :class:`~spacetrain.stages.backend.TrainingBackend`. Where the Space backend
asks the Space's Gradio API to start a run, this one asks the Hub's Jobs API
(``run_job``) to run ``python train.py <flags>`` in the image the Space was built from
(``hf.co/spaces/<owner>/<space>``: in the pipeline, `wait` has just seen it run the
synced commit), on ``job_flavor`` hardware for at most ``job_timeout`` seconds, with the
Space's own token (``SPACE_HF_TOKEN``) as the job's ``HF_TOKEN`` secret:

- ``preflight`` -> what can be checked before a job bills (the secret, the image, the
  command); train.py checks itself first thing inside the job;
- ``start`` -> ``run_job``, idempotent by run id (the job recorded in the state, or one
  found by its ``spacetrain-run`` label after a start that lost its answer);
- ``status`` / ``logs`` -> ``inspect_job`` / ``fetch_job_logs``, the log parsed into the
  same ``@@spacetrain`` step events the Space's app parses (offsets count lines);
- ``stop`` -> ``cancel_job``;
- ``release`` -> nothing to release after a job, except the job itself: one still
  queued or running is cancelled. The train stage calls it on every way out (a failure,
  the deadline, a lost Hub, an interrupt), so **a job is never left running** unless
  ``--keep-running``.

A job the Hub ended at its ``job_timeout`` is :class:`~spacetrain.errors.StageTimeout`
(exit 3), as the stage's own deadline is. Records ``job_id`` (``<namespace>/<id>``) and
``job_run_id`` in the state, beside the train stage's own keys.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spacetrain import contract
from spacetrain.errors import (
    CheckFailed,
    HubUnreachable,
    SpacetrainError,
    StageTimeout,
    UsageError,
)
from spacetrain.hub import Hub, explain, is_transient
from spacetrain.stages.backend import FINAL, LogPage, RunStatus
from spacetrain.stages.progress import Progress
from spacetrain.stages.state import PipelineState

# inspect_job's stage -> the run states of the seam (space/app.py's).
STATES = {
    "SCHEDULING": "queued",
    "RUNNING": "running",
    "COMPLETED": "succeeded",
    "ERROR": "failed",
    "CANCELED": "cancelled",
    "DELETED": "failed",
}
RUN_LABEL = "spacetrain-run"  # the job's label holding our run id (rejoin, `hf jobs ps`)
COMMIT_LABEL = "spacetrain-space-commit"  # the Space commit whose image the job runs
# Relative: the job's working directory, the image's WORKDIR on the Hub (the Space's
# user owns it) and a checkout of its own on localhub, where jobs share the host's /tmp.
OUTPUT_DIR = "spacetrain-run"
_TIMED_OUT = re.compile(r"(?i)time(d)?[ -]?out|deadline|timeoutseconds")


# ------------------------------------------------------------------ the job's spec


@dataclass(frozen=True)
class JobSettings:
    """What the Jobs API is asked for besides the command.

    Attributes:
        flavor: the hardware (a ``JobHardware`` value).
        timeout: seconds the Hub lets the job run before it ends it.
        env: plain environment variables of the job (the project's Space variables).
        space_commit: the Space commit whose image runs (recorded as a label).
    """

    flavor: str
    timeout: int
    env: dict[str, str] = field(default_factory=dict)
    space_commit: str | None = None


def space_image(space: str) -> str:
    """The Space's own image, as the Jobs API names it (``spaceId`` in the job spec)."""
    if not contract.trainer.HUB_ID_RE.fullmatch(space):
        raise UsageError(f"the job backend needs a Space id like owner/name, not {space!r}")
    return f"hf.co/spaces/{space}"


def flavor_gpus(flavor: str) -> int:
    """GPUs of a Jobs flavor: ``a10g-largex2`` 2, ``h200x8`` 8, ``a10g-small`` 1."""
    match = re.search(r"x(\d+)$", flavor)
    return int(match.group(1)) if match else 1


def job_command(params: dict[str, Any], *, gpus: int = 1) -> list[str]:
    """``python train.py --output-dir DIR <flags>``: train.py's own flags for ``params``;
    under ``torch.distributed.run`` with one process per GPU on a multi-GPU flavor, as the
    Space's app launches it (rank 0 alone logs, writes run.json and pushes).

    The flags (not ``--params-file``): a job has no file of ours, and the Space's rules
    of what it serves (``check_served``) guard the Space's API, which a job does not use.
    The values were checked by the contract already (``build_params``).

    Raises:
        UsageError: a parameter train.py has no flag for, or no base model or dataset.
    """
    launcher = ["python"]
    if gpus > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
    command = [*launcher, "train.py", "--output-dir", OUTPUT_DIR]
    for name in ("base_model", "dataset"):
        if not params.get(name):
            raise UsageError(f"the job backend needs {name} (configure it for the adapter)")
    push = params.get("push", True)
    for name, value in params.items():
        if value is None or name == "push" or (name == "output_repo" and not push):
            continue
        spec = contract.PARAMS[name]
        if spec.flag is None:
            raise UsageError(f"train.py has no flag for {name}")
        if spec.type is bool:
            if value:
                command.append(spec.flag)
            continue
        command += [spec.flag, _flag_text(value)]
    if not push or not params.get("output_repo"):
        command.append("--no-push")
    return command


def _flag_text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def job_env(settings: JobSettings) -> dict[str, str]:
    """The job's environment: the project's Space variables and the GPU expectation."""
    env = {contract.ENV_EXPECT_GPU: "0" if settings.flavor.startswith("cpu") else "1"}
    env.update(settings.env)
    env.setdefault("PYTHONUNBUFFERED", "1")  # live step events
    return env


def job_secret() -> dict[str, str]:
    """``{"HF_TOKEN": <SPACE_HF_TOKEN>}``: the job pushes with the Space's own token.

    Never the pipeline's HF_TOKEN: that one may write the Space and more, the job only
    needs to read the base and the data and write the adapter repo.

    Raises:
        UsageError: ``SPACE_HF_TOKEN`` is not set (exit 2).
    """
    from spacetrain.stages.setup import SPACE_TOKEN_ENV, space_token_from_env

    token = space_token_from_env()
    if not token:
        raise UsageError(
            f"the job backend gives the job {SPACE_TOKEN_ENV} as its HF_TOKEN secret (it "
            f"pushes the adapter): set {SPACE_TOKEN_ENV} to a token that can write the "
            "adapter repo"
        )
    return {contract.ENV_TOKEN: token}


def preflight_job(space: str, params: dict[str, Any]) -> None:
    """What can be checked before a job bills: its token, its image, its command.

    Raises:
        UsageError: no SPACE_HF_TOKEN, a bad Space id or parameters (exit 2).
    """
    job_secret()
    space_image(space)
    job_command(params)


# ------------------------------------------------------------------ events of the log


@dataclass
class JobLog(contract.trainer.EventSummary):
    """The job's log lines so far and what their ``@@spacetrain`` events said (read by
    train.py's own summary, as the Space's app reads a run's log)."""

    lines: list[str] = field(default_factory=list)

    def replace(self, lines: list[str]) -> None:
        """The whole log as fetched now (the Jobs API has no offsets): parse the new part."""
        if len(lines) < len(self.lines):  # a shorter answer (a tail cut) never loses lines
            return
        for line in lines[len(self.lines) :]:
            self.feed(line)
        self.lines = lines


def _lines(chunks: Iterable[str]) -> list[str]:
    """The log's lines (the client yields one event's data at a time)."""
    out: list[str] = []
    for chunk in chunks:
        out += str(chunk).splitlines() or [""]
    return [line for line in out if line.strip()]


# ------------------------------------------------------------------ the backend


class JobBackend:
    """Training as HF Jobs in the Space's image (see the module docstring).

    Args:
        hub: the Hub client (the token's namespace runs and pays for the jobs).
        space: the Space id whose image runs.
        settings: flavor, timeout, environment, the Space commit.
        state: where the job of a run id is recorded (rejoin).
        progress: where the backend's own lines go (the cancel).
    """

    name = "job"

    def __init__(
        self,
        hub: Hub,
        space: str,
        settings: JobSettings,
        state: PipelineState,
        *,
        progress: Progress,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.hub = hub
        self.space = space
        self.settings = settings
        self.state = state
        self.progress = progress
        self.answered = False  # a Jobs call got an answer: a job may exist (and bill)
        self.reconnects = 0
        self._sleep = sleep
        self._namespace: str | None = None
        self._jobs: dict[str, str] = {}  # run id -> job id
        self._logs: dict[str, JobLog] = {}
        self._complete: set[str] = set()  # runs whose log was read after the job ended

    @property
    def target(self) -> str:
        """What runs the training, for people."""
        return f"an HF Job in {space_image(self.space)} ({self.settings.flavor})"

    # -- where jobs live

    @property
    def namespace(self) -> str:
        """The token's user: jobs run (and bill) in its namespace."""
        if self._namespace is None:
            who = self.hub.call("check the token in HF_TOKEN", self.hub.api.whoami)
            self._namespace = str(who["name"])
        return self._namespace

    def job_id(self, run_id: str) -> str | None:
        """The job of ``run_id``: started here, or recorded in the state by an earlier train."""
        if run_id in self._jobs:
            return self._jobs[run_id]
        recorded = self.state.get("job_id")
        if recorded and self.state.get("job_run_id") == run_id:
            namespace, _, job = str(recorded).rpartition("/")
            if namespace:
                self._namespace = self._namespace or namespace
            self._jobs[run_id] = job
            return job
        return None

    def url(self, run_id: str) -> str:
        """Where a person watches the job."""
        return f"{self.hub.endpoint}/jobs/{self.namespace}/{self.job_id(run_id)}"

    # -- the seam

    def preflight(self, params: Mapping[str, Any]) -> None:
        """What can be checked before a job bills (:func:`preflight_job`); nothing for a
        run whose job is known (a rejoin is followed as it is)."""
        if self.job_id(str(params["run_id"])) is None:
            preflight_job(self.space, dict(params))

    def start(self, params: Mapping[str, Any]) -> RunStatus:
        """The job of ``params["run_id"]``: the one already known, or a new one.

        Raises:
            UsageError: the run id's job ended without an adapter (a new id is needed),
                or the Hub refused the job (exit 2).
        """
        run_id = str(params["run_id"])
        known = self.job_id(run_id)
        if known is not None:
            status = self.status(run_id)
            if status.active or status.state == "succeeded":
                return status
            raise UsageError(
                f"run {run_id} already ran as job {known} and {status.state}: start a new "
                "run (another --run-id, or none)"
            )
        found = self._find(run_id)
        if found is not None:
            self._remember(run_id, found)
            return self.status(run_id)
        labels = {RUN_LABEL: run_id}
        if self.settings.space_commit:
            self._check_image(self.settings.space_commit)
            labels[COMMIT_LABEL] = self.settings.space_commit
        spec = {
            "image": space_image(self.space),
            "command": job_command(dict(params), gpus=flavor_gpus(self.settings.flavor)),
            "env": job_env(self.settings),
            "secrets": job_secret(),
            "flavor": self.settings.flavor,
            "timeout": self.settings.timeout,
            "labels": labels,
            "name": f"spacetrain-{run_id}"[:64],
            "namespace": self.namespace,
        }
        info = self._run_job(run_id, spec)
        self._remember(run_id, info.id)
        self.progress(f"job {info.id} for run {run_id}: {self.url(run_id)}")
        return dataclasses.replace(self.status(run_id), created=True)

    def _check_image(self, commit: str) -> None:
        """The Space's head is still the synced commit: the image named without a
        revision (the Hub's documented form) is then that commit's.

        Raises:
            CheckFailed: someone pushed to the Space since `sync` (exit 1).
        """
        info = self.hub.call(f"read the Space {self.space}", self.hub.api.space_info, self.space)
        if info.sha and info.sha != commit:
            raise CheckFailed(
                f"the Space {self.space} is at {info.sha[:12]}, not at the synced commit "
                f"{commit[:12]}: its image is not this commit's; sync and wait again"
            )

    def _run_job(self, run_id: str, spec: dict[str, Any]) -> Any:
        """``run_job``, never twice for one run: a transient failure may have started the
        job all the same, so before trying again the job is looked up by its label."""
        attempt = 0
        while True:
            attempt += 1
            self.answered = True  # from here on the job may exist: release looks it up
            try:
                return self.hub.api.run_job(**spec)
            except Exception as exc:
                what = f"start a job in {spec['image']}"
                if isinstance(exc, SpacetrainError):
                    raise
                if not is_transient(exc):
                    raise explain(exc, what, endpoint=self.hub.endpoint) from exc
                self.answered = True  # it may have started: from here on, release cancels
                if attempt >= 3:
                    failure = explain(exc, what, endpoint=self.hub.endpoint)
                    raise HubUnreachable(f"{failure} after {attempt} attempt(s)") from exc
                found = self._find(run_id)
                if found is not None:
                    return self._inspect(found)[0]
                self._sleep(min(10.0, 2.0**attempt))

    def _find(self, run_id: str) -> str | None:
        """A queued or running job labelled with ``run_id`` (a start that lost its answer)."""
        try:
            jobs = list(
                self.hub.api.list_jobs(
                    labels={RUN_LABEL: run_id},
                    namespace=self.namespace,
                    status=["SCHEDULING", "RUNNING"],
                )
            )
        except Exception:  # a Hub that cannot list jobs: nothing found, nothing lost
            return None
        return jobs[0].id if jobs else None

    def _remember(self, run_id: str, job: str) -> None:
        self._jobs[run_id] = job
        self.state.update(job_id=f"{self.namespace}/{job}", job_run_id=run_id)

    def status(self, run_id: str) -> RunStatus:
        """The job's stage and what its log said so far, as ``training_status`` says it.

        Raises:
            StageTimeout: the Hub ended the job at its ``job_timeout`` (exit 3).
            UsageError: no job is known for ``run_id``.
        """
        job = self._require(run_id)
        info, stage = self._inspect(job)
        self.answered = True
        state = STATES.get(stage, "running")
        log = self._refresh(run_id)
        if state in FINAL:
            self._complete.add(run_id)  # read after the end: the whole log
        step = log.last_step or {}
        pushed = log.pushed or {}
        total = step.get("total", log.total)
        error = None
        if state == "succeeded" and log.error is not None:
            state = "failed"  # exit 0 with an error event is not a success
        if state in ("failed", "cancelled"):
            error = (log.error or {}).get("error") or info.status.message
            error = error or f"the job ended {stage}"
            if state == "failed" and self._timed_out(info, log):
                self.state.update(run_state="failed")  # ended: the next train starts anew
                raise StageTimeout(
                    f"job {job} of run {run_id} reached its timeout ({self.settings.timeout} "
                    f"s, job_timeout) and was ended by the Hub: {info.status.message or stage}"
                )
        if log.done and log.done.get("steps"):
            step = {**step, "step": log.done["steps"]}
            total = log.done["steps"]
        return RunStatus(
            run_id=run_id,
            state=state,
            created_at=info.created_at.isoformat() if info.created_at else None,
            step=int(step.get("step") or 0),
            total=int(total) if total else None,
            epoch=None if step.get("epoch") is None else float(step["epoch"]),
            loss=None if step.get("loss") is None else float(step["loss"]),
            adapter_repo=pushed.get("repo"),
            adapter_revision=pushed.get("revision"),
            output_repo=_flag(info.command, "--output-repo"),
            error=error,
            log_tail="\n".join(log.lines[-40:]) if error else "",
            raw={"job_id": job, "stage": stage, "message": info.status.message},
        )

    def _timed_out(self, info: Any, log: JobLog) -> bool:
        """The Hub ended the job at its timeout: its message says so, or the job ran its
        whole timeout and train.py recorded no failure of its own (a SIGTERM from the Hub
        makes train.py record a "cancelled" error event)."""
        if _TIMED_OUT.search(str(info.status.message or "")):
            return True
        if log.error is not None and log.error.get("state") != "cancelled":
            return False
        running = getattr(info.durations, "running_secs", None) if info.durations else None
        return running is not None and running >= self.settings.timeout

    def logs(self, run_id: str, offset: int) -> LogPage:
        """The log lines past line ``offset`` (the Jobs API has no byte offsets)."""
        log = self._logs.get(run_id)
        if log is None:
            log = self._refresh(run_id)
        lines = log.lines[offset:]
        text = "\n".join(lines) + "\n" if lines else ""
        return LogPage(text, offset + len(lines), done=run_id in self._complete)

    def _refresh(self, run_id: str) -> JobLog:
        job = self._require(run_id)
        log = self._logs.setdefault(run_id, JobLog())
        chunks = self.hub.call(
            f"read the logs of job {job}",
            lambda: list(
                self.hub.api.fetch_job_logs(job_id=job, namespace=self.namespace, follow=False)
            ),
        )
        log.replace(_lines(chunks))
        return log

    def stop(self, run_id: str) -> str | None:
        """``cancel_job``; the job's state after it, or None when the Hub did not answer."""
        job = self.job_id(run_id)
        if job is None:
            return None
        self.progress(f"cancelling job {job} (run {run_id})")
        try:  # retried like every Hub call: one 5xx must not leave a job billing
            self.hub.call(
                f"cancel job {job}", self.hub.api.cancel_job, job_id=job, namespace=self.namespace
            )
        except SpacetrainError as exc:
            self.progress(f"could not cancel job {job}: {exc}")
            return None
        for _ in range(10):  # the Hub says CANCELED once the container is gone
            try:
                _, stage = self._inspect(job)
            except SpacetrainError:
                break
            if STATES.get(stage) in FINAL:
                self.progress(f"job {job} is {stage}")
                return STATES[stage]
            self._sleep(0.5)
        return "cancelled"

    def release(self, *, ours: str | None) -> str:
        """Nothing to release after a job, except the job itself: ``ours``, still queued
        or running (a deadline, a lost Hub, a failure of ours), is cancelled."""
        if ours is None:
            return ""
        if self.job_id(ours) is None:
            # A start that never got its answer (an interrupt or a lost Hub during run_job)
            # may have started the job all the same: look it up by its label.
            found = self._find(ours) if self.answered else None
            if found is None:
                return ""
            self._remember(ours, found)
        try:
            _, stage = self._inspect(self._jobs[ours])
        except SpacetrainError:
            stage = "unknown"  # cancel it all the same: a job must not bill on unseen
        if STATES.get(stage) in FINAL:
            return ""
        stopped = self.stop(ours)
        if stopped in FINAL:
            self.state.update(run_state=stopped)
            return "cancelled"
        raise HubUnreachable(
            f"could not cancel job {self._jobs[ours]} of run {ours}: it may still be "
            f"billing; cancel it with `hf jobs cancel {self._jobs[ours]}`"
        )

    def close(self) -> None:
        """Nothing to close: every call is one HTTP request."""

    def _inspect(self, job: str) -> tuple[Any, str]:
        """``inspect_job`` through the retry primitive, and the job's stage as text."""
        info = self.hub.call(
            f"inspect job {job}", self.hub.api.inspect_job, job_id=job, namespace=self.namespace
        )
        return info, str(getattr(info.status.stage, "value", info.status.stage))

    def _require(self, run_id: str) -> str:
        job = self.job_id(run_id)
        if job is None:
            raise UsageError(f"no job is known for run {run_id}")
        return job


def _flag(command: list[str] | None, flag: str) -> str | None:
    """The value after ``flag`` in the job's command, if any."""
    words = list(command or [])
    return words[words.index(flag) + 1] if flag in words[:-1] else None


def choose_backend(config: Any, adapter: str | None, override: str | None = None) -> str:
    """``--backend``, else the adapter's ``backend``, else the project's."""
    if override:
        return override
    if adapter is None and len(config.adapters) != 1:
        return str(config.backend)
    return str(config.adapter(adapter).backend)


def settings_for(config: Any, adapter: Any, state: PipelineState) -> JobSettings:
    """The adapter's job settings (else the project's), the Space variables as env."""
    source = adapter if adapter is not None else config
    return JobSettings(
        flavor=source.job_flavor,
        timeout=int(source.job_timeout),
        env=dict(config.variables),
        space_commit=state.get("space_commit"),
    )


def job_backend(
    hub: Hub, config: Any, adapter: Any, state: PipelineState, *, space: str, progress: Progress
) -> JobBackend:
    """The job backend for ``adapter`` of ``config`` (the train command, the pipeline)."""
    return JobBackend(hub, space, settings_for(config, adapter, state), state, progress=progress)


__all__ = [
    "STATES",
    "JobBackend",
    "JobLog",
    "JobSettings",
    "choose_backend",
    "job_backend",
    "job_command",
    "job_env",
    "job_secret",
    "preflight_job",
    "settings_for",
    "space_image",
]
