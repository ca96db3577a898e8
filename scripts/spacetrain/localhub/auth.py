"""Who is calling: tokens in, a user name out, and what that user may see and do.

``tokens=None`` (the default) accepts any token and anonymous calls, everyone acting
as ``localhub-user``; anonymous callers still cannot see private repos. A list or a
``{token: user}`` map restricts the server: an unknown token gets the Hub's 401
("Invalid credentials in Authorization header", which huggingface_hub reports as a bad
token), and writing needs an accepted one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from spacetrain.localhub.errors import INVALID_CREDENTIALS, Unauthorized

DEFAULT_USER = "localhub-user"


@dataclass(frozen=True)
class Caller:
    """The identity behind one request; ``user`` is None for an anonymous call."""

    user: str | None
    token: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.user is None


class Auth:
    """Token checking for one server."""

    def __init__(self, tokens: Iterable[str] | Mapping[str, str] | None = None) -> None:
        if tokens is None:
            self._tokens: dict[str, str] | None = None
        elif isinstance(tokens, Mapping):
            self._tokens = {str(t): str(u) for t, u in tokens.items()}
        else:
            self._tokens = {str(t): DEFAULT_USER for t in tokens}

    @property
    def open(self) -> bool:
        """Whether any token (and no token) is accepted."""
        return self._tokens is None

    def identify(self, authorization: str | None) -> Caller:
        """The caller for an ``Authorization`` header; 401 for a token not accepted."""
        token = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthorized(INVALID_CREDENTIALS)
            token = value.strip()
        if token is None:
            return Caller(None)
        if self._tokens is None:
            return Caller(DEFAULT_USER, token)
        user = self._tokens.get(token)
        if user is None:
            raise Unauthorized(INVALID_CREDENTIALS)
        return Caller(user, token)

    def writer(self, caller: Caller) -> str:
        """The user a write is made as; restricted servers refuse anonymous writes."""
        if caller.user is not None:
            return caller.user
        if self._tokens is None:
            return DEFAULT_USER
        raise Unauthorized("You must be authenticated to do this: pass a token")

    @staticmethod
    def can_see(caller: Caller, private: bool) -> bool:
        return not private or caller.user is not None


__all__ = ["DEFAULT_USER", "Auth", "Caller"]
