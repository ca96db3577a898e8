"""Files: tree, paths-info, commit history, the upload (validate-yaml, preupload, the
NDJSON commit), and resolve (the download URL, with ``Range``)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qs, quote

from spacetrain.localhub.card import FrontMatterError, front_matter
from spacetrain.localhub.context import Context, repo_url
from spacetrain.localhub.errors import BadRequest, EntryNotFound, Unprocessable
from spacetrain.localhub.store import Entry, Operation
from spacetrain.localhub.wire import Request, Response, byte_range, json_response, paged

TREE_PAGE = 1000
TREE_PAGE_EXPANDED = 50
COMMITS_PAGE = 50


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {"type": entry.kind, "oid": entry.oid, "size": entry.size, "path": entry.path}


def tree(
    ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str, path: str = ""
) -> Response:
    repo = ctx.repo(req, kind[:-1], f"{ns}/{name}")
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
            last = repo.last_commits(sha, [e.path for e in chunk])
            for row in rows:
                row["lastCommit"] = last.get(row["path"])
        return rows

    return paged(req, entries, TREE_PAGE_EXPANDED if expand else TREE_PAGE, render)


def paths_info(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo = ctx.repo(req, kind[:-1], f"{ns}/{name}")
    sha = repo.resolve(rev)
    if "json" in req.headers.get("Content-Type", ""):
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
        last = repo.last_commits(sha, [e.path for e in entries])
        for row in rows:
            row["lastCommit"] = last.get(row["path"])
    return json_response(rows)


def commits(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo = ctx.repo(req, kind[:-1], f"{ns}/{name}")
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

    return paged(req, history, COMMITS_PAGE, render)


def validate_yaml(ctx: Context, req: Request) -> Response:
    """huggingface_hub asks before committing a README.md: does its front matter parse?"""
    content = req.json_object().get("content")
    if not isinstance(content, str):
        return json_response({"errors": [{"message": "content must be a string"}]}, 400)
    try:
        front_matter(content)
    except FrontMatterError as exc:
        return json_response({"errors": [{"message": str(exc)}], "warnings": []}, 400)
    return json_response({"errors": [], "warnings": []})


def preupload(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo, _ = ctx.writable(req, kind[:-1], f"{ns}/{name}")
    sha = repo.resolve(repo.branch_of(rev))
    body = req.json_object()
    files = repo.preupload(sha, body.get("files"), body.get("gitIgnore"))
    return json_response({"files": files, "commitOid": sha})


def _parse_commit(body: bytes) -> tuple[dict[str, Any], list[Operation]]:
    """The NDJSON commit body: a ``header`` line and one line per operation."""
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
    repo, user = ctx.writable(req, kind[:-1], f"{ns}/{name}")
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
    ctx.spaces.on_commit(repo, branch, sha)
    return json_response(
        {
            "success": True,
            "commitOid": sha,
            "commitUrl": f"{repo_url(req, repo.repo_type, repo.repo_id)}/commit/{sha}",
            "hookOutput": "",
        }
    )


def resolve(
    ctx: Context, req: Request, ns: str, name: str, rev: str, path: str, prefix: str | None = None
) -> Response:
    repo_type = {"datasets": "dataset", "spaces": "space", None: "model"}[prefix]
    repo = ctx.repo(req, repo_type, f"{ns}/{name}")
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
        return byte_range(wanted, data, headers)
    return Response(200, data, headers)


__all__ = ["commit", "commits", "paths_info", "preupload", "resolve", "tree", "validate_yaml"]
