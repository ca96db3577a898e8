"""Who is calling: tokens in, a user and a role out, and what they may see and do.

``tokens=None`` (the default) accepts any token and anonymous calls, everyone acting
as ``localhub-user`` with write rights everywhere; anonymous callers still cannot see
private repos. A list or a ``{token: user | Token}`` map restricts the server as the
Hub is restricted, because the Space's own self-check and the pipeline's refusals
depend on it:

- an unknown token gets the Hub's 401 ("Invalid credentials in Authorization header");
- a token belongs to one user; a private repo is visible to its owner only (others get
  the Hub's 404, never a hint that it exists);
- a ``read`` token reads, never writes (403); a ``write`` token writes its user's
  namespace only (403 elsewhere);
- a ``fineGrained`` token writes (and reads privately) only what its scopes name: a
  repo (``model/alice/out``) or a whole user namespace (``user/alice``); ``whoami-v2``
  lists those scopes as the Hub does, so ``space/train.py``'s ``write_access`` reads
  the same answer it reads on huggingface.co.

The control plane (``/_localhub/*``) of a restricted server needs ``admin_token``:
none given means no one may reset or inject faults over HTTP (the Python API still
can). ``/_localhub/health`` stays open, and ``GET /_localhub/billing`` shows an
accepted user token the meters of the Spaces it can see (``spacetrain space status``
reads them with the pipeline's token). Organizations are not modelled.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from spacetrain.inputs import sendable_token
from spacetrain.localhub.errors import INVALID_CREDENTIALS, Forbidden, HubError, Unauthorized

DEFAULT_USER = "localhub-user"
ROLES = ("read", "write", "fineGrained")
READ, WRITE = "repo.content.read", "repo.write"
ENTITIES = ("model", "dataset", "space", "user")
# Who may call a route (the URL table's last column; see Auth.guard).
HUB, ADMIN, ADMIN_OR_USER = "hub", "admin", "admin-or-user"


def user_id(name: str) -> str:
    """A user's stable 24-hex id (``whoami-v2``'s ``id``, a Job's ``owner.id``)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"localhub:{name}").hex[:24]


@dataclass(frozen=True)
class Scope:
    """One entry of a fine-grained token: an entity and what the token may do on it."""

    entity: str  # model | dataset | space (one repo) or user (a whole namespace)
    name: str  # repo id, or user name
    permissions: tuple[str, ...] = (READ, WRITE)

    def covers(self, repo_type: str, repo_id: str) -> bool:
        if self.entity == "user":
            return repo_id.split("/", 1)[0] == self.name
        return self.entity == repo_type and self.name == repo_id


@dataclass(frozen=True)
class Token:
    """What a token is: whose, which role, and (fine-grained) which scopes."""

    user: str
    role: str = "write"
    scopes: tuple[Scope, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"token role must be one of {', '.join(ROLES)}, not {self.role!r}")

    def allows(self, permission: str, repo_type: str, repo_id: str) -> bool:
        """Whether this token's own rights (not visibility) allow ``permission`` there."""
        if self.role == "fineGrained":
            return any(
                s.covers(repo_type, repo_id) and permission in s.permissions for s in self.scopes
            )
        owned = repo_id.split("/", 1)[0] == self.user
        return owned and (permission == READ or self.role == "write")


def parse_token(spec: str) -> tuple[str, Token]:
    """``TOKEN[:USER[:ROLE]]`` from the command line or ``LOCALHUB_TOKENS``.

    ROLE is ``read``, ``write`` (default) or ``fine=ENTITY+ENTITY...`` where ENTITY is
    ``model/NS/NAME``, ``dataset/NS/NAME``, ``space/NS/NAME`` or ``user/NAME``, readable
    and writable, or only readable with an ``@read`` suffix; listed in that order.
    Raises ValueError for a malformed spec (its message never repeats the token).
    """
    token, _, rest = spec.strip().partition(":")
    user, _, role = rest.partition(":")
    if not token:
        raise ValueError("empty token")
    if not sendable_token(spec.strip()):
        raise ValueError(  # such a token could never be sent in a header
            "whitespace, a control or a non-ASCII character; give the token alone"
        )
    user = user or DEFAULT_USER
    if not role.startswith("fine="):
        return token, Token(user, role or "write")
    scopes = []
    for item in role[len("fine=") :].split("+"):
        target, _, access = item.partition("@")
        entity, _, name = target.partition("/")
        if (
            entity not in ENTITIES
            or not name
            or (entity == "user") == ("/" in name)
            or access not in ("", "read")
        ):
            raise ValueError(
                f"bad fine-grained scope {item!r}: use model|dataset|space/NS/NAME or "
                "user/NAME, with @read for a read-only scope"
            )
        scopes.append(Scope(entity, name, (READ,) if access else (READ, WRITE)))
    return token, Token(user, "fineGrained", tuple(scopes))


@dataclass(frozen=True)
class Caller:
    """The identity behind one request; ``user`` is None for an anonymous call."""

    user: str | None
    token: str | None = None
    info: Token | None = None  # None on an open server: every right

    @property
    def anonymous(self) -> bool:
        return self.user is None


class Auth:
    """Token checking and rights for one server."""

    def __init__(
        self,
        tokens: Iterable[str] | Mapping[str, str | Token] | None = None,
        *,
        admin_token: str | None = None,
    ) -> None:
        if tokens is None:
            self._tokens: dict[str, Token] | None = None
        elif isinstance(tokens, Mapping):
            self._tokens = {
                str(t): (u if isinstance(u, Token) else Token(str(u))) for t, u in tokens.items()
            }
        else:
            self._tokens = {str(t): Token(DEFAULT_USER) for t in tokens}
        self._admin = admin_token or None

    @property
    def open(self) -> bool:
        """Whether any token (and no token) is accepted."""
        return self._tokens is None

    @staticmethod
    def _bearer(authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized(INVALID_CREDENTIALS)
        return value.strip()

    def identify(self, authorization: str | None) -> Caller:
        """The caller for an ``Authorization`` header; 401 for a token not accepted."""
        token = self._bearer(authorization)
        if token is None:
            return Caller(None)
        if self._tokens is None:
            return Caller(DEFAULT_USER, token)
        info = self._tokens.get(token)
        if info is None:
            raise Unauthorized(INVALID_CREDENTIALS)
        return Caller(info.user, token, info)

    def is_admin(self, authorization: str | None) -> bool:
        """Whether the caller holds the control plane (anyone, on an open server)."""
        if self._tokens is None:
            return True
        token = self._bearer(authorization)
        return bool(token and self._admin) and hmac.compare_digest(
            str(token).encode(), str(self._admin).encode()
        )

    def require_admin(self, authorization: str | None) -> None:
        """The control plane: open on an open server, else only for ``admin_token``."""
        if self.is_admin(authorization):
            return
        if self._bearer(authorization) is None:
            raise Unauthorized("the localhub control plane needs the admin token")
        raise Forbidden("the localhub control plane needs the admin token (--admin-token)")

    def writer(self, caller: Caller) -> str:
        """The user a write is made as; restricted servers refuse anonymous writes."""
        if caller.user is not None:
            return caller.user
        if self._tokens is None:
            return DEFAULT_USER
        raise Unauthorized("You must be authenticated to do this: pass a token")

    def can_see(self, caller: Caller, private: bool, repo_type: str, repo_id: str) -> bool:
        """Whether ``caller`` may know the repo exists (public, or private and theirs)."""
        if not private:
            return True
        if caller.user is None:
            return False
        if caller.info is None:  # open server
            return True
        return caller.info.allows(READ, repo_type, repo_id) or caller.info.allows(
            WRITE, repo_type, repo_id
        )

    def check_write(self, caller: Caller, repo_type: str, repo_id: str) -> str:
        """The user a write to ``repo_id`` is made as; 401 anonymous, 403 not allowed."""
        user = self.writer(caller)
        info = caller.info
        if info is None or info.allows(WRITE, repo_type, repo_id):
            return user
        if info.role == "read":
            raise Forbidden(
                "You don't have write access with a read token: use a token with the write role"
            )
        if info.role == "fineGrained":
            raise Forbidden(
                f"This fine-grained token has no {WRITE} permission on {repo_type} {repo_id}"
            )
        raise Forbidden(
            f"You don't have the rights to write to {repo_type} {repo_id}: "
            f"{repo_id.split('/', 1)[0]!r} is not your namespace ({user})"
        )

    def check_namespace(self, caller: Caller, namespace: str, *, write: bool) -> str:
        """The user acting on ``namespace``'s Jobs (the Jobs API: run and cancel write,
        inspect, logs and list read); raises where the Hub refuses.

        Every Jobs call needs a token, even on an open server (401 anonymous: the Hub
        has no anonymous Jobs). A token outside the namespace gets 403, a read token
        403 for a write. A fine-grained token needs a ``user/<namespace>`` scope: a
        scope on one repo does not reach the namespace's Jobs.
        """
        if caller.user is None:
            raise Unauthorized("You must be authenticated to use Jobs: pass a token")
        info = caller.info
        permission = WRITE if write else READ
        if info is None or info.allows(permission, "user", f"{namespace}/*"):
            return caller.user
        if write and info.role == "read":
            raise Forbidden(
                "You don't have write access with a read token: running or cancelling a Job "
                "needs a token with the write role"
            )
        if info.role == "fineGrained":
            raise Forbidden(
                f"This fine-grained token has no {permission} permission on the namespace "
                f"{namespace!r} (its Jobs need a user/{namespace} scope)"
            )
        raise Forbidden(
            f"You don't have the rights to use the Jobs of {namespace!r}: "
            f"it is not your namespace ({caller.user})"
        )

    def whoami(self, caller: Caller, now: str) -> dict[str, object]:
        """``whoami-v2``: the user behind the token; 401 for an anonymous call."""
        if caller.anonymous:
            raise Unauthorized(INVALID_CREDENTIALS)
        name = caller.user
        return {
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
            "auth": self.whoami_auth(caller, now),
        }

    def guard(self, guard: str, authorization: str | None) -> tuple[Caller, bool]:
        """The caller of a route and whether it holds the control plane; 401/403 where
        it may not call.

        ``guard`` is the URL table's: ``HUB`` routes identify the token (a token not
        accepted is 401, anonymous passes); ``ADMIN`` routes want the admin token;
        ``ADMIN_OR_USER`` (the billing meter) also takes an accepted user token (anonymous
        is 401 on a restricted server).
        """
        admin = self.is_admin(authorization)
        if guard != HUB and admin:
            return Caller(None), True
        if guard == ADMIN:
            self.require_admin(authorization)  # raises: not the admin
        caller = self.identify(authorization)
        if guard == ADMIN_OR_USER:
            self.writer(caller)
        return caller, admin

    def admit(
        self, private: bool, repo_id: str, headers: Mapping[str, str]
    ) -> tuple[int, str] | None:
        """Whether a request may reach a Space's app (its gateway asks, with lower-case
        header names): a public Space is open; a private one needs a token that can read
        it, as ``Authorization`` or as gradio_client's ``x-hf-authorization``.
        ``(status, message)`` when refused; another user's token gets 404, as the Hub:
        no hint the Space is there."""
        if not private:
            return None
        try:
            header = headers.get("authorization") or headers.get("x-hf-authorization")
            caller = self.identify(header)
        except HubError as exc:
            return exc.status, exc.message
        if caller.anonymous:
            return 401, f"Space {repo_id} is private: send a token that can read it"
        if not self.can_see(caller, True, "space", repo_id):
            return 404, f"Space {repo_id} does not exist"
        return None

    @staticmethod
    def whoami_auth(caller: Caller, created_at: str) -> dict[str, object]:
        """``whoami-v2``'s ``auth`` object for this caller's token, in the Hub's shape."""
        info = caller.info or Token(caller.user or DEFAULT_USER)
        token: dict[str, object] = {
            "displayName": "localhub",
            "role": info.role,
            "createdAt": created_at,
        }
        if info.role == "fineGrained":
            token["fineGrained"] = {
                "canReadGatedRepos": False,
                "global": [],
                "scoped": [
                    {
                        "entity": {"_id": f"{s.entity}:{s.name}", "type": s.entity, "name": s.name},
                        "permissions": list(s.permissions),
                    }
                    for s in info.scopes
                ],
            }
        return {"type": "access_token", "accessToken": token}


__all__ = [
    "ADMIN",
    "ADMIN_OR_USER",
    "DEFAULT_USER",
    "HUB",
    "ROLES",
    "Auth",
    "Caller",
    "Scope",
    "Token",
    "parse_token",
    "user_id",
]
