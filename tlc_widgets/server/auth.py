"""Who is asking: optional API keys, three roles, and the middleware that checks them.

    >>> keys = Keys.parse("sk-ada-1:ada:student,sk-root-1:root:admin")
    >>> keys.identify("Bearer sk-ada-1")
    Identity(user='ada', role=<Role.STUDENT: 'student'>)

Without keys (the single-user default on loopback) every caller is trusted: `LOCAL` may do
everything and a request belongs to the user it declares, as before keys existed. With keys
(`TLC_KEYS`, `TLC_KEYS_FILE`), every route but `OPEN_PATHS` needs `Authorization: Bearer KEY`
— exactly what OpenAI clients send as `api_key` — and the user comes from the key, never
from the body. What each role may do:

                                  student   teacher   admin
    submit, read, cancel own         ✓         ✓        ✓
    /api/me (budget, class, notice)  ✓         ✓        ✓
    priority > 0                     403       ✓        ✓
    another user's request/history   404       404      ✓
    /api/class/* (the class: live,   403       ✓        ✓
      students' history and cancel,
      pause, budgets, class prompt,
      export)
    /api/admin/* (pause, drain …)    403       403      ✓
    limited by pause, budget and     ✓         —        —
      the class prompt

Another user's request answers 404, not 403, so a probe cannot tell which ids exist; a
teacher reads and cancels students' requests through `/api/class/*` (server/routes/teacher.py),
and an admin also runs the server (pause, drain, upstreams).
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from ..protocol import ErrorCode, error_body
from .api_error import ApiError

__all__ = ["LOCAL", "OPEN_PATHS", "AuthMiddleware", "Identity", "Keys", "Role", "identity_of"]

#: Health, metrics and the API docs answer without a key (probes and scrapers have none),
#: and so do the teacher page's static files (a browser cannot send a key to open a page;
#: the page asks for one, and every API call it makes sends it).
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
    | {"/teacher", "/teacher/teacher.js", "/teacher/teacher.css"}
)


class Role(StrEnum):
    STUDENT = "student"  #: own requests and history only
    TEACHER = "teacher"  #: steers the class: reads and cancels students' requests (/api/class)
    ADMIN = "admin"  #: everything: every user's requests, the class, pause, resume, drain


@dataclass(frozen=True, slots=True)
class Identity:
    user: str | None  #: None: no keys are configured, so the request's declared user counts
    role: Role

    def owner(self, declared: str | None) -> str:
        """Whose a new request is: the key's user, or (without keys) the one declared."""
        return self.user if self.user is not None else (declared or "anonymous")

    def may_see(self, owner: str) -> bool:
        return self.role is Role.ADMIN or self.user == owner

    @property
    def may_prioritise(self) -> bool:
        return self.role is not Role.STUDENT

    @property
    def may_steer(self) -> bool:
        """A teacher or an admin: may see the class and steer it (`/api/class/*`)."""
        return self.role is not Role.STUDENT

    def require_teacher(self) -> None:
        if not self.may_steer:
            raise ApiError(ErrorCode.FORBIDDEN, "Only a teacher or an admin may do this.")

    def require_admin(self) -> None:
        if self.role is not Role.ADMIN:
            raise ApiError(ErrorCode.FORBIDDEN, "Only an admin may do this.")


#: Every caller when no keys are configured: one trusted user on their own machine.
LOCAL = Identity(user=None, role=Role.ADMIN)


def _digest(key: str) -> bytes:
    # Keys are looked up by their SHA-256, so the lookup's timing reveals nothing about them.
    return hashlib.sha256(key.encode()).digest()


class Keys:
    """The configured keys; empty (falsy) when there are none."""

    def __init__(self, identities: dict[str, Identity] | None = None) -> None:
        self._by_digest = {_digest(k): i for k, i in (identities or {}).items()}

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def __len__(self) -> int:
        return len(self._by_digest)

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        """The keys of `keys_file`, then of `keys` (a key in both: `keys` wins)."""
        identities: dict[str, Identity] = {}
        if settings.keys_file is not None:
            identities.update(_read_toml(settings.keys_file))
        if settings.keys is not None:
            identities.update(_split(settings.keys.get_secret_value()))
        return cls(identities)

    @classmethod
    def parse(cls, text: str) -> Keys:
        return cls(_split(text))

    def identify(self, authorization: str | None) -> Identity:
        """The identity an `Authorization` header proves, or `ApiError(unauthorized)`."""
        if not authorization:
            raise ApiError(
                ErrorCode.UNAUTHORIZED,
                "Send your key as 'Authorization: Bearer <key>' "
                "(QueueClient reads it from TLC_API_KEY; OpenAI clients send api_key).",
            )
        scheme, _, key = authorization.strip().partition(" ")
        identity = self._by_digest.get(_digest(key.strip())) if scheme.lower() == "bearer" else None
        if identity is None:
            raise ApiError(ErrorCode.UNAUTHORIZED, "That key is not known to this server.")
        return identity


def _identity(user: Any, role: Any, where: str) -> Identity:
    if not isinstance(user, str) or not user.strip() or len(user) > 64:
        raise ValueError(f"{where}: user must be a name of 1 to 64 characters, not {user!r}")
    try:
        return Identity(user=user.strip(), role=Role(role))
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise ValueError(f"{where}: role must be one of {roles}, not {role!r}") from None


def _split(text: str) -> dict[str, Identity]:
    """`key:user:role,…` (a key may itself hold colons: the last two fields are user, role)."""
    identities = {}
    for n, item in enumerate((part.strip() for part in text.split(",")), start=1):
        if not item:
            continue
        fields = item.rsplit(":", 2)
        if len(fields) != 3 or not fields[0]:
            raise ValueError(f"TLC_KEYS entry {n}: write it as key:user:role")
        identities[fields[0]] = _identity(fields[1], fields[2], f"TLC_KEYS entry {n}")
    return identities


def _read_toml(path: Path) -> dict[str, Identity]:
    with path.open("rb") as f:
        tables = tomllib.load(f).get("keys", {})
    identities = {}
    for key, table in tables.items():
        where = f'{path} [keys."{key[:4]}…"]'
        if not isinstance(table, dict):
            raise ValueError(f"{where}: expected a table with user and role")
        # A key without a role gets the least one: forgetting a line must not grant more.
        identities[key] = _identity(table.get("user"), table.get("role", "student"), where)
    return identities


class AuthMiddleware:
    """Pure ASGI: finds who is asking before any route runs, and refuses unknown keys (401).

    Being middleware, not a per-route dependency, a route added later is protected by default.
    The identity is left in `scope["state"]`, where `identity_of(request)` finds it.
    """

    def __init__(self, app: ASGIApp, keys: Keys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if not self.keys:
            state["identity"] = LOCAL
        elif scope["path"] not in OPEN_PATHS:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            try:
                state["identity"] = self.keys.identify(header)
            except ApiError as exc:
                response = JSONResponse(
                    error_body(exc.code, exc.detail),
                    status_code=exc.status,
                    headers={"WWW-Authenticate": 'Bearer realm="tlc"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def identity_of(request: Request) -> Identity:
    """Who sent `request`. Fails closed: no identity found means no access."""
    identity = request.scope.get("state", {}).get("identity")
    if not isinstance(identity, Identity):
        raise ApiError(ErrorCode.UNAUTHORIZED)
    return identity
