"""The Space's app as a client: its JSON endpoints, reconnecting until a deadline.

space/app.py serves JSON-string-in, JSON-string-out Gradio endpoints
(``start_training``, ``training_status``, ``training_logs``, ``training_preflight``,
``stop_training``). :class:`SpaceApp` calls them through ``gradio_client``, which
resolves the app through the Hub endpoint (``HF_ENDPOINT``), so the same code reaches a
Space on huggingface.co or on localhub. Losing the app is not an answer: the client is
dropped, the Space's runtime is read (a crashed, paused or deleted Space ends the wait
at once) and the call is tried again with the Hub's retry policy until the deadline.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from typing import Any

from spacetrain.errors import (
    AuthError,
    CheckFailed,
    SpaceBuildFailed,
    SpacetrainError,
    StageTimeout,
    UsageError,
)
from spacetrain.hub import Hub, RetryPolicy, retry, token_from_env
from spacetrain.inputs import parse_json
from spacetrain.stages.progress import Progress
from spacetrain.stages.space_runtime import FAILED, get_runtime

# Runtime stages in which the app cannot answer and will not come back by itself
# (SLEEPING is not one: the next request wakes the Space up).
DEAD_STAGES = FAILED | {"PAUSED", "STOPPED", "DELETING"}
# How long the app may stay unreachable while its Space says it is up (seconds): long
# enough for a network blip or an app restart, short enough that a Space serving some
# other app (no Gradio config, no endpoints) does not bill GPU time until the deadline.
DISCONNECT_ENV = "SPACETRAIN_DISCONNECT_LIMIT"
DISCONNECT_LIMIT = 600.0
CALL_TIMEOUT = 60.0  # seconds for one API call; the app answers in milliseconds


def is_app_error(exc: BaseException) -> bool:
    """The app's own answer (a ``gr.Error``): it is there and said no."""
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


def one_line(exc: BaseException) -> str:
    """The exception as one line of at most 300 characters, for messages."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


class SpaceApp:
    """The Space's three JSON endpoints, with reconnects until a deadline.

    ``gradio_client.Client(space)`` resolves the app through the Hub endpoint
    (``HF_ENDPOINT``), so the same code follows a run on huggingface.co or localhub.
    Any failure that is not the app's own answer (an ``AppError``) counts as a lost
    connection: the client is dropped, the Space's runtime is checked (a crashed,
    paused or deleted Space ends the wait at once), and the call is tried again by
    :func:`spacetrain.hub.retry` (:class:`~spacetrain.hub.RetryPolicy`'s backoff) until
    ``deadline``.
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

        def attempt() -> Any:
            try:
                client = self._connect()
                job = client.submit(*args, api_name=api_name)
                text = job.result(timeout=CALL_TIMEOUT)
            except SpacetrainError:
                raise
            except AuthenticationError as exc:
                raise AuthError(
                    f"the Space {self.space} refused the token: {one_line(exc)}"
                ) from None
            except Exception as exc:
                if is_app_error(exc):
                    self.answered = True  # the app said no: it is there (and may bill)
                    raise
                if _missing_endpoint(exc):
                    raise CheckFailed(
                        f"the app of {self.space} has no {api_name} endpoint: is it running "
                        "this project's space/app.py? (spacetrain sync, then wait)"
                    ) from None
                raise  # a lost connection: retried
            self.answered = True
            return text

        def lost(exc: BaseException, _attempts: int, _elapsed: float) -> BaseException:
            why = f"{type(exc).__name__}: {one_line(exc)}"
            return StageTimeout(
                f"lost the connection to {self.space} and the deadline passed ({why})"
            )

        def before_wait(exc: BaseException, attempts: int, wait: float) -> float:
            nonlocal failures, lost_since
            failures = attempts
            self.close()
            now = self._clock()
            if self._check_runtime() == "RUNNING":  # up, yet not answering
                lost_since = now if lost_since is None else lost_since
            else:  # starting, building, waking up: give it the time it takes
                lost_since = None
            if lost_since is not None and now - lost_since >= self.disconnect_limit:
                raise StageTimeout(
                    f"the app of {self.space} has not answered for {now - lost_since:.0f} s "
                    f"while the Space is up ({type(exc).__name__}: {one_line(exc)}); is it "
                    f"running this project's space/app.py? ({DISCONNECT_ENV}="
                    f"{self.disconnect_limit:g})"
                ) from None
            if lost_since is not None:  # wake up in time to give up on time
                wait = min(wait, max(0.1, self.disconnect_limit - (now - lost_since)))
            self.progress(
                f"connection to {self.space} lost ({type(exc).__name__}: "
                f"{one_line(exc)[:120]}); retrying in {wait:.1f} s"
            )
            return wait

        text = retry(
            attempt,
            policy=RetryPolicy(),
            transient=lambda exc: not isinstance(exc, SpacetrainError) and not is_app_error(exc),
            give_up=lost,
            before_wait=before_wait,
            deadline=self.deadline,
            clock=self._clock,
            sleep=self._sleep,
            rng=self._rng,
        )
        if failures:
            self.reconnects += 1
            self.progress(f"reconnected to {self.space} after {failures} try(s)")
        return _json_object(text, self.space, api_name)

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


__all__ = [
    "CALL_TIMEOUT",
    "DISCONNECT_ENV",
    "DISCONNECT_LIMIT",
    "SpaceApp",
    "disconnect_limit",
    "is_app_error",
    "one_line",
]
