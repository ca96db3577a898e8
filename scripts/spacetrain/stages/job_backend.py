"""The job backend: train.py as an HF Job in the Space's own image, followed to the end.

Where the Space backend asks the Space's Gradio API to start a run, this one asks the
Hub's Jobs API (``run_job``) to run ``python train.py <flags>`` in the image the Space
was built from (``hf.co/spaces/<owner>/<space>``: `wait` made sure it is the synced
commit's), on ``job_flavor`` hardware for at most ``job_timeout`` seconds, with the
Space's own token (``SPACE_HF_TOKEN``) as the job's ``HF_TOKEN`` secret. It then
follows the job with ``inspect_job`` and ``fetch_job_logs``, parsing the same
``@@spacetrain`` step events the Space's app parses, until the job ends.

A job bills from its start to its end and there is nothing to release afterwards, so
the one rule is: **a job is never left running**. Every way out of :func:`run_job_training`
while the job is still queued or running (SIGINT, SIGTERM, the deadline, a lost Hub,
a bug) cancels it (``cancel_job``) first, unless ``keep_running`` says otherwise.

Records in the state, as the Space backend does: ``run_id``, ``run_state``,
``adapter_repo``, ``adapter_revision``; and ``job_id`` (``<namespace>/<id>``), so a
second ``spacetrain train`` with the same run id rejoins the job instead of starting
another.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from spacetrain import contract
from spacetrain.errors import (
    HubUnreachable,
    SpacetrainError,
    StageTimeout,
    TrainingFailed,
    UsageError,
)
from spacetrain.hub import Hub, explain, is_transient
from spacetrain.stages.state import PipelineState

Say = Callable[[str], None]

# inspect_job's stage -> the run states of the Space backend (space/app.py).
STATES = {
    "SCHEDULING": "queued",
    "RUNNING": "running",
    "COMPLETED": "succeeded",
    "ERROR": "failed",
    "CANCELED": "cancelled",
    "DELETED": "failed",
}
ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
RUN_LABEL = "spacetrain-run"  # the job's label holding our run id (rejoin, `hf jobs ps`)
COMMIT_LABEL = "spacetrain-space-commit"  # the Space commit whose image the job runs
OUTPUT_DIR = "/tmp/spacetrain-run"  # noqa: S108 - inside the job's own container
CANCEL_DEADLINE = 30.0  # seconds a cancel may take (CI sends SIGKILL some time after SIGTERM)
_TIMED_OUT = re.compile(r"(?i)time(d)?[ -]?out|deadline|timeoutseconds")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def job_command(params: dict[str, Any]) -> list[str]:
    """``python train.py --output-dir DIR <flags>``: train.py's own flags for ``params``.

    The flags (not ``--params-file``): a job has no file of ours, and the Space's rules
    of what it serves (``check_served``) guard the Space's API, which a job does not use.
    The values were checked by the contract already (``build_params``).

    Raises:
        UsageError: a parameter train.py has no flag for, or no base model or dataset.
    """
    command = ["python", "train.py", "--output-dir", OUTPUT_DIR]
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
class JobLog:
    """The job's log lines so far and what their ``@@spacetrain`` events said."""

    lines: list[str] = field(default_factory=list)
    last_step: dict[str, Any] = field(default_factory=dict)
    total: int | None = None
    pushed: dict[str, Any] | None = None
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def replace(self, lines: list[str]) -> None:
        """The whole log as fetched now (the Jobs API has no offsets): parse the new part."""
        if len(lines) < len(self.lines):  # a shorter answer (a tail cut) never loses lines
            return
        for line in lines[len(self.lines) :]:
            self._feed(line)
        self.lines = lines

    def _feed(self, line: str) -> None:
        if not line.startswith(contract.EVENT_PREFIX):
            return
        try:
            event = json.loads(line[len(contract.EVENT_PREFIX) :])
        except ValueError:
            return
        if not isinstance(event, dict):
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


def _lines(chunks: Iterable[str]) -> list[str]:
    out: list[str] = []
    for chunk in chunks:
        out += str(chunk).splitlines() or [""]
    return [line for line in out if line.strip()]


# ------------------------------------------------------------------ the backend


class JobBackend:
    """One project's runs as HF Jobs: start (idempotent by run id), status, logs, stop.

    The same questions the Space backend asks the Space's Gradio API, answered from the
    Jobs API; ``status`` answers in the shape of ``training_status`` (``state``, ``step``,
    ``total``, ``epoch``, ``loss``, ``adapter``, ``error``, ``log_tail``).
    """

    name = "job"

    def __init__(
        self,
        hub: Hub,
        space: str,
        settings: JobSettings,
        state: PipelineState,
        *,
        say: Say = _say,
    ) -> None:
        self.hub = hub
        self.space = space
        self.settings = settings
        self.state = state
        self.say = say
        self._namespace: str | None = None
        self._jobs: dict[str, str] = {}  # run id -> job id
        self._logs: dict[str, JobLog] = {}
        self._timeout_hit: set[str] = set()

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
        if recorded and self.state.get("run_id") == run_id:
            namespace, _, job = str(recorded).rpartition("/")
            if namespace:
                self._namespace = self._namespace or namespace
            self._jobs[run_id] = job
            return job
        return None

    def url(self, run_id: str) -> str:
        """Where a person watches the job."""
        return f"{self.hub.endpoint}/jobs/{self.namespace}/{self.job_id(run_id)}"

    # -- the backend's questions

    def preflight(self, params: dict[str, Any]) -> None:
        """What can be checked before a job bills (:func:`preflight_job`)."""
        preflight_job(self.space, params)

    def start(self, params: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The job of ``params["run_id"]``: the one already known, or a new one.

        Returns:
            ``(status, created)``.
        """
        run_id = str(params["run_id"])
        known = self.job_id(run_id)
        if known is not None:
            status = self.status(run_id)
            if status["state"] in ACTIVE or status["state"] == "succeeded":
                return status, False
            # the earlier job of this run id ended without an adapter: a new run id is needed
            raise UsageError(
                f"run {run_id} already ran as job {known} and {status['state']}: start a new "
                "run (another --run-id, or none)"
            )
        found = self._find(run_id)
        if found is not None:
            self._remember(run_id, found)
            return self.status(run_id), False
        labels = {RUN_LABEL: run_id}
        if self.settings.space_commit:
            labels[COMMIT_LABEL] = self.settings.space_commit
        spec = {
            "image": space_image(self.space),
            "command": job_command(params),
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
        return self.status(run_id), True

    def _run_job(self, run_id: str, spec: dict[str, Any]) -> Any:
        """``run_job``, never twice for one run: a transient failure may have started the
        job all the same, so before trying again the job is looked up by its label."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.hub.api.run_job(**spec)
            except Exception as exc:
                what = f"start a job in {spec['image']}"
                if isinstance(exc, SpacetrainError):
                    raise
                if not is_transient(exc):
                    raise explain(exc, what, endpoint=self.hub.endpoint) from exc
                if attempt >= 3:
                    failure = explain(exc, what, endpoint=self.hub.endpoint)
                    raise HubUnreachable(f"{failure} after {attempt} attempt(s)") from exc
                found = self._find(run_id)
                if found is not None:
                    return self.hub.call(
                        "inspect the job", self.hub.api.inspect_job, job_id=found,
                        namespace=self.namespace,
                    )  # fmt: skip
                time.sleep(min(10.0, 2.0**attempt))

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
        self.state.update(run_id=run_id, job_id=f"{self.namespace}/{job}")

    def status(self, run_id: str) -> dict[str, Any]:
        """``training_status`` of the job: its stage and what its log said so far."""
        job = self._require(run_id)
        info = self.hub.call(
            f"inspect job {job}", self.hub.api.inspect_job, job_id=job, namespace=self.namespace
        )
        stage = str(getattr(info.status.stage, "value", info.status.stage))
        log = self._refresh(run_id)
        state = STATES.get(stage, "running")
        step = log.last_step
        out: dict[str, Any] = {
            "run_id": run_id,
            "state": state,
            "stage": stage,
            "job_id": job,
            "step": step.get("step", 0),
            "total": step.get("total", log.total),
            "epoch": step.get("epoch"),
            "loss": step.get("loss"),
            "tokens_per_s": step.get("tokens_per_s"),
            "adapter": None,
            "error": None,
            "log_tail": None,
            "message": info.status.message,
        }
        if log.done and log.done.get("steps"):
            out["step"] = out["total"] = log.done["steps"]
        if log.pushed:
            out["adapter"] = {
                "repo": log.pushed.get("repo"),
                "revision": log.pushed.get("revision"),
            }
        if state == "succeeded" and log.error is not None:
            out["state"] = state = "failed"  # exit 0 with an error event is not a success
        if state in ("failed", "cancelled"):
            message = (log.error or {}).get("error") or info.status.message
            out["error"] = message or f"the job ended {stage}"
            out["log_tail"] = "\n".join(log.lines[-40:])
            if state == "failed" and self._timed_out(info, log):
                out["timed_out"] = True
                out["error"] = info.status.message or out["error"]  # not train.py's SIGTERM
        return out

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

    def logs(self, run_id: str, offset: int) -> tuple[str, int]:
        """The log lines past line ``offset`` and the next offset (lines, not bytes)."""
        log = self._logs.get(run_id) or self._refresh(run_id)
        lines = log.lines[offset:]
        return ("\n".join(lines) + "\n" if lines else ""), offset + len(lines)

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
        self.say(f"[spacetrain] cancelling job {job} (run {run_id})")
        try:
            self.hub.api.cancel_job(job_id=job, namespace=self.namespace)
        except Exception as exc:
            self.say(f"[spacetrain] could not cancel job {job}: {type(exc).__name__}: {exc}")
            return None
        for _ in range(10):  # the Hub says CANCELED once the container is gone
            try:
                info = self.hub.api.inspect_job(job_id=job, namespace=self.namespace)
            except Exception:
                break
            state = STATES.get(str(getattr(info.status.stage, "value", info.status.stage)))
            if state in FINAL:
                self.say(f"[spacetrain] job {job} is {info.status.stage}")
                return state
            time.sleep(0.5)
        return "cancelled"

    def release(self, *_: object, **__: object) -> str:
        """Nothing to release: a job stops billing when it ends."""
        return "nothing to release"

    def _require(self, run_id: str) -> str:
        job = self.job_id(run_id)
        if job is None:
            raise UsageError(f"no job is known for run {run_id}")
        return job


# ------------------------------------------------------------------ the stage


def run_job_training(
    options: Any,
    settings: JobSettings,
    hub: Hub,
    state: PipelineState,
    *,
    say: Say = _say,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Start (or rejoin) the run as a job, follow it, record it; never leave it running.

    ``options`` is the train stage's :class:`~spacetrain.stages.train.TrainOptions`.

    Raises:
        TrainingFailed: the job failed or was cancelled on the Hub (exit 1).
        StageTimeout: the job did not end by ``options.timeout``, or the Hub ended it at
            its ``job_timeout`` (exit 3); cancelled either way.
        UsageError, AuthError, HubUnreachable: bad params, token or Hub (exit 2/3).
    """
    from spacetrain.stages.train import (
        DOWNSTREAM_KEYS,
        HOLD_KEY,
        TrainResult,
        _duration,
        _Progress,
        readable,
    )

    started = clock()
    deadline = started + options.timeout
    backend = JobBackend(hub, options.space, settings, state, say=say)
    if state.data.pop(HOLD_KEY, None) is not None:
        state.save()
    backend.preflight(options.params)
    run_id = options.run_id
    if state.get("run_id") != run_id:
        state.update(**dict.fromkeys((*DOWNSTREAM_KEYS, "job_id")), run_id=run_id)
    status, created = backend.start(options.params)
    job = backend.job_id(run_id)
    verb = "started" if created else "rejoined"
    say(
        f"[spacetrain] {verb} job {job} for run {run_id} ({settings.flavor}, {backend.url(run_id)})"
    )
    values: dict[str, Any] = {"run_state": status["state"]}
    if options.params.get("output_repo"):
        values["adapter_repo"] = options.params["output_repo"]
    state.update(**values)
    progress = _Progress(say, clock)
    offset = 0
    final: dict[str, Any] | None = None
    try:
        while True:
            text, offset = backend.logs(run_id, offset)
            for line in readable(text):
                say(line)
            if status["state"] in FINAL:
                final = status
                break
            progress.show(status)
            if clock() >= deadline:
                raise StageTimeout(
                    f"job {job} of run {run_id} is still {status['state']} at the deadline "
                    f"({options.timeout:g} s); it is cancelled"
                )
            sleep(max(0.0, min(options.poll_interval, deadline - clock())))
            status = backend.status(run_id)
    except KeyboardInterrupt:
        say(f"[spacetrain] interrupted while following job {job} (run {run_id})")
        raise
    finally:
        if final is None:
            _leave(backend, options, state, say)
    seconds = clock() - started
    return _finish(state, options, final, created, seconds, backend, say, TrainResult, _duration)


def _leave(backend: JobBackend, options: Any, state: PipelineState, say: Say) -> None:
    """On every way out before the job ended: cancel it (or say it keeps running)."""
    if options.keep_running:
        say(f"[spacetrain] --keep-running: job {backend.job_id(options.run_id)} keeps running")
        return
    stopped = backend.stop(options.run_id)
    if stopped in FINAL:
        state.update(run_state=stopped)


def _finish(
    state: PipelineState,
    options: Any,
    status: dict[str, Any],
    created: bool,
    seconds: float,
    backend: JobBackend,
    say: Say,
    result_type: Any,
    duration: Callable[[float], str],
) -> Any:
    from spacetrain.stages.train import readable

    run_id = options.run_id
    job = backend.job_id(run_id)
    if status["state"] in ("failed", "cancelled"):
        state.update(run_state=status["state"], adapter_revision=None)
        tail = readable(status.get("log_tail") or "")[-20:]
        if tail:
            say(f"[spacetrain] ---- last {len(tail)} line(s) of job {job}'s log ----")
            for line in tail:
                say(line)
            say("[spacetrain] ----")
        if status.get("timed_out"):
            raise StageTimeout(
                f"job {job} of run {run_id} reached its timeout ({backend.settings.timeout} s, "
                f"job_timeout) and was ended by the Hub: {status.get('error')}"
            )
        verb = "was cancelled" if status["state"] == "cancelled" else "failed"
        raise TrainingFailed(
            f"run {run_id} (job {job}) {verb}: {status.get('error') or 'no error recorded'}"
        )
    adapter = status.get("adapter") or {}
    repo, revision = adapter.get("repo"), adapter.get("revision")
    if not revision:
        state.update(run_state="succeeded", adapter_revision=None)
        raise TrainingFailed(f"run {run_id} (job {job}) succeeded but pushed no adapter")
    state.update(run_state="succeeded", adapter_repo=repo, adapter_revision=revision)
    say(f"[spacetrain] run {run_id} succeeded in {duration(seconds)}: adapter {repo}@{revision}")
    return result_type(
        run_id=run_id,
        state="succeeded",
        created=created,
        adapter_repo=repo,
        adapter_revision=revision,
        step=int(status.get("step") or 0),
        total=status.get("total"),
        loss=status.get("loss"),
        seconds=seconds,
        released=backend.release(),
    )


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


__all__ = [
    "ACTIVE",
    "FINAL",
    "STATES",
    "JobBackend",
    "JobLog",
    "JobSettings",
    "choose_backend",
    "job_command",
    "job_env",
    "job_secret",
    "preflight_job",
    "run_job_training",
    "settings_for",
    "space_image",
]
