"""Talking to the Hub: one ``HfApi`` built from the environment, retries, one error map.

Every stage reaches the Hub through :class:`Hub`: the endpoint comes from
``HF_ENDPOINT`` (huggingface.co or localhub: one code path), the token from
``HF_TOKEN`` only (never a token file, never logged). :meth:`Hub.call` retries
what a retry can fix (429, 5xx, dropped connections, timeouts) with exponential
backoff, full jitter and a deadline, never what it cannot (401, 403, 404), and
turns every huggingface_hub failure into one sentence with DESIGN.md's exit code:

- a rejected token                        -> :class:`AuthError` (exit 2)
- no such repo, revision or file, no access -> :class:`UsageError` (exit 2)
- still failing when the deadline passes  -> :class:`HubUnreachable` (exit 3)

Example:
    >>> hub = Hub.from_env()
    >>> info = hub.call("read the dataset", hub.api.dataset_info, "me/kwanzaa")
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    BadRequestError,
    DisabledRepoError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from spacetrain import contract
from spacetrain.errors import AuthError, HubUnreachable, SpacetrainError, UsageError
from spacetrain.inputs import DEFAULT_ENDPOINT, check_endpoint, check_token

T = TypeVar("T")

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_DEADLINE_ENV = contract.ENV_HUB_DEADLINE  # train.py in the Space reads the same


def endpoint_from_env() -> str:
    """``HF_ENDPOINT`` without a trailing slash, or huggingface.co; checked (exit 2)."""
    return check_endpoint(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def token_from_env() -> str | None:
    """``HF_TOKEN``, or ``None``: no other source is consulted; checked (exit 2)."""
    token = os.environ.get("HF_TOKEN", "").strip()
    return check_token(token, "HF_TOKEN") if token else None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by a total deadline (seconds).

    The one policy for every retry spacetrain makes: the Hub (:meth:`Hub.call`) and the
    Space's app (:class:`spacetrain.stages.space_app.SpaceApp`). space/train.py keeps a
    copy of these numbers (``HUB_RETRY_*``; space/ imports nothing from spacetrain) and
    tests/test_hub.py keeps the two equal.

    Attributes:
        deadline: seconds from the first try until giving up (``SPACETRAIN_HUB_DEADLINE``).
        base, cap: retry ``n`` waits ``uniform(0, min(cap, base * 2 ** (n - 1)))``.
        retry_after_cap: the most a server's ``Retry-After`` may make us wait.
    """

    deadline: float = 120.0
    base: float = 0.5
    cap: float = 15.0
    retry_after_cap: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry ``attempt`` (1-based)."""
        return rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))

    def wait(self, attempt: int, rng: random.Random, exc: BaseException) -> float:
        """The backoff, or longer when the server said ``Retry-After``."""
        return max(self.delay(attempt, rng), retry_after(exc, self.retry_after_cap))


def retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    transient: Callable[[BaseException], bool],
    give_up: Callable[[BaseException, int, float], BaseException],
    before_wait: Callable[[BaseException, int, float], float] | None = None,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """``fn()``, tried again after each transient failure until the deadline: the one
    retry loop (backoff with jitter, ``Retry-After``, a deadline) spacetrain has.

    Args:
        fn: one try.
        policy: the backoff and, unless ``deadline`` is given, the deadline.
        transient: whether a failure may go away; any other failure is raised as it is.
        give_up: the error to raise when a transient failure meets the deadline, from
            ``(failure, attempts, elapsed seconds)``.
        before_wait: called before each wait with ``(failure, attempt, seconds)``; returns
            the seconds to wait (it may shorten them) or raises to stop retrying.
        deadline: a ``clock()`` time to give up at (default: ``policy.deadline`` from now).
        clock, sleep, rng: injectable for tests of the loop itself.

    Raises:
        Whatever ``fn`` raised that is not transient, ``give_up``'s error at the
        deadline, or what ``before_wait`` raised.
    """
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    start = clock()
    end = start + policy.deadline if deadline is None else deadline
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            if not transient(exc):
                raise
            now = clock()
            wait = policy.wait(attempt, rng, exc)
            if now + wait > end:
                raise give_up(exc, attempt, now - start) from exc
            if before_wait is not None:
                wait = before_wait(exc, attempt, wait)
            sleep(wait)


def _default_policy() -> RetryPolicy:
    raw = os.environ.get(_DEADLINE_ENV)
    if raw is None:
        return RetryPolicy()
    try:
        deadline = float(raw)
    except ValueError:
        raise UsageError(f"{_DEADLINE_ENV}={raw!r} is not a number of seconds") from None
    return RetryPolicy(deadline=max(0.0, deadline))


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _root_cause(exc: BaseException) -> BaseException:
    """huggingface_hub wraps a network failure in LocalEntryNotFoundError: look inside."""
    seen = 0
    while isinstance(exc, LocalEntryNotFoundError) and exc.__cause__ is not None and seen < 5:
        exc = exc.__cause__
        seen += 1
    return exc


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later may succeed: 429, 5xx, timeouts, dropped connections."""
    exc = _root_cause(exc)
    if isinstance(exc, OfflineModeIsEnabled):
        return False
    if isinstance(exc, HfHubHTTPError):
        return _status(exc) in RETRY_STATUS
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code in RETRY_STATUS
    if isinstance(exc, LocalEntryNotFoundError):
        # Raised without a cause when the Hub could not be asked at all.
        return "internet connection" in str(exc)
    return isinstance(exc, httpx2.TransportError | ConnectionError | TimeoutError)


def retry_after(exc: BaseException, cap: float = 60.0) -> float:
    """The server's ``Retry-After`` seconds on an HTTP failure (at most ``cap``), else 0."""
    response = getattr(_root_cause(exc), "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return min(cap, max(0.0, float(headers.get("Retry-After", 0))))
    except (TypeError, ValueError):
        return 0.0


def _server_words(exc: BaseException) -> str:
    message = getattr(exc, "server_message", None) or ""
    return " ".join(str(message).split())


def explain(exc: BaseException, what: str, *, endpoint: str) -> SpacetrainError:
    """One sentence for a failure that retrying will not fix (or did not fix)."""
    exc = _root_cause(exc)
    status = _status(exc)
    server = _server_words(exc)
    detail = f" ({server})" if server else ""
    if isinstance(exc, HFValidationError):
        return UsageError(f"cannot {what}: {' '.join(str(exc).split())}")
    if isinstance(exc, OfflineModeIsEnabled):
        return UsageError(f"cannot {what}: HF_HUB_OFFLINE is set")
    if isinstance(exc, GatedRepoError):
        return AuthError(f"cannot {what}: the repo is gated; accept its terms with this account")
    if isinstance(exc, DisabledRepoError):
        return UsageError(f"cannot {what}: the repo is disabled{detail}")
    if isinstance(exc, RevisionNotFoundError):
        return UsageError(f"cannot {what}: no such revision{detail}")
    if isinstance(exc, RemoteEntryNotFoundError):
        return UsageError(f"cannot {what}: no such file in the repo{detail}")
    if status == 401 and not isinstance(exc, RepositoryNotFoundError) and not token_from_env():
        return AuthError(f"cannot {what}: {endpoint} wants a token (401); set HF_TOKEN")
    if status == 401 and not isinstance(exc, RepositoryNotFoundError):
        return AuthError(
            f"cannot {what}: {endpoint} rejected the token in HF_TOKEN (401); "
            "set HF_TOKEN to a valid token"
        )
    if isinstance(exc, RepositoryNotFoundError):
        hint = "" if token_from_env() else " (HF_TOKEN is not set)"
        return UsageError(f"cannot {what}: no such repo at {endpoint}, or no access to it{hint}")
    if status == 403:
        return AuthError(
            f"cannot {what}: the token in HF_TOKEN lacks the rights for it (403){detail}"
        )
    if isinstance(exc, BadRequestError) or (status is not None and 400 <= status < 500):
        return UsageError(f"cannot {what}: {endpoint} refused the request ({status}){detail}")
    if is_transient(exc):
        reason = f"HTTP {status}" if status else type(exc).__name__
        return HubUnreachable(f"cannot {what}: {endpoint} is unreachable ({reason}){detail}")
    first = " ".join(str(exc).split())[:200]
    return UsageError(f"cannot {what}: {type(exc).__name__}: {first}")


class Hub:
    """An ``HfApi`` plus the retry and error policy every stage shares.

    Args:
        api: the client; build it with :meth:`from_env` unless a test injects one.
        retry: backoff and deadline.
        sleep, clock: injectable for tests of the policy itself.
    """

    def __init__(
        self,
        api: HfApi,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        self.api = api
        self.retry = retry or _default_policy()
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not cryptography
        self.attempts = 0  # calls made by the last :meth:`call`, for logs and tests

    @classmethod
    def from_env(cls, *, retry: RetryPolicy | None = None, **kwargs: Any) -> Hub:
        """A Hub for ``HF_ENDPOINT`` with the token of ``HF_TOKEN`` (or none at all).

        ``kwargs`` (``sleep``, ``clock``, ``seed``) go to the constructor.
        """
        # token=False, not None: None would fall back to a token file on disk.
        api = HfApi(
            endpoint=endpoint_from_env(),
            token=token_from_env() or False,
            library_name="spacetrain",
        )
        return cls(api, retry=retry, **kwargs)

    @property
    def endpoint(self) -> str:
        """Where requests go."""
        return str(self.api.endpoint).rstrip("/")

    def call(self, what: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)``, retrying transient failures until the deadline.

        ``what`` completes the sentence "cannot ...", e.g. "upload me/kwanzaa".

        Raises:
            AuthError, UsageError: the Hub said no (exit 2).
            HubUnreachable: still failing at the deadline (exit 3).
        """
        self.attempts = 0

        def attempt() -> T:
            self.attempts += 1
            return fn(*args, **kwargs)

        def unreachable(exc: BaseException, attempts: int, elapsed: float) -> BaseException:
            failure = explain(exc, what, endpoint=self.endpoint)
            return HubUnreachable(f"{failure} after {attempts} attempt(s) in {elapsed:.0f} s")

        try:
            return retry(
                attempt,
                policy=self.retry,
                transient=lambda exc: not isinstance(exc, SpacetrainError) and is_transient(exc),
                give_up=unreachable,
                clock=self._clock,
                sleep=self._sleep,
                rng=self._rng,
            )
        except SpacetrainError:
            raise
        except Exception as exc:  # not transient: one sentence, no retry
            raise explain(exc, what, endpoint=self.endpoint) from exc


__all__ = [
    "DEFAULT_ENDPOINT",
    "Hub",
    "RetryPolicy",
    "endpoint_from_env",
    "explain",
    "is_transient",
    "retry",
    "retry_after",
    "token_from_env",
]
