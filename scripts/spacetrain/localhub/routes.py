"""HTTP only: a path table, request parsing, and answers in the Hub's shapes.

Each route reads its parameters, calls the store or the Space supervisor, and turns
the result into JSON. Domain errors (``errors.HubError``) become the Hub's error
protocol in one place, :meth:`Handler._send_error`. Faults are applied before routing.
The shapes follow ../shared/reference/hub-api.md (huggingface_hub 2.4.0 and
gradio_client 2.7.2).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import socket
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

from spacetrain.localhub.auth import Auth, Caller, user_id
from spacetrain.localhub.billing import FLAVORS, BillingMeter, merge
from spacetrain.localhub.card import FrontMatterError, front_matter
from spacetrain.localhub.errors import (
    BadRequest,
    Conflict,
    EntryNotFound,
    HubError,
    NotFound,
    RepoNotFound,
    Unauthorized,
    Unprocessable,
)
from spacetrain.localhub.faults import FaultPlan, parse_faults
from spacetrain.localhub.jobs import JobSupervisor
from spacetrain.localhub.spaces import SpaceSupervisor, check_sleep
from spacetrain.localhub.store import (
    REPO_TYPES,
    URL_PREFIX,
    Entry,
    Operation,
    Repo,
    RepoStore,
    now_iso,
)

TREE_PAGE = 1000
TREE_PAGE_EXPANDED = 50
COMMITS_PAGE = 50
KEEPALIVE_S = 10.0  # SSE keep-alive: longer than the 5 s after which a no-follow reader stops
_REQUEST_LOG = 10_000


@dataclass
class Context:
    """Everything a route may use; built by ``server.LocalHub``."""

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


@dataclass
class Request:
    """One parsed request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    caller: Caller
    base: str
    admin: bool = False  # holds the control plane (always, on an open server)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str) -> bool:
        return (self.arg(name) or "").lower() in ("1", "true", "yes")

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"Request body is not JSON: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise BadRequest("Request body must be a JSON object")
        return data


@dataclass
class Response:
    """A full body, or a stream (sent with ``Connection: close``)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status,
        json.dumps(data).encode(),
        {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


# ---------------------------------------------------------------- helpers


def _repo(ctx: Context, req: Request, repo_type: str, repo_id: str) -> Repo:
    """The repo, or RepoNotFound if it does not exist or the caller may not see it."""
    repo = ctx.store.find(repo_type, repo_id)
    if repo is None or not ctx.auth.can_see(req.caller, repo.private, repo_type, repo.repo_id):
        raise RepoNotFound(repo_type, repo_id)
    return repo


def _writable(ctx: Context, req: Request, repo_type: str, repo_id: str) -> tuple[Repo, str]:
    """The repo and the user writing to it (401 anonymous, 403 a token without the right,
    on a restricted server)."""
    repo = _repo(ctx, req, repo_type, repo_id)
    return repo, ctx.auth.check_write(req.caller, repo_type, repo.repo_id)


def _repo_url(req: Request, repo_type: str, repo_id: str) -> str:
    return f"{req.base}/{URL_PREFIX[repo_type]}{repo_id}"


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {"type": entry.kind, "oid": entry.oid, "size": entry.size, "path": entry.path}


def _last_commits(repo: Repo, sha: str, paths: list[str]) -> dict[str, Any]:
    """For each path, the newest commit at or before ``sha`` that changed it."""
    remaining = set(paths)
    found: dict[str, Any] = {}
    for commit in repo.history(sha):
        if not remaining:
            break
        snap = repo.snapshot(commit.sha)
        parent = repo.snapshot(commit.parents[0]) if commit.parents else None
        for path in list(remaining):
            here = snap.entry(path)
            before = parent.entry(path) if parent else None
            if here is not None and (before is None or before.oid != here.oid):
                found[path] = {"id": commit.sha, "title": commit.title, "date": commit.date}
                remaining.discard(path)
    return found


def _paged(
    req: Request, items: list[Any], page: int, render: Callable[[list[Any]], list[Any]]
) -> Response:
    """One page of ``items`` with a GitHub-style ``Link: <…>; rel="next"``."""
    try:
        limit = max(1, min(page, int(req.arg("limit") or page)))
        start = max(0, int(req.arg("cursor") or 0))
    except ValueError:
        raise BadRequest("cursor and limit must be integers") from None
    chunk = items[start : start + limit]
    headers = {}
    if start + limit < len(items):
        query = {k: v[-1] for k, v in req.query.items()}
        query.update(cursor=str(start + limit), limit=str(limit))
        headers["Link"] = f'<{req.base}{quote(req.path)}?{urlencode(query)}>; rel="next"'
    return json_response(render(chunk), headers=headers)


def _card(repo: Repo, sha: str) -> dict[str, Any]:
    entry = repo.snapshot(sha).files.get("README.md")
    if entry is None:
        return {}
    try:
        return front_matter(repo.read_blob(entry.oid).decode("utf-8", "replace"))
    except FrontMatterError:
        return {}


def repo_json(ctx: Context, req: Request, repo: Repo, sha: str) -> dict[str, Any]:
    """``model_info`` / ``dataset_info`` / ``space_info`` at one commit."""
    commit = repo.commit(sha)
    assert commit is not None
    snap = repo.snapshot(sha)
    card = _card(repo, sha)
    blobs = req.flag("blobs")
    siblings = []
    for path, entry in sorted(snap.files.items()):
        sib: dict[str, Any] = {"rfilename": path}
        if blobs:
            sib.update(size=entry.size, blobId=entry.oid)
        siblings.append(sib)
    tags = [str(t) for t in card.get("tags") or [] if isinstance(t, str | int)]
    data: dict[str, Any] = {
        "_id": repo.meta.get("_id"),
        "id": repo.repo_id,
        "author": repo.namespace,
        "sha": sha,
        "lastModified": commit.date,
        "createdAt": repo.meta.get("createdAt"),
        "private": repo.private,
        "disabled": False,
        "gated": False,
        "likes": 0,
        "downloads": 0,
        "tags": tags,
        "siblings": siblings,
        "usedStorage": sum(e.size for e in snap.files.values()),
    }
    if card:
        data["cardData"] = card
    if repo.repo_type == "model":
        data["modelId"] = repo.repo_id
        for key in ("library_name", "pipeline_tag"):
            if isinstance(card.get(key), str):
                data[key] = card[key]
    if repo.repo_type == "space":
        runtime = ctx.spaces.runtime(repo)
        data["sdk"] = card.get("sdk") or repo.meta.get("sdk")
        data["subdomain"] = repo.repo_id.replace("/", "-").lower()
        data["host"] = ctx.spaces.host(repo)
        data["runtime"] = runtime
        if data["sdk"] and data["sdk"] not in tags:
            tags.append(data["sdk"])
    expand = req.query.get("expand")
    if expand:
        keep = {"_id", "id", *expand}
        data = {k: v for k, v in data.items() if k in keep}
    return data


# ---------------------------------------------------------------- routes: account


def whoami(ctx: Context, req: Request) -> Response:
    if req.caller.anonymous:
        raise Unauthorized("Invalid credentials in Authorization header")
    name = req.caller.user
    return json_response(
        {
            "type": "user",
            "id": user_id(name),
            "name": name,
            "fullname": name,
            "email": f"{name}@users.noreply.localhub",
            "emailVerified": True,
            "canPay": False,
            "isPro": False,
            "periodEnd": None,
            "avatarUrl": "",
            "orgs": [],
            "auth": ctx.auth.whoami_auth(req.caller, now_iso()),
        }
    )


def telemetry(ctx: Context, req: Request) -> Response:
    return Response(200)


def validate_yaml(ctx: Context, req: Request) -> Response:
    body = req.json_object()
    content = body.get("content")
    if not isinstance(content, str):
        return json_response({"errors": [{"message": "content must be a string"}]}, 400)
    try:
        front_matter(content)
    except FrontMatterError as exc:
        return json_response({"errors": [{"message": str(exc)}], "warnings": []}, 400)
    return json_response({"errors": [], "warnings": []})


# ---------------------------------------------------------------- routes: repos


def create_repo(ctx: Context, req: Request) -> Response:
    body = req.json_object()
    user = ctx.auth.writer(req.caller)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("name is required")
    namespace = body.get("organization") or user
    repo_type = body.get("type") or "model"
    if repo_type not in REPO_TYPES:
        raise BadRequest(f"Invalid repo type {repo_type!r}")
    repo_id = f"{namespace}/{name}"
    ctx.auth.check_write(req.caller, repo_type, repo_id)  # 403 outside the token's rights
    private = body.get("visibility", "private" if body.get("private") else "public") != "public"
    url = f"{req.base}/{URL_PREFIX[repo_type]}{repo_id}"
    existing = ctx.store.find(repo_type, repo_id)
    if existing is not None:
        # 409 carries the url: huggingface_hub's exist_ok=True reads it.
        raise Conflict(f"You already created this {repo_type} repo", extra={"url": url})
    hardware = body.get("hardware")
    if hardware is not None and hardware not in FLAVORS:
        raise BadRequest(f"Invalid hardware flavor {hardware!r}")
    settings: dict[str, Any] = {}
    if repo_type == "space":
        if hardware:
            settings["hardware"] = hardware
        if body.get("sleepTimeSeconds") is not None:
            settings["sleepTime"] = check_sleep(body["sleepTimeSeconds"])
        for kind in ("secrets", "variables"):
            table = {}
            for item in body.get(kind) or []:
                if not isinstance(item, dict) or "key" not in item:
                    raise BadRequest(f"{kind} must be a list of {{key, value}} objects")
                table[item["key"]] = {
                    "value": str(item.get("value", "")),
                    "description": item.get("description"),
                    "updatedAt": now_iso(),
                }
            if table:
                settings[kind] = table
    try:
        repo = ctx.store.create(
            repo_type,
            repo_id,
            author=user,
            private=private,
            sdk=body.get("sdk") if repo_type == "space" else None,
            meta={"space": settings} if repo_type == "space" else None,
        )
    except Conflict as exc:  # created by a concurrent request, or differing only in case
        raise Conflict(exc.message, extra={"url": url}) from None
    if repo_type == "space":
        ctx.spaces.resume(repo)
    return json_response({"url": url, "name": repo_id, "id": repo.meta.get("_id")})


def _body_repo(ctx: Context, req: Request) -> tuple[str, str]:
    body = req.json_object()
    repo_type = body.get("type") or "model"
    if repo_type not in REPO_TYPES:
        raise BadRequest(f"Invalid repo type {repo_type!r}")
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("name is required")
    namespace = body.get("organization") or ctx.auth.writer(req.caller)
    return repo_type, f"{namespace}/{name}"


def delete_repo(ctx: Context, req: Request) -> Response:
    repo_type, repo_id = _body_repo(ctx, req)
    _writable(ctx, req, repo_type, repo_id)
    if repo_type == "space":
        ctx.spaces.forget(repo_id)
    ctx.store.delete(repo_type, repo_id)
    return Response(200)


def move_repo(ctx: Context, req: Request) -> Response:
    body = req.json_object()
    repo_type = body.get("type") or "model"
    src, dst = body.get("fromRepo"), body.get("toRepo")
    if repo_type not in REPO_TYPES or not isinstance(src, str) or not isinstance(dst, str):
        raise BadRequest("fromRepo, toRepo and a valid type are required")
    _writable(ctx, req, repo_type, src)
    ctx.auth.check_write(req.caller, repo_type, dst)
    if repo_type == "space":
        ctx.spaces.forget(src)
    moved = ctx.store.move(repo_type, src, dst)
    if repo_type == "space":
        ctx.spaces.resume(moved)
    return Response(200)


def list_repos(ctx: Context, req: Request, kind: str) -> Response:
    repo_type = kind[:-1]
    author = req.arg("author")
    search = (req.arg("search") or "").lower()
    rows = []
    for repo in ctx.store.all(repo_type):
        if not ctx.auth.can_see(req.caller, repo.private, repo_type, repo.repo_id):
            continue
        if author and repo.namespace != author:
            continue
        if search and search not in repo.repo_id.lower():
            continue
        rows.append(repo)

    def render(chunk: list[Repo]) -> list[dict[str, Any]]:
        out = []
        for repo in chunk:
            sha = repo.head()
            commit = repo.commit(sha)
            assert commit is not None
            out.append(
                {
                    "_id": repo.meta.get("_id"),
                    "id": repo.repo_id,
                    "author": repo.namespace,
                    "sha": sha,
                    "lastModified": commit.date,
                    "createdAt": repo.meta.get("createdAt"),
                    "private": repo.private,
                    "likes": 0,
                    "downloads": 0,
                    "tags": [],
                    **({"sdk": repo.meta.get("sdk")} if repo_type == "space" else {}),
                }
            )
        return out

    return _paged(req, rows, TREE_PAGE, render)


def repo_info(
    ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str | None = None
) -> Response:
    repo = _repo(ctx, req, kind[:-1], f"{ns}/{name}")
    sha = repo.resolve(rev)
    return json_response(repo_json(ctx, req, repo, sha))


def repo_settings(ctx: Context, req: Request, kind: str, ns: str, name: str) -> Response:
    repo, _ = _writable(ctx, req, kind[:-1], f"{ns}/{name}")
    body = req.json_object()
    if "visibility" in body:
        if body["visibility"] not in ("public", "private", "protected"):
            raise BadRequest(f"Invalid visibility {body['visibility']!r}")
        repo.meta["private"] = body["visibility"] != "public"
    elif "private" in body:
        repo.meta["private"] = bool(body["private"])
    if "gated" in body and body["gated"] not in (False, "auto", "manual"):
        raise BadRequest(f"Invalid gated value {body['gated']!r}")
    repo.save_meta()
    return json_response({"private": repo.private})


def tree(
    ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str, path: str = ""
) -> Response:
    repo = _repo(ctx, req, kind[:-1], f"{ns}/{name}")
    sha = repo.resolve(rev)
    snap = repo.snapshot(sha)
    folder = path.strip("/")
    if folder and folder not in snap.dirs:
        if folder in snap.files:
            entries = [snap.files[folder]]
        else:
            raise EntryNotFound(
                f"{folder} does not exist on {repo.repo_id}@{sha}", headers={"X-Repo-Commit": sha}
            )
    else:
        entries = snap.listing(folder, recursive=req.flag("recursive"))
    expand = req.flag("expand")

    def render(chunk: list[Entry]) -> list[dict[str, Any]]:
        rows = [_entry_json(e) for e in chunk]
        if expand:
            last = _last_commits(repo, sha, [e.path for e in chunk])
            for row in rows:
                row["lastCommit"] = last.get(row["path"])
        return rows

    return _paged(req, entries, TREE_PAGE_EXPANDED if expand else TREE_PAGE, render)


def paths_info(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo = _repo(ctx, req, kind[:-1], f"{ns}/{name}")
    sha = repo.resolve(rev)
    content_type = req.headers.get("Content-Type", "")
    if "json" in content_type:
        body = req.json_object()
        paths, expand = body.get("paths") or [], bool(body.get("expand"))
    else:
        form = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        paths, expand = form.get("paths", []), form.get("expand", ["false"])[-1].lower() == "true"
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise BadRequest("paths must be a list of strings")
    snap = repo.snapshot(sha)
    entries = [e for p in paths if (e := snap.entry(p.strip("/"))) is not None]
    rows = [_entry_json(e) for e in entries]
    if expand:
        last = _last_commits(repo, sha, [e.path for e in entries])
        for row in rows:
            row["lastCommit"] = last.get(row["path"])
    return json_response(rows)


def refs(ctx: Context, req: Request, kind: str, ns: str, name: str) -> Response:
    repo = _repo(ctx, req, kind[:-1], f"{ns}/{name}")
    return json_response(
        {
            "branches": [
                {"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha}
                for b, sha in sorted(repo.branches.items())
            ],
            "converts": [],
            "tags": [
                {"name": t, "ref": f"refs/tags/{t}", "targetCommit": sha}
                for t, sha in sorted(repo.tags.items())
            ],
            **({"pullRequests": []} if req.flag("include_prs") else {}),
        }
    )


def commits(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo = _repo(ctx, req, kind[:-1], f"{ns}/{name}")
    history = list(repo.history(repo.resolve(rev)))

    def render(chunk: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "id": c.sha,
                "title": c.title,
                "message": c.message,
                "authors": [{"user": c.author, "avatar": ""}],
                "date": c.date,
            }
            for c in chunk
        ]

    return _paged(req, history, COMMITS_PAGE, render)


def create_tag(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo, _ = _writable(ctx, req, kind[:-1], f"{ns}/{name}")
    body = req.json_object()
    tag = body.get("tag")
    if not isinstance(tag, str) or not tag:
        raise BadRequest("tag is required")
    message = body.get("message")
    repo.create_tag(tag, rev, message if isinstance(message, str) else None)
    return Response(200)


def delete_tag(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo, _ = _writable(ctx, req, kind[:-1], f"{ns}/{name}")
    repo.delete_tag(rev)
    return Response(200)


def create_branch(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo, _ = _writable(ctx, req, kind[:-1], f"{ns}/{name}")
    body = req.json_object() if req.body else {}
    if body.get("emptyBranch"):
        raise Unprocessable("localhub does not create empty branches")
    repo.create_branch(rev, body.get("startingPoint"))
    return Response(200)


def delete_branch(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo, _ = _writable(ctx, req, kind[:-1], f"{ns}/{name}")
    repo.delete_branch(rev)
    return Response(200)


def preupload(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo, _ = _writable(ctx, req, kind[:-1], f"{ns}/{name}")
    sha = repo.resolve(repo.branch_of(rev))
    body = req.json_object()
    files = body.get("files")
    if not isinstance(files, list):
        raise BadRequest("files must be a list")
    gitignore = body.get("gitIgnore")
    snap = repo.snapshot(sha)
    out = []
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise BadRequest("each file needs a path")
        path = item["path"]
        row: dict[str, Any] = {
            "path": path,
            # Always regular: no LFS, no Xet, the bytes ride in the commit body.
            "uploadMode": "regular",
            "shouldIgnore": repo.should_ignore(sha, path, gitignore),
        }
        existing = snap.files.get(path)
        if existing is not None:
            row["oid"] = existing.oid
        out.append(row)
    return json_response({"files": out, "commitOid": sha})


def _parse_commit(body: bytes) -> tuple[dict[str, Any], list[Operation]]:
    header: dict[str, Any] | None = None
    ops: list[Operation] = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise BadRequest(
                f"commit body line {number}: not a {{key, value}} JSON object"
            ) from None
        if key == "header":
            header = value
        elif key == "file":
            encoding = value.get("encoding", "base64")
            try:
                content = (
                    base64.b64decode(value["content"], validate=True)
                    if encoding == "base64"
                    else str(value["content"]).encode()
                )
            except (binascii.Error, KeyError, TypeError):
                raise BadRequest(f"commit body line {number}: bad file content") from None
            ops.append(Operation("file", str(value.get("path", "")), content))
        elif key in ("deletedFile", "deletedFolder"):
            ops.append(Operation(key, str(value.get("path", ""))))
        elif key == "lfsFile":
            raise Unprocessable(
                f"localhub keeps files in git and takes no LFS/Xet uploads ({value.get('path')}): "
                "its preupload answers 'regular' for every file, so this client sent an LFS "
                "pointer for a file it was not asked to; copying LFS files is not supported"
            )
        else:
            raise BadRequest(f"commit body line {number}: unknown key {key!r}")
    if not isinstance(header, dict):
        raise BadRequest("commit body has no header line")
    return header, ops


def commit(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo, user = _writable(ctx, req, kind[:-1], f"{ns}/{name}")
    if req.flag("create_pr"):
        raise Unprocessable("localhub does not support pull requests (create_pr=True)")
    header, ops = _parse_commit(req.body)
    branch = repo.branch_of(rev)
    sha = repo.apply(
        ops,
        summary=str(header.get("summary") or ""),
        description=str(header.get("description") or ""),
        author=user,
        revision=branch,
        parent=header.get("parentCommit"),
    )
    if repo.repo_type == "space" and branch == "main":
        ctx.spaces.on_commit(repo, sha)
    return json_response(
        {
            "success": True,
            "commitOid": sha,
            "commitUrl": f"{_repo_url(req, repo.repo_type, repo.repo_id)}/commit/{sha}",
            "hookOutput": "",
        }
    )


def no_xet(ctx: Context, req: Request, **_: str) -> Response:
    raise Unprocessable("localhub does not speak Xet or LFS: every upload is 'regular'")


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def resolve(
    ctx: Context, req: Request, prefix: str | None, ns: str, name: str, rev: str, path: str
) -> Response:
    repo_type = {"datasets": "dataset", "spaces": "space", None: "model"}[prefix]
    repo = _repo(ctx, req, repo_type, f"{ns}/{name}")
    sha = repo.resolve(rev)
    entry = repo.file_entry(sha, path)
    headers = {
        "X-Repo-Commit": sha,
        "ETag": f'"{entry.oid}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
    }
    if req.method == "HEAD":  # the size is known: no need to read the blob
        return Response(200, b"", {**headers, "Content-Length": str(entry.size)})
    data = repo.read_blob(entry.oid)
    wanted = req.headers.get("Range")
    if wanted:
        match = _RANGE.match(wanted.strip())
        size = len(data)
        if match and (match[1] or match[2]):
            if match[1]:
                start = int(match[1])
                end = min(int(match[2]), size - 1) if match[2] else size - 1
            else:
                start, end = max(0, size - int(match[2])), size - 1
            if start < size and start <= end:
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
                return Response(206, data[start : end + 1], headers)
        headers["Content-Range"] = f"bytes */{size}"
        raise _RangeNotSatisfiable(headers)
    return Response(200, data, headers)


class _RangeNotSatisfiable(HubError):
    status = 416

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("Requested range not satisfiable", headers=headers)


# ---------------------------------------------------------------- routes: Spaces


def _space(ctx: Context, req: Request, ns: str, name: str, *, write: bool) -> Repo:
    repo = _repo(ctx, req, "space", f"{ns}/{name}")
    if write:
        ctx.auth.check_write(req.caller, "space", repo.repo_id)
    return repo


def space_runtime(ctx: Context, req: Request, ns: str, name: str) -> Response:
    return json_response(ctx.spaces.runtime(_space(ctx, req, ns, name, write=False)))


def space_restart(ctx: Context, req: Request, ns: str, name: str) -> Response:
    repo = _space(ctx, req, ns, name, write=True)
    return json_response(ctx.spaces.restart(repo, factory=req.flag("factory")))


def space_pause(ctx: Context, req: Request, ns: str, name: str) -> Response:
    return json_response(ctx.spaces.pause(_space(ctx, req, ns, name, write=True)))


def space_hardware(ctx: Context, req: Request, ns: str, name: str) -> Response:
    repo = _space(ctx, req, ns, name, write=True)
    body = req.json_object()
    flavor = body.get("flavor")
    if not isinstance(flavor, str):
        raise BadRequest("flavor is required")
    return json_response(ctx.spaces.set_hardware(repo, flavor, body.get("sleepTimeSeconds")))


def space_sleeptime(ctx: Context, req: Request, ns: str, name: str) -> Response:
    repo = _space(ctx, req, ns, name, write=True)
    return json_response(ctx.spaces.set_sleep_time(repo, req.json_object().get("seconds")))


def space_env(ctx: Context, req: Request, ns: str, name: str, kind: str) -> Response:
    repo = _space(ctx, req, ns, name, write=req.method != "GET" or kind == "secrets")
    if req.method == "GET":
        return json_response(
            ctx.spaces.variables(repo) if kind == "variables" else ctx.spaces.secrets(repo)
        )
    body = req.json_object()
    key = body.get("key")
    if not isinstance(key, str):
        raise BadRequest("key is required")
    if req.method == "POST":
        if "value" not in body:
            raise BadRequest("value is required")
        ctx.spaces.set_env(repo, kind, key, str(body["value"]), body.get("description"))
    else:
        ctx.spaces.set_env(repo, kind, key, None, None)
    if kind == "variables":
        return json_response(ctx.spaces.variables(repo))
    return Response(200)


def space_logs(ctx: Context, req: Request, ns: str, name: str, which: str) -> Response:
    repo = _space(ctx, req, ns, name, write=True)
    space = ctx.spaces.space(repo)
    log = space.build_log if which == "build" else space.run_log

    def events() -> Iterator[bytes]:
        last = time.monotonic()
        for item in log.follow(ctx.stopping):
            if item is None:
                if time.monotonic() - last >= KEEPALIVE_S:
                    last = time.monotonic()
                    yield b": keep-alive\n\n"
                continue
            stamp, line = item
            yield (
                b"data: "
                + json.dumps({"data": line, "timestamp": now_iso(stamp)}).encode()
                + b"\n\n"
            )

    return Response(
        200,
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        stream=events(),
    )


def space_dev_mode(ctx: Context, req: Request, ns: str, name: str) -> Response:
    _space(ctx, req, ns, name, write=True)
    raise BadRequest("localhub does not emulate dev mode")


def spaces_hardware(ctx: Context, req: Request) -> Response:
    return json_response([f.to_json() for f in FLAVORS.values()])


# ---------------------------------------------------------------- routes: control plane


def lh_health(ctx: Context, req: Request) -> Response:
    return json_response({"ok": True})


def lh_reset(ctx: Context, req: Request) -> Response:
    ctx.reset()
    return json_response({"ok": True})


def lh_billing(ctx: Context, req: Request) -> Response:
    """Every meter for the admin; a user's token sees the Spaces it can see and the Jobs
    of the namespaces it may read."""
    data = merge(ctx.meter.snapshot(), ctx.jobs.billing())
    if not req.admin:
        visible = {}
        for space_id, meter in data["spaces"].items():
            repo = ctx.store.find("space", space_id)
            if repo is not None and ctx.auth.can_see(req.caller, repo.private, "space", space_id):
                visible[space_id] = meter
        data["spaces"] = visible
        data["jobs"] = {
            job_id: meter
            for job_id, meter in data["jobs"].items()
            if ctx.auth.can_see(req.caller, True, "user", f"{meter['namespace']}/*")
        }
        data.pop("total", None)  # the whole hub's bill is the admin's business
    return json_response(data)


def lh_requests(ctx: Context, req: Request) -> Response:
    if req.method == "DELETE":
        ctx.requests.clear()
        return json_response({"ok": True})
    return json_response(list(ctx.requests))


def lh_faults(ctx: Context, req: Request) -> Response:
    if req.method == "DELETE":
        ctx.faults.clear()
    elif req.method == "POST":
        apply_faults(ctx, req.json())
    return json_response({"rules": ctx.faults.to_json()})


def apply_faults(ctx: Context, payload: Any) -> None:
    """Add fault rules and carry out Space actions (also used for LOCALHUB_FAULTS)."""
    rules, actions = parse_faults(payload)
    for action in actions:
        if "kill_job" in action or "job_start_error" in action:
            ctx.jobs.apply_fault(action)
        elif "kill_space" in action:
            ctx.spaces.kill(_find_space(ctx, action["kill_space"]))
        elif "app_outage" in action:
            spec = action["app_outage"]
            if not isinstance(spec, dict) or "repo" not in spec:
                raise BadRequest("app_outage needs {repo, seconds}")
            seconds = spec.get("seconds", 5)
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise BadRequest(f"app_outage: seconds must be a number >= 0, got {seconds!r}")
            ctx.spaces.outage(_find_space(ctx, spec["repo"]), float(seconds))
        else:
            spec = action["force_stage"]
            if not isinstance(spec, dict) or "repo" not in spec or "stage" not in spec:
                raise BadRequest("force_stage needs {repo, stage[, message, when]}")
            ctx.spaces.force_stage(
                _find_space(ctx, spec["repo"]),
                str(spec["stage"]),
                spec.get("message"),
                str(spec.get("when", "now")),
            )
    ctx.faults.add(rules)


def admit_to_app(ctx: Context, repo_id: str, headers: dict[str, str]) -> tuple[int, str] | None:
    """Whether a request may reach a Space's app (its gateway asks): a public Space is
    open; a private one needs a token that can read it, as ``Authorization`` or as
    gradio_client's ``x-hf-authorization``. ``(status, message)`` when refused."""
    repo = ctx.store.find("space", repo_id)
    if repo is None:
        return 404, f"Space {repo_id} does not exist"
    if not repo.private:
        return None
    header = headers.get("authorization") or headers.get("x-hf-authorization")
    try:
        caller = ctx.auth.identify(header)
    except HubError as exc:
        return exc.status, exc.message
    if caller.anonymous:
        return 401, f"Space {repo_id} is private: send a token that can read it"
    if not ctx.auth.can_see(caller, True, "space", repo_id):
        return 404, f"Space {repo_id} does not exist"  # as the Hub: no hint it is there
    return None


def _find_space(ctx: Context, repo_id: Any) -> Repo:
    repo = ctx.store.find("space", str(repo_id))
    if repo is None:
        raise RepoNotFound("space", str(repo_id))
    return repo


# ---------------------------------------------------------------- the table

_T = r"(?P<kind>models|datasets|spaces)"
_ID = r"(?P<ns>[^/]+)/(?P<name>[^/]+)"
_SP = r"/api/spaces/(?P<ns>[^/]+)/(?P<name>[^/]+)"
Route = tuple[tuple[str, ...], re.Pattern[str], Callable[..., Response]]
ROUTES: list[Route] = [
    (("GET",), re.compile(r"^/_localhub/health$"), lh_health),
    (("POST",), re.compile(r"^/_localhub/reset$"), lh_reset),
    (("GET",), re.compile(r"^/_localhub/billing$"), lh_billing),
    (("GET", "DELETE"), re.compile(r"^/_localhub/requests$"), lh_requests),
    (("GET", "POST", "DELETE"), re.compile(r"^/_localhub/faults$"), lh_faults),
    (("GET",), re.compile(r"^/api/whoami-v2$"), whoami),
    (("HEAD", "GET", "POST"), re.compile(r"^/api/telemetry(?:/.*)?$"), telemetry),
    (("POST",), re.compile(r"^/api/validate-yaml$"), validate_yaml),
    (("POST",), re.compile(r"^/api/repos/create$"), create_repo),
    (("DELETE",), re.compile(r"^/api/repos/delete$"), delete_repo),
    (("POST",), re.compile(r"^/api/repos/move$"), move_repo),
    (("GET",), re.compile(r"^/api/spaces/hardware$"), spaces_hardware),
    (("GET",), re.compile(rf"^/api/{_T}$"), list_repos),
    (("GET",), re.compile(rf"^/api/{_T}/{_ID}$"), repo_info),
    (("GET",), re.compile(rf"^/api/{_T}/{_ID}/revision/(?P<rev>[^/]+)$"), repo_info),
    (("PUT",), re.compile(rf"^/api/{_T}/{_ID}/settings$"), repo_settings),
    (("GET",), re.compile(rf"^/api/{_T}/{_ID}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"), tree),
    (("POST",), re.compile(rf"^/api/{_T}/{_ID}/paths-info/(?P<rev>[^/]+)$"), paths_info),
    (("GET",), re.compile(rf"^/api/{_T}/{_ID}/refs$"), refs),
    (("GET",), re.compile(rf"^/api/{_T}/{_ID}/commits/(?P<rev>[^/]+)$"), commits),
    (("POST",), re.compile(rf"^/api/{_T}/{_ID}/tag/(?P<rev>[^/]+)$"), create_tag),
    (("DELETE",), re.compile(rf"^/api/{_T}/{_ID}/tag/(?P<rev>[^/]+)$"), delete_tag),
    (("POST",), re.compile(rf"^/api/{_T}/{_ID}/branch/(?P<rev>[^/]+)$"), create_branch),
    (("DELETE",), re.compile(rf"^/api/{_T}/{_ID}/branch/(?P<rev>[^/]+)$"), delete_branch),
    (("POST",), re.compile(rf"^/api/{_T}/{_ID}/preupload/(?P<rev>[^/]+)$"), preupload),
    (("POST",), re.compile(rf"^/api/{_T}/{_ID}/commit/(?P<rev>[^/]+)$"), commit),
    (("GET",), re.compile(rf"^/api/{_T}/{_ID}/xet-(?:write|read)-token/.*$"), no_xet),
    (("POST",), re.compile(r"^/(?:(?:datasets|spaces)/)?[^/]+/[^/]+\.git/info/lfs/.*$"), no_xet),
    (("GET",), re.compile(rf"^{_SP}/runtime$"), space_runtime),
    (("POST",), re.compile(rf"^{_SP}/restart$"), space_restart),
    (("POST",), re.compile(rf"^{_SP}/pause$"), space_pause),
    (("POST",), re.compile(rf"^{_SP}/hardware$"), space_hardware),
    (("POST",), re.compile(rf"^{_SP}/sleeptime$"), space_sleeptime),
    (("POST",), re.compile(rf"^{_SP}/dev-mode$"), space_dev_mode),
    (("GET", "POST", "DELETE"), re.compile(rf"^{_SP}/(?P<kind>variables|secrets)$"), space_env),
    (("GET",), re.compile(rf"^{_SP}/logs/(?P<which>build|run)$"), space_logs),
    (
        ("GET", "HEAD"),
        re.compile(
            r"^/(?:(?P<prefix>datasets|spaces)/)?(?P<ns>[^/]+)/(?P<name>[^/]+)"
            r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"
        ),
        resolve,
    ),
]


CONTROL_PLANE = (lh_reset, lh_billing, lh_requests, lh_faults)  # health is not guarded


def route(method: str, path: str) -> tuple[Callable[..., Response], dict[str, str]]:
    """The handler for a raw path, with its percent-decoded parameters."""
    allowed = False
    for methods, pattern, handler in ROUTES:
        match = pattern.match(path)
        if match is None:
            continue
        if method not in methods:
            allowed = True
            continue
        params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
        if "prefix" in match.groupdict():
            params["prefix"] = match["prefix"]  # may be None: a model
        return handler, params
    if allowed:
        raise _MethodNotAllowed(f"{method} is not allowed on {path}")
    raise NotFound(f"localhub has no route for {method} {path}")


class _MethodNotAllowed(HubError):
    status = 405


# ---------------------------------------------------------------- the handler


def _who(
    auth: Auth, handler: Callable[..., Response], authorization: str | None
) -> tuple[Caller, bool]:
    """The caller and whether it holds the control plane; 401/403 where it may not call.

    The Hub's routes identify the token; the control plane wants the admin token, but
    for ``health`` (open) and a user's look at its own Spaces' meters (``billing``).
    """
    admin = auth.is_admin(authorization)
    control = handler in CONTROL_PLANE
    if control and admin:
        return Caller(None), True
    if control and handler is not lh_billing:
        auth.require_admin(authorization)  # raises: not the admin
    caller = auth.identify(authorization)
    if control:
        auth.writer(caller)  # billing: anonymous is 401 on a restricted server
    return caller, admin


class Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive, so every answer has a length or closes."""

    protocol_version = "HTTP/1.1"
    server_version = "localhub"
    ctx: Context  # set on the subclass the server builds

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle and the
        # client's delayed ACK add ~40 ms to every small answer.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log at /_localhub/requests replaces stderr lines."""

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        started = time.monotonic()
        request_id = uuid.uuid4().hex
        raw_path, _, raw_query = self.path.partition("?")
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        try:
            decision = self.ctx.faults.decide(self.command, raw_path)
            if decision.delay_s:
                time.sleep(decision.delay_s)
            if decision.status is not None:
                raise _Injected(decision.status)
            handler, params = route(self.command, raw_path)
            caller, admin = _who(self.ctx.auth, handler, self.headers.get("Authorization"))
            host = self.headers.get("Host")
            req = Request(
                method=self.command,
                path=raw_path,
                query=parse_qs(raw_query, keep_blank_values=True),
                headers=self.headers,
                body=body,
                caller=caller,
                base=f"http://{host}" if host else self.ctx.base_url(),
                admin=admin,
            )
            response = handler(self.ctx, req, **params)
        except HubError as exc:
            response = json_response(exc.body(), exc.status, exc.wire_headers())
        except Exception as exc:  # a bug must still answer, not hang the client
            traceback.print_exc()
            response = json_response({"error": f"localhub internal error: {exc!r}"}, 500)
        # Logged before the answer goes out: a client that reads the log next sees it.
        self.ctx.requests.append(
            {
                "method": self.command,
                "path": raw_path,
                "query": raw_query,
                "status": response.status,
                "ms": round((time.monotonic() - started) * 1000, 2),
            }
        )
        try:
            self._send(response, request_id)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, response: Response, request_id: str) -> None:
        self.send_response(response.status)
        headers = {"X-Request-Id": request_id, **response.headers}
        if response.stream is not None:
            headers["Connection"] = "close"
            self.close_connection = True
        else:
            headers.setdefault("Content-Length", str(len(response.body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.stream is not None:
            for chunk in response.stream:
                self.wfile.write(chunk)
                self.wfile.flush()
        elif response.body:
            self.wfile.write(response.body)


class _Injected(HubError):
    def __init__(self, status: int) -> None:
        super().__init__(f"localhub: injected fault ({status})")
        self.status = status
        if status == 429:
            self.headers["Retry-After"] = "0"


__all__ = ["ROUTES", "Context", "Handler", "Request", "Response", "apply_faults", "route"]
