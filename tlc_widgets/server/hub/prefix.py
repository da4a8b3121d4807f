"""`PrefixMiddleware`: answer under the Hub's `/services/NAME/` as well as at `/`.

    >>> route_path("/services/tlc/", "/services/tlc/api/queue")
    '/api/queue'
    >>> route_path("/services/tlc/", "/services/tlc"), route_path("/services/tlc/", "/healthz")
    ('/', None)

The Hub's proxy forwards `/services/NAME/…` with the prefix still on the path. The middleware
takes it off and records it as the ASGI `root_path`, so every route, the open paths of the key
check and the API docs (`/services/NAME/docs`) work the same behind the proxy and on loopback.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["PrefixMiddleware", "route_path"]


def route_path(prefix: str, path: str) -> str | None:
    """`path` without `prefix`, or None when `path` is not under it."""
    root = "/" + prefix.strip("/")
    if path == root or path.startswith(root + "/"):
        return path[len(root) :] or "/"
    return None


class PrefixMiddleware:
    """Pure ASGI, outermost: strips `prefix` so the app below sees its own paths."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix
        self.root = "/" + prefix.strip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            rest = route_path(self.prefix, scope["path"])
            if rest is not None:
                scope = dict(scope)
                scope["path"] = rest
                scope["raw_path"] = rest.encode()
                scope["root_path"] = scope.get("root_path", "") + self.root
        await self.app(scope, receive, send)
