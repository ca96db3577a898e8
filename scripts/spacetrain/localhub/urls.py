"""The URL table: every endpoint localhub serves, one line each (method, path, handler,
who may call it). Adding an API surface is a module of handlers plus its lines here.

Paths are regular expressions anchored at both ends, with placeholders for the parts
most routes share: ``{kind}`` (``models|datasets|spaces``), ``{repo}`` (``ns/name``),
``{space}`` (``/api/spaces/ns/name``), ``{jobs}`` (``/api/jobs/ns``), ``{job}`` (a Job
id), ``{rev}`` (one path segment) and ``{path}`` (the rest). Named groups become the
handler's keyword arguments, percent-decoded; a group that did not match is left out,
so the handler's default applies. The first pattern that matches wins; a path that
matches with another method is 405, none is 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from spacetrain.localhub import (
    api_account,
    api_control,
    api_files,
    api_jobs,
    api_repos,
    api_spaces,
)
from spacetrain.localhub.auth import ADMIN, ADMIN_OR_USER, HUB
from spacetrain.localhub.errors import HubError, NotFound
from spacetrain.localhub.wire import Response

Handler = Callable[..., Response]

_PLACEHOLDERS = {
    "{kind}": r"(?P<kind>models|datasets|spaces)",
    "{repo}": r"(?P<ns>[^/]+)/(?P<name>[^/]+)",
    "{space}": r"/api/spaces/(?P<ns>[^/]+)/(?P<name>[^/]+)",
    "{rev}": r"(?P<rev>[^/]+)",
    "{path}": r"(?P<path>.+)",
    "{jobs}": r"/api/jobs/(?P<ns>[^/]+)",
    "{job}": r"(?P<job_id>[^/]+)",
}


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    pattern: re.Pattern[str]
    handler: Handler
    guard: str  # auth.HUB, auth.ADMIN or auth.ADMIN_OR_USER (see auth.Auth.guard)


def route(methods: str, path: str, handler: Handler, guard: str = HUB) -> Route:
    """One line of the table: ``methods`` space-separated, ``path`` with placeholders."""
    for name, regex in _PLACEHOLDERS.items():
        path = path.replace(name, regex)
    return Route(tuple(methods.split()), re.compile(f"^{path}$"), handler, guard)


# fmt: off
ROUTES: list[Route] = [
    # localhub's control plane
    route("GET", "/_localhub/health", api_control.health),
    route("POST", "/_localhub/reset", api_control.reset, ADMIN),
    route("GET", "/_localhub/billing", api_control.billing, ADMIN_OR_USER),
    route("GET DELETE", "/_localhub/requests", api_control.requests, ADMIN),
    route("GET POST DELETE", "/_localhub/faults", api_control.faults, ADMIN),
    # account
    route("GET", "/api/whoami-v2", api_account.whoami),
    route("HEAD GET POST", "/api/telemetry(?:/.*)?", api_account.telemetry),
    # repos
    route("POST", "/api/repos/create", api_repos.create_repo),
    route("DELETE", "/api/repos/delete", api_repos.delete_repo),
    route("GET", "/api/{kind}/{repo}", api_repos.repo_info),
    route("GET", "/api/{kind}/{repo}/revision/{rev}", api_repos.repo_info),
    route("GET", "/api/{kind}/{repo}/refs", api_repos.refs),
    route("POST", "/api/{kind}/{repo}/tag/{rev}", api_repos.create_tag),
    route("POST", "/api/{kind}/{repo}/branch/{rev}", api_repos.create_branch),
    # files
    route("GET", "/api/{kind}/{repo}/tree/{rev}(?:/(?P<path>.*))?", api_files.tree),
    route("POST", "/api/{kind}/{repo}/paths-info/{rev}", api_files.paths_info),
    route("GET", "/api/{kind}/{repo}/commits/{rev}", api_files.commits),
    route("POST", "/api/validate-yaml", api_files.validate_yaml),
    route("POST", "/api/{kind}/{repo}/preupload/{rev}", api_files.preupload),
    route("POST", "/api/{kind}/{repo}/commit/{rev}", api_files.commit),
    route("GET HEAD", "/(?:(?P<prefix>datasets|spaces)/)?{repo}/resolve/{rev}/{path}", api_files.resolve),  # noqa: E501
    # Spaces
    route("GET", "{space}/runtime", api_spaces.space_runtime),
    route("POST", "{space}/restart", api_spaces.space_restart),
    route("POST", "{space}/pause", api_spaces.space_pause),
    route("POST", "{space}/hardware", api_spaces.space_hardware),
    route("POST", "{space}/sleeptime", api_spaces.space_sleeptime),
    route("GET POST DELETE", "{space}/(?P<kind>variables|secrets)", api_spaces.space_env),
    route("GET", "{space}/logs/(?P<which>build|run)", api_spaces.space_logs),
    # Jobs (hardware first: it is not a namespace)
    route("GET", "/api/jobs/hardware", api_jobs.jobs_hardware),
    route("POST", "{jobs}", api_jobs.run_job),
    route("GET", "{jobs}", api_jobs.list_jobs),
    route("GET", "{jobs}/{job}", api_jobs.inspect_job),
    route("POST", "{jobs}/{job}/cancel", api_jobs.cancel_job),
    route("GET", "{jobs}/{job}/logs", api_jobs.job_logs),
]
# fmt: on


class MethodNotAllowed(HubError):
    status = 405


def match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for a raw path, with its percent-decoded parameters."""
    allowed = False
    for entry in ROUTES:
        found = entry.pattern.match(path)
        if found is None:
            continue
        if method not in entry.methods:
            allowed = True
            continue
        params = {k: unquote(v) for k, v in found.groupdict().items() if v is not None}
        return entry, params
    if allowed:
        raise MethodNotAllowed(f"{method} is not allowed on {path}")
    raise NotFound(f"localhub has no route for {method} {path}")


__all__ = ["ROUTES", "Route", "match", "route"]
