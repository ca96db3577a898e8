"""Repos: create, delete, info (``model_info`` / ``dataset_info`` / ``space_info``),
refs, tags and branches."""

from __future__ import annotations

from typing import Any

from spacetrain.localhub.billing import check_flavor
from spacetrain.localhub.context import Context, repo_url
from spacetrain.localhub.errors import BadRequest, Conflict
from spacetrain.localhub.spaces import new_space_settings
from spacetrain.localhub.store import REPO_TYPES, Repo
from spacetrain.localhub.wire import Request, Response, json_response


def _named(ctx: Context, req: Request, body: dict[str, Any]) -> tuple[str, str]:
    """``(repo_type, repo_id)`` from a create/delete body (the namespace defaults to
    the caller's)."""
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest("name is required")
    repo_type = body.get("type") or "model"
    if repo_type not in REPO_TYPES:
        raise BadRequest(f"Invalid repo type {repo_type!r}")
    namespace = body.get("organization") or ctx.auth.writer(req.caller)
    return repo_type, f"{namespace}/{name}"


def create_repo(ctx: Context, req: Request) -> Response:
    body = req.json_object()
    user = ctx.auth.writer(req.caller)
    repo_type, repo_id = _named(ctx, req, body)
    ctx.auth.check_write(req.caller, repo_type, repo_id)  # 403 outside the token's rights
    private = body.get("visibility", "private" if body.get("private") else "public") != "public"
    url = repo_url(req, repo_type, repo_id)
    if ctx.store.find(repo_type, repo_id) is not None:
        # 409 carries the url: huggingface_hub's exist_ok=True reads it.
        raise Conflict(f"You already created this {repo_type} repo", extra={"url": url})
    if body.get("hardware") is not None:
        check_flavor(body["hardware"])
    space = repo_type == "space"
    settings = (
        new_space_settings(
            body.get("hardware"),
            body.get("sleepTimeSeconds"),
            body.get("secrets"),
            body.get("variables"),
        )
        if space
        else {}
    )
    try:
        repo = ctx.store.create(
            repo_type,
            repo_id,
            author=user,
            private=private,
            sdk=body.get("sdk") if space else None,
            meta={"space": settings} if space else None,
        )
    except Conflict as exc:  # created by a concurrent request, or differing only in case
        raise Conflict(exc.message, extra={"url": url}) from None
    if space:
        ctx.spaces.resume(repo)
    return json_response({"url": url, "name": repo_id, "id": repo.meta.get("_id")})


def delete_repo(ctx: Context, req: Request) -> Response:
    repo_type, repo_id = _named(ctx, req, req.json_object())
    ctx.writable(req, repo_type, repo_id)
    if repo_type == "space":
        ctx.spaces.forget(repo_id)
    ctx.store.delete(repo_type, repo_id)
    return Response(200)


def repo_info(
    ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str | None = None
) -> Response:
    repo = ctx.repo(req, kind[:-1], f"{ns}/{name}")
    return json_response(repo_json(ctx, req, repo, repo.resolve(rev)))


def repo_json(ctx: Context, req: Request, repo: Repo, sha: str) -> dict[str, Any]:
    """``model_info`` / ``dataset_info`` / ``space_info`` at one commit."""
    commit = repo.commit(sha)
    assert commit is not None
    snap = repo.snapshot(sha)
    card = repo.card(sha)
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
        data["sdk"] = card.get("sdk") or repo.meta.get("sdk")
        data["subdomain"] = repo.repo_id.replace("/", "-").lower()
        data["host"] = ctx.spaces.host(repo)
        data["runtime"] = ctx.spaces.runtime(repo)
        if data["sdk"] and data["sdk"] not in tags:
            tags.append(data["sdk"])
    expand = req.query.get("expand")
    if expand:
        keep = {"_id", "id", *expand}
        data = {k: v for k, v in data.items() if k in keep}
    return data


def refs(ctx: Context, req: Request, kind: str, ns: str, name: str) -> Response:
    repo = ctx.repo(req, kind[:-1], f"{ns}/{name}")
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


def create_tag(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo, _ = ctx.writable(req, kind[:-1], f"{ns}/{name}")
    body = req.json_object()
    tag = body.get("tag")
    if not isinstance(tag, str) or not tag:
        raise BadRequest("tag is required")
    message = body.get("message")
    repo.create_tag(tag, rev, message if isinstance(message, str) else None)
    return Response(200)


def create_branch(ctx: Context, req: Request, kind: str, ns: str, name: str, rev: str) -> Response:
    repo, _ = ctx.writable(req, kind[:-1], f"{ns}/{name}")
    body = req.json_object() if req.body else {}
    repo.create_branch(rev, body.get("startingPoint"), empty=bool(body.get("emptyBranch")))
    return Response(200)


__all__ = ["create_branch", "create_repo", "create_tag", "delete_repo", "refs", "repo_info"]
