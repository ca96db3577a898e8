"""What every API handler is given: the hub's parts, and the repo lookups that apply
the caller's rights (a repo the caller may not see does not exist, as on the Hub)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spacetrain.localhub.auth import Auth
from spacetrain.localhub.billing import BillingMeter
from spacetrain.localhub.errors import RepoNotFound
from spacetrain.localhub.faults import FaultPlan
from spacetrain.localhub.jobs import JobSupervisor
from spacetrain.localhub.spaces import SpaceSupervisor
from spacetrain.localhub.store import URL_PREFIX, Repo, RepoStore
from spacetrain.localhub.wire import Request

_REQUEST_LOG = 10_000


@dataclass
class Context:
    """Everything a handler may use; built by ``server.LocalHub``."""

    store: RepoStore
    spaces: SpaceSupervisor
    faults: FaultPlan
    meter: BillingMeter
    auth: Auth
    jobs: JobSupervisor
    base_url: Callable[[], str]
    reset: Callable[[], None]
    stopping: threading.Event = field(default_factory=threading.Event)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=_REQUEST_LOG))

    def repo(self, req: Request, repo_type: str, repo_id: str) -> Repo:
        """The repo, or RepoNotFound if it does not exist or the caller may not see it."""
        repo = self.store.find(repo_type, repo_id)
        if repo is None or not self.auth.can_see(req.caller, repo.private, repo_type, repo_id):
            raise RepoNotFound(repo_type, repo_id)
        return repo

    def writable(self, req: Request, repo_type: str, repo_id: str) -> tuple[Repo, str]:
        """The repo and the user writing to it (401 anonymous, 403 a token without the
        right, on a restricted server)."""
        repo = self.repo(req, repo_type, repo_id)
        return repo, self.auth.check_write(req.caller, repo_type, repo.repo_id)

    def space(self, req: Request, ns: str, name: str, *, write: bool) -> Repo:
        """A Space the caller may see (and, with ``write``, change)."""
        repo = self.repo(req, "space", f"{ns}/{name}")
        if write:
            self.auth.check_write(req.caller, "space", repo.repo_id)
        return repo

    def find_space(self, repo_id: Any) -> Repo:
        """A Space by id, whoever asks (fault actions come from the control plane)."""
        repo = self.store.find("space", str(repo_id))
        if repo is None:
            raise RepoNotFound("space", str(repo_id))
        return repo


def repo_url(req: Request, repo_type: str, repo_id: str) -> str:
    return f"{req.base}/{URL_PREFIX[repo_type]}{repo_id}"


__all__ = ["Context", "repo_url"]
