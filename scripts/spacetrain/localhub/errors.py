"""The Hub's error protocol, so the real clients raise their own exception classes.

huggingface_hub's ``hf_raise_for_status`` looks at the ``X-Error-Code`` header first
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), then ``X-Error-Message``,
then the status. Every domain error here knows its status, its code and its wire body,
so no handler writes error JSON by hand: ``dispatch.py`` answers them (moto's
``JsonRESTError`` idea).
"""

from __future__ import annotations

from typing import Any

# The message the Hub sends with a 401 for a token it does not know. huggingface_hub
# treats a 401 on a repo URL as "repository not found" *unless* it carries this text.
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


class HubError(Exception):
    """An error the Hub answers with: HTTP status, optional X-Error-Code, a message.

    Attributes:
        status: HTTP status code.
        code: value of the ``X-Error-Code`` header, or None.
        message: human text, sent as ``X-Error-Message`` and as ``{"error": ...}``.
        extra: more keys for the JSON body (e.g. ``url`` on a 409 from create).
        headers: more response headers (e.g. ``X-Repo-Commit`` on a missing file).
    """

    status = 500
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body the Hub sends with this error."""
        return {"error": self.message, **self.extra}

    def wire_headers(self) -> dict[str, str]:
        """Headers that carry the error to the client (ASCII only, one line)."""
        headers = dict(self.headers)
        text = "".join(c if " " <= c <= "~" else "?" for c in " ".join(self.message.split()))
        headers["X-Error-Message"] = text[:500]
        if self.code:
            headers["X-Error-Code"] = self.code
        return headers


class BadRequest(HubError):
    """400: a malformed request; huggingface_hub raises ``BadRequestError``."""

    status = 400


class Unauthorized(HubError):
    """401: a token the server does not accept, or none where one is needed."""

    status = 401


class Forbidden(HubError):
    """403: the token is known but may not do this."""

    status = 403


class NotFound(HubError):
    """404 without a Hub error code (an unknown route)."""

    status = 404


class RepoNotFound(NotFound):
    """404 ``RepoNotFound``: no such repo, or a private one the caller may not see."""

    code = "RepoNotFound"

    def __init__(self, repo_type: str, repo_id: str) -> None:
        super().__init__(f"Repository not found: {repo_type} {repo_id}")


class RevisionNotFound(NotFound):
    """404 ``RevisionNotFound``: the branch, tag or commit does not exist."""

    code = "RevisionNotFound"

    def __init__(self, revision: str) -> None:
        super().__init__(f"Invalid rev id: {revision}")


class EntryNotFound(NotFound):
    """404 ``EntryNotFound``: no such file or folder at that revision."""

    code = "EntryNotFound"


class Conflict(HubError):
    """409: the thing already exists (repo, tag, branch)."""

    status = 409


class PreconditionFailed(HubError):
    """412: ``parentCommit`` is not the head of the branch any more."""

    status = 412


class Unprocessable(HubError):
    """422: well-formed but not something localhub can do (an LFS pointer, say)."""

    status = 422


__all__ = [
    "INVALID_CREDENTIALS",
    "BadRequest",
    "Conflict",
    "EntryNotFound",
    "Forbidden",
    "HubError",
    "NotFound",
    "PreconditionFailed",
    "RepoNotFound",
    "RevisionNotFound",
    "Unauthorized",
    "Unprocessable",
]
