"""The train stage: start a run through the Space's Gradio API and follow it to the end.

Training runs detached inside the Space (``space/app.py``), so this stage is only a
follower. Unless the Space already knows our run id, it first asks the Space to check
itself (``training_preflight``: token, write access, model and dataset, GPU): a failed
check ends the stage at once, exit 2 (configuration) or 3 (the Hub), and the Space is
released. Then it asks ``start_training`` for a run with *our* run id (idempotent: a
retry, or a second ``spacetrain train --run-id X``, gets the same run back and starts
nothing), then polls ``training_status`` and pages ``training_logs`` by byte offset,
printing the Space's log lines as they come. A dropped connection, an app restart or
a Space that wakes up is not the run's end: the stage reconnects and keeps following
the same run until it succeeds, fails, or the deadline passes.

When the Space is busy with a *different* run, the stage follows neither (exit 1):
it cannot know whose run that is, and pausing the Space would kill it.

Whatever the outcome of our run, the GPU bill stops afterwards (``after_training``:
pause the Space or move it to a CPU flavor, through :func:`spacetrain.stages.release.release`)
unless ``keep_running`` is set.

Records in the state: ``run_id``, ``run_state``, ``adapter_repo`` and
``adapter_revision`` (the commit the run pushed, from ``training_status``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spacetrain import contract
from spacetrain.config import AdapterConfig, ProjectConfig
from spacetrain.errors import (
    AuthError,
    CheckFailed,
    HubUnreachable,
    SpaceBuildFailed,
    SpacetrainError,
    StageTimeout,
    TrainingFailed,
    UsageError,
)
from spacetrain.hub import Hub, token_from_env
from spacetrain.inputs import parse_json
from spacetrain.redact import mask
from spacetrain.stages.progress import Progress, progress_for
from spacetrain.stages.release import release
from spacetrain.stages.setup import trigger_from_env
from spacetrain.stages.space_runtime import FAILED, get_runtime
from spacetrain.stages.state import PipelineState
from spacetrain.stages.sync import source_commit

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
# Cancelled (SIGINT/SIGTERM): stop_training waits this long for the run to end, and the
# call gets this long in all; CI sends SIGKILL some seconds after its SIGTERM.
STOP_WAIT = 5.0
STOP_CALL_DEADLINE = 8.0
# Runtime stages in which the app cannot answer and will not come back by itself
# (SLEEPING is not one: the next request wakes the Space up).
DEAD_STAGES = FAILED | {"PAUSED", "STOPPED", "DELETING"}
# start_training's keys (space/train.py PARAMS) that come from [tool.spacetrain.adapters.X.train].
HYPERPARAMETERS = contract.HYPERPARAMETERS
# State key (and step output) saying why train left the Space as it is: the workflow's
# release step is skipped on it. Never written empty: an unset output reads as ''.
HOLD_KEY = "space_hold"
# State keys about one run's adapter: stale as soon as another run starts.
DOWNSTREAM_KEYS = ("adapter_revision", "adapter_dir", "report", "promoted_tag", "card_commit")
LOG_PAGE = 64 * 1024
# How long the app may stay unreachable while its Space says it is up (seconds): long
# enough for a network blip or an app restart, short enough that a Space serving some
# other app (no Gradio config, no endpoints) does not bill GPU time until the deadline.
DISCONNECT_ENV = "SPACETRAIN_DISCONNECT_LIMIT"
DISCONNECT_LIMIT = 600.0
CALL_TIMEOUT = 60.0  # seconds for one API call; the app answers in milliseconds
PROGRESS_EVERY = 10.0  # seconds between progress lines while the run's numbers change
_BUSY = re.compile(r"run (\S+) is still active")

# ------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class TrainOptions:
    """What to train where, and how long to follow it.

    Attributes:
        space: the Space id (``owner/name``) or the app's URL.
        run_id: the run to start or follow.
        params: ``start_training``'s JSON object (``run_id`` included); missing keys
            fall back to the Space variables.
        timeout: seconds from the start until the stage gives up (exit 3).
        poll_interval: seconds between ``training_status`` calls.
        after_training: ``"pause"`` or a CPU flavor to move the Space to afterwards.
        keep_running: leave the Space (and its hardware) as it is.
    """

    space: str
    run_id: str
    params: dict[str, Any]
    timeout: float = 6 * 3600.0
    poll_interval: float = 5.0
    after_training: str = "pause"
    keep_running: bool = False


def default_run_id(now: datetime | None = None) -> str:
    """``<commit>-<UTC time>``: the commit from ``GITHUB_SHA`` or git, else ``run``."""
    sha = source_commit(Path.cwd()) or ""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    prefix = sha[:10] if re.fullmatch(r"[0-9a-f]{7,64}", sha) else "run"
    return f"{prefix}-{stamp}"


def check_run_id(run_id: str) -> str:
    """The Space's run-id rule (the contract's), said before asking it."""
    if not contract.RUN_ID_RE.fullmatch(run_id):
        raise UsageError(f"run id {run_id!r}: {contract.RUN_ID_HINT}")
    return run_id


def build_params(
    *,
    run_id: str,
    adapter: AdapterConfig | None = None,
    base_model: str | None = None,
    base_revision: str | None = None,
    dataset: str | None = None,
    dataset_revision: str | None = None,
    output_repo: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``start_training``'s params: explicit values over the adapter's config.

    A value that is neither given nor configured is left out, so the Space variable
    (BASE_MODEL, DATASET, EPOCHS, ...) decides it; a configured revision is dropped with
    the repo it belongs to. The adapter is always pushed.
    """
    cfg = adapter
    # A configured revision belongs to the configured repo, not to one named instead.
    own_base = cfg.base_revision if cfg and base_model in (None, cfg.base_model) else None
    own_data = cfg.dataset_revision if cfg and dataset in (None, cfg.dataset) else None
    params: dict[str, Any] = {
        "run_id": check_run_id(run_id),
        "push": True,
        "base_model": base_model or (cfg.base_model if cfg else None),
        "model_revision": base_revision or own_base,
        "dataset": dataset or (cfg.dataset if cfg else None),
        "dataset_revision": dataset_revision or own_data,
        "output_repo": output_repo or (cfg.output_repo if cfg else None),
    }
    hyper = dict(cfg.train) if cfg else {}
    hyper.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(hyper) - set(HYPERPARAMETERS))
    if unknown:
        raise UsageError(f"unknown training parameter(s): {', '.join(unknown)}")
    params.update(hyper)
    try:  # the Space's own rules, before any GPU time: the Space would refuse the same
        return {k: contract.check_param(k, v, source=k) for k, v in params.items() if v is not None}
    except contract.ParamError as exc:
        raise UsageError(str(exc)) from None


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise UsageError(f"{name} must be a positive number of seconds, not {value}")
    return value


def train_options(
    config: ProjectConfig,
    state: PipelineState,
    *,
    adapter: str | None = None,
    space: str | None = None,
    run_id: str | None = None,
    base_model: str | None = None,
    dataset: str | None = None,
    dataset_revision: str | None = None,
    output_repo: str | None = None,
    epochs: float | None = None,
    learning_rate: float | None = None,
    timeout: float = 6 * 3600.0,
    poll_interval: float = 5.0,
    keep_running: bool = False,
) -> TrainOptions:
    """The options of ``spacetrain train`` (flags over state over ``[tool.spacetrain]``).

    The Space: ``space``, else the one `sync` recorded, else the config's. The run id:
    ``run_id``, else the run an interrupted train left queued or running (rejoined, not
    restarted), else :func:`default_run_id`. Revisions `preflight` pinned are used for
    the configured base model and dataset, not for ones named here.

    Raises:
        UsageError: unknown adapter, bad run id, a non-positive timeout or interval.
    """
    if not config.adapters and adapter is None:
        chosen: AdapterConfig | None = None  # everything from flags and the Space variables
    else:
        chosen = config.adapter(adapter)
    if not run_id:
        previous = state.get("run_id")
        run_id = previous if previous and state.get("run_state") in ACTIVE else default_run_id()
    run_id = check_run_id(str(run_id))
    configured_base = chosen.base_model if chosen else None
    configured_data = chosen.dataset if chosen else None
    params = build_params(
        run_id=run_id,
        adapter=chosen,
        base_model=base_model,
        base_revision=state.get("base_revision") if base_model in (None, configured_base) else None,
        dataset=dataset,
        dataset_revision=dataset_revision
        or (state.get("dataset_revision") if dataset in (None, configured_data) else None),
        output_repo=output_repo,
        overrides={"epochs": epochs, "learning_rate": learning_rate},
    )
    return TrainOptions(
        space=space or state.get("space") or config.space,
        run_id=run_id,
        params=params,
        timeout=_positive("--timeout", timeout),
        poll_interval=_positive("--poll-interval", poll_interval),
        after_training=config.after_training,
        keep_running=keep_running,
    )


# ------------------------------------------------------------------ result


@dataclass(frozen=True)
class TrainResult:
    """How the run ended and what it produced."""

    run_id: str
    state: str
    created: bool
    adapter_repo: str | None
    adapter_revision: str | None
    step: int = 0
    total: int | None = None
    loss: float | None = None
    seconds: float = 0.0
    reconnects: int = 0
    released: str = ""


# ------------------------------------------------------------------ talking to the app


class ForeignRun(CheckFailed):
    """The Space is busy with another run: following it, or pausing, would be wrong."""

    def __init__(self, active: str, wanted: str) -> None:
        self.active = active
        super().__init__(
            f"the Space is busy with run {active}, not run {wanted}; following neither. "
            f"Wait until it ends, or follow it with --run-id {active}"
        )


def _is_app_error(exc: BaseException) -> bool:
    from gradio_client.exceptions import AppError

    return isinstance(exc, AppError)


def _missing_endpoint(exc: BaseException) -> bool:
    return isinstance(exc, ValueError) and "Cannot find a function with `api_name`" in str(exc)


def disconnect_limit() -> float:
    """``SPACETRAIN_DISCONNECT_LIMIT`` seconds, default :data:`DISCONNECT_LIMIT`."""
    raw = os.environ.get(DISCONNECT_ENV)
    if raw is None or not raw.strip():
        return DISCONNECT_LIMIT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"{DISCONNECT_ENV}={raw!r} is not a positive number of seconds")
    return value


def _json_object(text: Any, space: str, api_name: str) -> dict[str, Any]:
    """The endpoint's answer, which space/app.py always sends as a JSON object."""
    try:
        value = parse_json(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise CheckFailed(
            f"the app of {space} answered {api_name} with {str(text)[:80]!r}, not a JSON "
            "object: is it running this project's space/app.py?"
        )
    return value


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


class SpaceApp:
    """The Space's three JSON endpoints, with reconnects until a deadline.

    ``gradio_client.Client(space)`` resolves the app through the Hub endpoint
    (``HF_ENDPOINT``), so the same code follows a run on huggingface.co or localhub.
    Any failure that is not the app's own answer (an ``AppError``) counts as a lost
    connection: the client is dropped, the Space's runtime is checked (a crashed,
    paused or deleted Space ends the wait at once), and the call is tried again with
    backoff until ``deadline``.
    """

    def __init__(
        self,
        space: str,
        hub: Hub,
        *,
        deadline: float,
        progress: Progress,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.space = space
        self.hub = hub
        self.deadline = deadline
        self.progress = progress
        self._clock = clock
        self._sleep = sleep
        self._client: Any = None
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self.reconnects = 0
        self.answered = False  # the app answered at least once: the Space is there
        self.disconnect_limit = disconnect_limit()

    def __enter__(self) -> SpaceApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the client's background threads."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # a client that lost its app may fail to close
                client.close()

    def _connect(self) -> Any:
        if self._client is None:
            os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
            from gradio_client import Client

            # token=False, not None: None would let the libraries read a token file.
            self._client = Client(
                self.space,
                token=token_from_env() or False,  # type: ignore[arg-type]
                verbose=False,
                download_files=False,
                httpx_kwargs={"timeout": 30.0},
            )
        return self._client

    def call(self, api_name: str, *args: Any) -> dict[str, Any]:
        """One endpoint's JSON answer; ``AppError`` (the app said no) goes to the caller.

        Raises:
            AuthError: the app or the Hub refused the token.
            SpaceBuildFailed: the Space crashed, failed to build, or was paused.
            CheckFailed: the app has no such endpoint (not this project's app.py).
            StageTimeout: still no answer at the deadline, or none for
                ``SPACETRAIN_DISCONNECT_LIMIT`` seconds while the Space says RUNNING.
        """
        from gradio_client.exceptions import AuthenticationError

        failures = 0
        lost_since: float | None = None
        while True:
            try:
                client = self._connect()
                job = client.submit(*args, api_name=api_name)
                text = job.result(timeout=CALL_TIMEOUT)
                self.answered = True
                if failures:
                    self.reconnects += 1
                    self.progress(f"reconnected to {self.space} after {failures} try(s)")
                return _json_object(text, self.space, api_name)
            except SpacetrainError:
                raise
            except AuthenticationError as exc:
                raise AuthError(
                    f"the Space {self.space} refused the token: {_one_line(exc)}"
                ) from None
            except Exception as exc:
                if _is_app_error(exc):
                    self.answered = True  # the app said no: it is there (and may bill)
                    raise
                if _missing_endpoint(exc):
                    raise CheckFailed(
                        f"the app of {self.space} has no {api_name} endpoint: is it running "
                        "this project's space/app.py? (spacetrain sync, then wait)"
                    ) from None
                failures += 1
                self.close()
                now = self._clock()
                if self._check_runtime() == "RUNNING":  # up, yet not answering
                    lost_since = now if lost_since is None else lost_since
                else:  # starting, building, waking up: give it the time it takes
                    lost_since = None
                wait = self._rng.uniform(0.5, min(15.0, 0.5 * 2**failures))
                left = self.deadline - now
                why = f"{type(exc).__name__}: {_one_line(exc)}"
                if left <= 0:
                    raise StageTimeout(
                        f"lost the connection to {self.space} and the deadline passed ({why})"
                    ) from None
                if lost_since is not None and now - lost_since >= self.disconnect_limit:
                    raise StageTimeout(
                        f"the app of {self.space} has not answered for {now - lost_since:.0f} s "
                        f"while the Space is up ({why}); is it running this project's "
                        f"space/app.py? ({DISCONNECT_ENV}={self.disconnect_limit:g})"
                    ) from None
                if lost_since is not None:  # wake up in time to give up on time
                    wait = min(wait, max(0.1, self.disconnect_limit - (now - lost_since)))
                self.progress(
                    f"connection to {self.space} lost ({type(exc).__name__}: "
                    f"{_one_line(exc)[:120]}); retrying in {wait:.1f} s"
                )
                self._sleep(min(wait, left))

    def _check_runtime(self) -> str:
        """The Space's stage; fail at once when it cannot come back by itself."""
        if self.space.startswith(("http://", "https://")):
            return "RUNNING"  # a bare URL: no runtime to ask, count it as up
        runtime = get_runtime(self.hub, self.space)
        stage = runtime.stage
        if stage in DEAD_STAGES:
            message = (runtime.error or "").strip()
            first = message.splitlines()[0] if message else ""
            hint = "; restart it, then train again" if stage in ("PAUSED", "STOPPED") else ""
            raise SpaceBuildFailed(
                f"the Space {self.space} is {stage}" + (f": {first}" if first else "") + hint
            )
        return stage


# ------------------------------------------------------------------ following a run


@dataclass
class _Pace:
    """ETA from the steps this follower has seen, and when to print next."""

    progress: Progress
    clock: Callable[[], float] = time.monotonic
    first: tuple[float, int] | None = None
    last_print: float = float("-inf")
    last_key: tuple[Any, ...] = field(default_factory=tuple)

    def eta(self, step: int, total: int | None) -> float | None:
        now = self.clock()
        if self.first is None or step < self.first[1]:
            self.first = (now, step)
            return None
        t0, s0 = self.first
        if not total or step <= s0:
            return None
        return (now - t0) / (step - s0) * max(0, total - step)

    def show(self, status: dict[str, Any]) -> None:
        step, total = int(status.get("step") or 0), status.get("total")
        eta = self.eta(step, total)
        key = (status.get("state"), step)
        now = self.clock()
        changed_state = key[0] != (self.last_key[0] if self.last_key else None)
        if key == self.last_key or (not changed_state and now - self.last_print < PROGRESS_EVERY):
            return
        self.last_key, self.last_print = key, now
        self.progress(progress_line(status, eta))


def progress_detail(status: dict[str, Any], eta: float | None = None) -> str:
    """``step 12/40 (30%), epoch 1.20, loss 2.3456, ETA 3m12s`` (what is known of it)."""
    parts = []
    step, total = int(status.get("step") or 0), status.get("total")
    if total:
        parts.append(f"step {step}/{total} ({100 * step // max(1, int(total))}%)")
    elif step:
        parts.append(f"step {step}")
    if status.get("epoch") is not None:
        parts.append(f"epoch {float(status['epoch']):.2f}")
    if status.get("loss") is not None:
        parts.append(f"loss {float(status['loss']):.4f}")
    if eta is not None:
        parts.append(f"ETA {_duration(eta)}")
    return ", ".join(parts)


def progress_line(status: dict[str, Any], eta: float | None) -> str:
    """``run X running: step 12/40 (30%), epoch 1.20, loss 2.3456, ETA 3m12s``."""
    detail = progress_detail(status, eta)
    return f"run {status.get('run_id')} {status.get('state')}" + (f": {detail}" if detail else "")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def readable(text: str) -> list[str]:
    """The log's lines for people: event lines dropped, anything token-like masked."""
    return [
        mask(line)
        for line in text.splitlines()
        if line.strip() and not line.startswith(contract.EVENT_PREFIX)
    ]


class Follower:
    """Polls one run's status and streams its log, from a byte offset, until it ends."""

    def __init__(
        self,
        app: SpaceApp,
        run_id: str,
        *,
        poll_interval: float,
        deadline: float,
        progress: Progress,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.app = app
        self.run_id = run_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.progress = progress
        self.offset = 0
        self._clock = clock
        self._sleep = sleep
        self._pace = _Pace(progress, clock)

    def status(self) -> dict[str, Any]:
        try:
            return self.app.call("/training_status", self.run_id)
        except Exception as exc:
            raise self._lost(exc) from None

    def _lost(self, exc: BaseException) -> BaseException:
        if _is_app_error(exc):
            return TrainingFailed(
                f"the Space no longer knows run {self.run_id} ({_one_line(exc)}); "
                "was it restarted without persistent storage?"
            )
        return exc

    def drain_logs(self) -> bool:
        """Print every complete log line past the offset; True when the log is done."""
        for _ in range(10_000):
            try:
                page = self.app.call("/training_logs", self.run_id, self.offset, LOG_PAGE)
            except Exception as exc:
                raise self._lost(exc) from None
            for line in readable(page.get("text", "")):
                self.progress(line)
            nxt = int(page.get("next_offset", self.offset))
            moved = nxt > self.offset
            self.offset = nxt
            if page.get("done"):
                return True
            if not moved or self.offset >= int(page.get("size", 0)):
                return False
        return False

    def run(self) -> dict[str, Any]:
        """Follow to a final state; returns the last status."""
        while True:
            status = self.status()
            state = status.get("state")
            if state in FINAL:
                for _ in range(20):  # the log's last lines may land just after the state
                    if self.drain_logs():
                        break
                    self._sleep(min(0.5, self.poll_interval))
                return status
            self.drain_logs()
            self._pace.show(status)
            if self._clock() >= self.deadline:
                detail = progress_detail(status)
                raise StageTimeout(
                    f"run {self.run_id} is still {state} at the deadline"
                    + (f" ({detail})" if detail else "")
                    + "; the Space is released unless --keep-running, which stops the run"
                )
            self._sleep(max(0.0, min(self.poll_interval, self.deadline - self._clock())))


# ------------------------------------------------------------------ the stage


def with_trigger(params: dict[str, Any]) -> str:
    """``params`` as the JSON the Space takes, with ``SPACETRAIN_TRIGGER`` when it is set.

    Added only here, at the call: the trigger is never part of the options, the state or
    a log line.
    """
    trigger = trigger_from_env()
    return json.dumps({**params, contract.TRIGGER_KEY: trigger} if trigger else params)


def _refused(exc: BaseException) -> UsageError:
    """The Space refused the params (or the trigger): exit 2, one line naming the parameter."""
    return UsageError(f"the Space refused the training parameters: {_one_line(exc)}")


def start_run(
    app: SpaceApp, options: TrainOptions, *, progress: Progress
) -> tuple[dict[str, Any], bool]:
    """Ask for our run; ``(status, created)``. A different active run is a :class:`ForeignRun`."""
    try:
        status = app.call("/start_training", with_trigger(options.params))
    except Exception as exc:
        if not _is_app_error(exc):
            raise
        busy = _BUSY.search(str(exc))
        if busy:
            raise ForeignRun(busy.group(1), options.run_id) from None
        raise _refused(exc) from None
    if status.get("run_id") != options.run_id:
        raise ForeignRun(str(status.get("run_id")), options.run_id)
    created = bool(status.get("created"))
    if created:
        progress(f"started run {options.run_id} on {options.space}")
    else:
        since = status.get("created_at") or "earlier"
        progress(
            f"run {options.run_id} already exists on {options.space} "
            f"(started {since}, {status.get('state')}): following it, starting nothing"
        )
    return status, created


def check_release_rights(hub: Hub, space: str) -> None:
    """HF_TOKEN must be able to pause ``space`` before anything starts there: a run it
    starts but cannot stop would bill on (a read token can start runs on a private
    Space it can read). The rule is whoami's, as in preflight (``train.write_access``).

    Raises:
        UsageError: whoami says the token may not write the Space (exit 2).
    """
    if token_from_env() is None:
        return  # the Space's API refuses or answers on its own terms; nothing to stop
    who = hub.call("check the token in HF_TOKEN", hub.api.whoami)
    can, why = contract.trainer.write_access(who, "space", space)
    if can is False:
        raise UsageError(
            f"HF_TOKEN cannot pause {space} ({why}), so a run it started could not be "
            "stopped: use a token that can write the Space"
        )


def self_check(app: SpaceApp, options: TrainOptions, *, progress: Progress) -> None:
    """Before a NEW run, ask the Space to check itself (``training_preflight``).

    A missing or rejected token, an output repo it cannot write, a model or dataset it
    cannot read: each would otherwise surface after the GPU has billed for an hour. A run
    the Space already knows by our id is followed as it is, unchecked; a failed check
    while another run is active is that run's business (:class:`ForeignRun`, held).

    Raises:
        UsageError: a check failed that the configuration must fix (exit 2).
        HubUnreachable: the Space could not reach the Hub (exit 3).
        ForeignRun: the check failed and the Space is busy with another run.
    """
    try:
        app.call("/training_status", options.run_id)
        return  # the Space knows this run: rejoin it
    except Exception as exc:
        if not _is_app_error(exc):
            raise
    try:
        report = app.call("/training_preflight", with_trigger(options.params))
    except Exception as exc:
        if not _is_app_error(exc):
            raise
        raise _refused(exc) from None
    checks = [c for c in report.get("checks") or [] if isinstance(c, dict)]
    if report.get("ok"):
        names = ", ".join(str(c.get("name")) for c in checks)
        progress(f"the Space checked itself: {names or 'no checks'} ok")
        return
    for check in checks:
        if not check.get("ok"):
            line = f"self-check failed: {check.get('name')}: {check.get('detail')}"
            progress(mask(line))
    active = report.get("active_run")
    if active and active != options.run_id:
        raise ForeignRun(str(active), options.run_id)  # held: releasing would kill that run
    error = mask(str(report.get("error") or "no detail"))
    message = f"the Space's self-check failed: {error}"
    if report.get("exit_code") == HubUnreachable.exit_code:
        raise HubUnreachable(message)
    raise UsageError(message)


def stop_run(
    app: SpaceApp,
    run_id: str,
    *,
    progress: Progress,
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """Ask the Space to stop OUR run (``stop_training``) before the Space is released.

    Pausing alone also ends the run, but as a killed process whose record says it
    "ended without recording a result"; stopped first, it ends cleanly and is recorded
    as cancelled. Best effort within seconds: the release must follow whatever happens.
    Returns the run's state as the Space answered it, or None.
    """
    progress(f"stopping run {run_id} on {app.space}")
    saved, app.deadline = app.deadline, min(app.deadline, clock() + STOP_CALL_DEADLINE)
    try:
        status = app.call("/stop_training", with_trigger({"run_id": run_id, "wait": STOP_WAIT}))
    except Exception as exc:  # an older app without the endpoint, a lost Space: release anyway
        progress(f"could not stop run {run_id}: {_one_line(exc)}")
        return None
    finally:
        app.deadline = saved
    state = str(status.get("state"))
    progress(f"run {run_id} is {state}")
    return state


def release_gpu(
    hub: Hub, space: str, after_training: str, ours: str | None = None, *, progress: Progress
) -> str:
    """Stop the GPU bill with the release stage: ``paused``, ``downgraded``, ``already-…``,
    or ``held`` when the Space trains a run that is not ``ours``."""
    return release(hub, space, after_training=after_training, ours=ours, progress=progress).action


def run_training(
    options: TrainOptions,
    hub: Hub,
    state: PipelineState,
    *,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> TrainResult:
    """Start (or rejoin) the run, follow it, record it, release the GPU.

    Raises:
        TrainingFailed: the run failed (its error and log tail were printed); exit 1.
        ForeignRun: the Space is busy with another run (nothing released); exit 1.
        SpaceBuildFailed: the Space crashed or was paused underneath us; exit 1.
        StageTimeout: the run did not end before ``options.timeout``; exit 3.
        UsageError, AuthError, HubUnreachable: bad params, token or Hub (exit 2/3).
    """
    progress = progress or progress_for("train")
    started = clock()
    deadline = started + options.timeout
    hold: str | None = None  # why the Space must be left as it is
    outcome: TrainResult | None = None
    if state.data.pop(HOLD_KEY, None) is not None:  # a hold of an earlier train is stale
        state.save()
    try:
        with SpaceApp(options.space, hub, deadline=deadline, progress=progress, clock=clock) as app:
            try:
                self_check(app, options, progress=progress)
                status, created = start_run(app, options, progress=progress)
            except ForeignRun as exc:
                hold = f"another run is active ({exc.active}): pausing would end it"
                state.update(**{HOLD_KEY: f"the Space is training run {exc.active}, not ours"})
                raise
            except UsageError:
                if not app.answered:  # no such Space, or a refused token: nothing to release
                    hold = "it never answered"
                raise
            try:  # from here on the run is ours: a cancel stops it before the release
                _record_start(state, options, status)
                follower = Follower(
                    app,
                    options.run_id,
                    poll_interval=options.poll_interval,
                    deadline=deadline,
                    progress=progress,
                    clock=clock,
                    sleep=sleep,
                )
                final = follower.run()
            except KeyboardInterrupt:
                stopped = stop_run(app, options.run_id, progress=progress, clock=clock)
                if stopped in FINAL:  # the next train starts a new run, not this one
                    state.update(run_state=stopped)
                raise
            outcome = _finish(state, options, final, created, clock() - started, app, progress)
    except KeyboardInterrupt:
        progress(f"interrupted while following run {options.run_id}")
        raise
    finally:
        released = _release(hub, options, hold, failed=outcome is None, progress=progress)
    assert outcome is not None  # every other way out of the block raised
    return dataclasses.replace(outcome, released=released)


def _record_start(state: PipelineState, options: TrainOptions, status: dict[str, Any]) -> None:
    values: dict[str, Any] = {"run_id": options.run_id, "run_state": status.get("state")}
    repo = (status.get("params") or {}).get("output_repo") or options.params.get("output_repo")
    if repo:
        values["adapter_repo"] = repo
    if state.get("run_id") != options.run_id:
        values.update(dict.fromkeys(DOWNSTREAM_KEYS))
    state.update(**values)


def _finish(
    state: PipelineState,
    options: TrainOptions,
    status: dict[str, Any],
    created: bool,
    seconds: float,
    app: SpaceApp,
    progress: Progress,
) -> TrainResult:
    run_id = options.run_id
    if status["state"] in ("failed", "cancelled"):  # cancelled: someone pressed Stop
        state.update(run_state=status["state"], adapter_revision=None)
        tail = readable(status.get("log_tail") or "")
        if tail:
            progress(f"---- last {len(tail)} line(s) of run {run_id}'s log ----")
            for line in tail:
                progress(line)
            progress("----")
        verb = "was cancelled" if status["state"] == "cancelled" else "failed"
        raise TrainingFailed(f"run {run_id} {verb}: {status.get('error') or 'no error recorded'}")
    adapter = status.get("adapter") or {}
    repo, revision = adapter.get("repo"), adapter.get("revision")
    if not revision:
        state.update(run_state="succeeded", adapter_revision=None)
        raise TrainingFailed(
            f"run {run_id} succeeded but pushed no adapter (was it started with push=false?)"
        )
    expected = options.params.get("output_repo")
    if expected and repo != expected:
        progress(f"note: run {run_id} pushed to {repo}, not to {expected}")
    state.update(run_state="succeeded", adapter_repo=repo, adapter_revision=revision)
    progress(
        f"run {run_id} succeeded in {_duration(seconds)}: adapter {repo}@{revision}"
        + (f" ({app.reconnects} reconnect(s))" if app.reconnects else "")
    )
    return TrainResult(
        run_id=run_id,
        state="succeeded",
        created=created,
        adapter_repo=repo,
        adapter_revision=revision,
        step=int(status.get("step") or 0),
        total=status.get("total"),
        loss=status.get("loss"),
        seconds=seconds,
        reconnects=app.reconnects,
    )


def _release(
    hub: Hub, options: TrainOptions, hold: str | None, *, failed: bool, progress: Progress
) -> str:
    if options.keep_running:
        progress(f"--keep-running: {options.space} keeps its hardware (and its bill)")
        return "kept running"
    if hold:
        progress(f"{options.space} left as it is: {hold}")
        return "not released"
    if options.space.startswith(("http://", "https://")):
        progress(f"{options.space} is a URL, not a Space id: nothing to release")
        return "not a Space"
    try:
        return release_gpu(
            hub, options.space, options.after_training, ours=options.run_id, progress=progress
        )
    except SpacetrainError as exc:
        if failed:  # the run's own failure is the error to report; say this one too
            progress(f"warning: could not release the GPU: {exc}")
            return "release failed"
        raise


__all__ = [
    "HYPERPARAMETERS",
    "ForeignRun",
    "SpaceApp",
    "TrainOptions",
    "TrainResult",
    "build_params",
    "check_run_id",
    "default_run_id",
    "disconnect_limit",
    "progress_detail",
    "progress_line",
    "readable",
    "release_gpu",
    "run_training",
    "self_check",
    "stop_run",
    "train_options",
    "with_trigger",
]
