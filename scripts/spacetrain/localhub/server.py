"""``LocalHub``: start the stand-in on a port, hand out its URL, reset it, stop it.

The lifecycle copies moto's ``ThreadedMotoServer``: bind (port 0 picks a free one),
serve from a daemon thread, report the port actually bound, shut down and join. The
server is the stdlib ``ThreadingHTTPServer`` (``wire.ThreadedServer``): it needs nothing
beyond the core install, and it streams (SSE logs) and reads chunked bodies, which is all
the clients ask for.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from spacetrain.localhub.api_control import apply_faults
from spacetrain.localhub.auth import Auth, Token
from spacetrain.localhub.billing import BillingMeter, merge
from spacetrain.localhub.context import Context
from spacetrain.localhub.dispatch import HubHandler
from spacetrain.localhub.faults import FaultPlan, parse_faults
from spacetrain.localhub.jobs import JobSupervisor
from spacetrain.localhub.spaces import SpaceOptions, SpaceSupervisor
from spacetrain.localhub.store import RepoStore
from spacetrain.localhub.wire import ThreadedServer

FAULTS_ENV = "LOCALHUB_FAULTS"


class LocalHub:
    """An offline Hub and Spaces on ``127.0.0.1:<port>`` backed by ``root``.

    Args:
        root: folder for repos (bare git), Space checkouts and logs; survives restarts.
        port: 0 picks a free port; read the real one from :attr:`url` after start.
        tokens: None accepts any token and anonymous calls; a list or a
            ``{token: user | auth.Token}`` map accepts only those tokens, with the Hub's
            roles and namespace rights (a plain user name is a write token).
        admin_token: with ``tokens``, the token the control plane (``/_localhub/*``
            but ``health``) needs; None closes it over HTTP (the methods here still work).
        host: interface to bind (loopback by default).
        python: interpreter that runs Space apps (default: this one).
        build_delay: seconds a Space "builds" before its app starts (tests: 0).
        startup_timeout: seconds an app has to answer HTTP before RUNTIME_ERROR.
        space_env: extra environment for every Space app.
        faults: fault rules or actions applied at start (JSON-like), added to those
            of the ``LOCALHUB_FAULTS`` environment variable.

    Example:
        >>> with LocalHub(root=tmp / "hub") as hub:
        ...     HfApi(endpoint=hub.url, token="x").create_repo("me/m")
    """

    def __init__(
        self,
        root: str | Path,
        port: int = 0,
        tokens: Iterable[str] | Mapping[str, str | Token] | None = None,
        *,
        admin_token: str | None = None,
        host: str = "127.0.0.1",
        python: str | None = None,
        build_delay: float = 0.0,
        startup_timeout: float = 300.0,
        space_env: Mapping[str, str] | None = None,
        faults: Any = None,
    ) -> None:
        self.root = Path(root)
        self.host = host
        self._port = port
        self._faults_at_start = faults
        self._options = SpaceOptions(
            build_delay=build_delay,
            startup_timeout=startup_timeout,
            env=dict(space_env or {}),
            **({"python": python} if python else {}),
        )
        self.auth = Auth(tokens, admin_token=admin_token)
        self.meter = BillingMeter()
        self.faults = FaultPlan()
        self.store: RepoStore | None = None
        self.spaces: SpaceSupervisor | None = None
        self.jobs: JobSupervisor | None = None
        self._server: ThreadedServer | None = None
        self._thread: threading.Thread | None = None
        self._ctx: Context | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: what HF_ENDPOINT or ``HfApi(endpoint=)`` takes."""
        if self._server is None:
            raise RuntimeError("LocalHub is not started")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def start(self) -> Self:
        """Bind, load the repos, bring Spaces back up, and serve; returns self.

        Raises OSError when the port cannot be bound and ``errors.BadRequest`` for a
        malformed fault spec (``faults=`` or ``LOCALHUB_FAULTS``); nothing is left running.
        """
        with self._lock:
            if self._server is not None:
                return self
            payloads = [p for p in (os.environ.get(FAULTS_ENV), self._faults_at_start) if p]
            for payload in payloads:
                parse_faults(payload)  # refuse a bad spec before anything starts
            self.root.mkdir(parents=True, exist_ok=True)
            handler = type("BoundHandler", (HubHandler,), {})
            server = ThreadedServer((self.host, self._port), handler)
            self._server = server
            self.store = RepoStore(self.root)
            self.spaces = SpaceSupervisor(
                self.store,
                self.meter,
                hub_url=lambda: self.url,
                options=self._options,
                admit=self._admit,
            )
            self.jobs = JobSupervisor(
                self.store,
                self.auth,
                root=self.root,
                hub_url=lambda: self.url,
                options=self._options,
            )
            self._ctx = Context(
                store=self.store,
                spaces=self.spaces,
                faults=self.faults,
                meter=self.meter,
                auth=self.auth,
                jobs=self.jobs,
                base_url=lambda: self.url,
                reset=self.reset,
            )
            server.RequestHandlerClass.ctx = self._ctx  # type: ignore[attr-defined]
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            self._thread.start()
            try:
                self.spaces.start()
                self.jobs.start()
                for payload in payloads:
                    apply_faults(self._ctx, payload)
            except BaseException:
                self._teardown()
                raise
        return self

    def _admit(self, repo_id: str, headers: dict[str, str]) -> tuple[int, str] | None:
        store = self.store
        if self._ctx is None or store is None:
            return 503, "localhub is stopping"
        repo = store.find("space", repo_id)
        if repo is None:
            return 404, f"Space {repo_id} does not exist"
        return self.auth.admit(repo.private, repo_id, headers)

    def stop(self) -> None:
        """Stop every Space app this hub started, then the server."""
        with self._lock:
            self._teardown()

    def _teardown(self) -> None:
        if self._server is None:
            return
        assert self._ctx is not None and self.spaces is not None and self.store is not None
        assert self.jobs is not None
        self._ctx.stopping.set()
        self.jobs.stopping.set()
        self.jobs.close()
        self.spaces.close()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.store.close()
        self._server = self._thread = None
        self._ctx = None
        self.store = self.spaces = self.jobs = None

    def reset(self) -> None:
        """Wipe repos, Spaces, Jobs, faults, billing and the request log; keep serving."""
        if self.spaces is None or self.store is None or self._ctx is None or self.jobs is None:
            raise RuntimeError("LocalHub is not started")
        self.jobs.reset()
        self.spaces.reset()
        self.store.wipe()
        shutil.rmtree(self.root / "_spaces", ignore_errors=True)
        self.faults.clear()
        self.meter.reset()
        self._ctx.requests.clear()
        self.spaces.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ conveniences for tests

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request served so far: method, path, query, status, ms (newest last)."""
        return list(self._ctx.requests) if self._ctx is not None else []

    def add_faults(self, payload: Any) -> None:
        """Same as ``POST /_localhub/faults``."""
        if self._ctx is None:
            raise RuntimeError("LocalHub is not started")
        apply_faults(self._ctx, payload)

    def billing(self) -> dict[str, Any]:
        """Same as ``GET /_localhub/billing`` (the admin's view): ``spaces``, ``jobs``
        (one entry per Job: ``billing``, ``flavors``, ``namespace``) and ``total``."""
        if self.jobs is None:
            return self.meter.snapshot()
        return merge(self.meter.snapshot(), self.jobs.billing())


__all__ = ["FAULTS_ENV", "LocalHub"]
