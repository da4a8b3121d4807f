"""The key check around every route: who is asking, from a key, a Hub token, or nobody.

    >>> "/healthz" in OPEN_PATHS
    True

Without keys (the single-user default on loopback) every caller is trusted: `LOCAL` may do
everything and a request belongs to the user it declares. With keys (`keys.py`) or in Hub
mode (`hub/`), every route but `OPEN_PATHS` needs `Authorization: Bearer KEY` (or the Hub's
`token …`) — what OpenAI clients send as `api_key` — and the user comes from it, never from
the body. The roles and what each may do: `identity.py`.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from fastapi import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..protocol import ErrorCode, error_body
from .api_error import ApiError
from .identity import LOCAL, Identity, Role
from .keys import MIN_KEY_LENGTH, Keys

if TYPE_CHECKING:
    from .hub import HubIdentities

__all__ = [
    "LOCAL",
    "MIN_KEY_LENGTH",
    "OPEN_PATHS",
    "AuthMiddleware",
    "Identity",
    "Keys",
    "Role",
    "identity_of",
]

#: Health, metrics and the API docs answer without a key (probes and scrapers have none),
#: and so do the teacher page's static files (a browser cannot send a key to open a page;
#: the page asks for one, and every API call it makes sends it).
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
    | {"/teacher", "/teacher/teacher.js", "/teacher/teacher.css"}
)


class AuthMiddleware:
    """Pure ASGI: finds who is asking before any route runs, and refuses unknown keys (401).

    Being middleware, not a per-route dependency, a route added later is protected by default.
    The identity is left in `scope["state"]`, where `identity_of(request)` finds it.
    """

    def __init__(self, app: ASGIApp, keys: Keys | HubIdentities) -> None:
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
                identity = self.keys.identify(header)
                # HubIdentities asks the Hub, so its identify is a coroutine; Keys' is not.
                state["identity"] = await identity if inspect.isawaitable(identity) else identity
            except ApiError as exc:
                response = JSONResponse(
                    error_body(exc.code, exc.detail),
                    status_code=exc.status,
                    headers={"WWW-Authenticate": 'Bearer realm="tlc"'}
                    | ({"Retry-After": str(exc.retry_after)} if exc.retry_after else {}),
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
