"""A default that no web page can drive: the server's own `Host` only, no cross-site calls.

    >>> names = HostNames(["class.example.org", "*.hub.example.org"])
    >>> [names.allows(h) for h in ("localhost:8000", "[::1]:8000", "a.hub.example.org")]
    [True, True, True]
    >>> names.allows("evil.example:8000")
    False

A queue server on loopback is still reachable from every web page its user opens: a form on
any site can `POST /api/admin/drain` (a form needs no preflight), and a DNS-rebinding page
(`evil.example` resolving to 127.0.0.1) reads `/api/history` as if it were same-origin. So:

- **Host.** A request must name this server: a loopback name, the address the connection
  arrived on, the bind address, or a name in `TLC_ALLOWED_HOSTS`. Anything else is
  400 `host_not_allowed` — a rebinding page always sends its own name.
- **Origin.** On every route that changes something (`POST`, `PUT`, `PATCH`, `DELETE`) and
  on those that read private data (`/api/history*`, `/api/requests*`, `/api/admin*`), a
  browser request from another site is 403 `cross_origin`: an `Origin` that is neither this
  server nor in `TLC_CORS_ORIGINS`, or, without `Origin`, `Sec-Fetch-Site: cross-site` or
  `same-site` (another port of localhost is the same *site*). Notebook kernels, curl and
  the openai client send neither header and pass.
- **CORS** only for `TLC_CORS_ORIGINS`, with starlette's `CORSMiddleware`.

Starlette's `TrustedHostMiddleware` answers in plain text and cannot allow "the address this
connection arrived on" (what a LAN client types when the server binds 0.0.0.0), so the
host check is written here; CORS is starlette's.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from ..protocol import ERRORS, ErrorCode, error_body

__all__ = [
    "PRIVATE_PREFIXES",
    "HostGuardMiddleware",
    "HostNames",
    "OriginGuardMiddleware",
    "check_exposure",
    "install_guard",
    "is_loopback",
    "split_host",
]

log = logging.getLogger("tlc.guard")

#: Reads of these answer with someone's prompts and replies: same-origin only, like writes.
PRIVATE_PREFIXES = ("/api/history", "/api/requests", "/api/admin", "/api/class", "/api/me")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
_COMMON_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """True for names and addresses that never leave this machine.

    >>> [is_loopback(h) for h in ("localhost", "127.0.0.1", "::1", "0.0.0.0", "10.0.0.5")]
    [True, True, True, False, False]
    """
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None]:
    """A `Host` header's name (lower case, brackets and final dot removed) and port.

    >>> split_host("[::1]:8000"), split_host("LocalHost.:80"), split_host("example.org")
    (('::1', 8000), ('localhost', 80), ('example.org', None))
    """
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:
        name, port = value, ""
    return name.rstrip("."), int(port) if port.isascii() and port.isdigit() else None


class HostNames:
    """The names a `Host` header may carry: loopback, `extra`, and the connection's address."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        names = [n.strip().lower().strip("[]").rstrip(".") for n in extra if n.strip()]
        self.any = "*" in names
        self.exact = {n for n in names if not n.startswith("*")}
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*.") and len(n) > 2)

    @classmethod
    def from_settings(cls, settings: Settings) -> HostNames:
        extra = [*settings.allowed_hosts, settings.host]
        if not is_loopback(settings.host):
            # What people on the network type: the machine's name (and its mDNS form).
            hostname = socket.gethostname().lower()
            extra += [hostname, f"{hostname}.local"]
        return cls(n for n in extra if n not in WILDCARD_BINDS)

    def allows(self, host_header: str, local_address: str | None = None) -> bool:
        name, _ = split_host(host_header)
        if self.any or name in _COMMON_LOOPBACK or name in self.exact:
            return True
        if local_address is not None and name == local_address.lower():
            return True  # the address this very connection arrived on: the server's own
        if self.suffixes and name.endswith(self.suffixes):
            return True
        return is_loopback(name)  # last: parsing an address costs more than a set lookup

    def describe(self) -> str:
        listed = ["localhost", "127.0.0.1", "::1", *sorted(self.exact)]
        return ", ".join(dict.fromkeys([*listed, *(f"*{s}" for s in self.suffixes)]))


def _refuse(code: ErrorCode, detail: str) -> JSONResponse:
    return JSONResponse(error_body(code, detail), status_code=ERRORS[code][0])


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class HostGuardMiddleware:
    """Pure ASGI: refuse (400 `host_not_allowed`) a `Host` that is not this server's."""

    def __init__(self, app: ASGIApp, names: HostNames) -> None:
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = _header(scope, b"host")
            server = scope.get("server")
            local = str(server[0]) if server else None
            # No Host at all: HTTP/1.0 from a script; every browser sends one.
            if host is not None and not self.names.allows(host, local):
                name = split_host(host)[0]
                detail = f"Asked for {name!r}; this server answers to {self.names.describe()}."
                await _refuse(ErrorCode.HOST_NOT_ALLOWED, detail)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class OriginGuardMiddleware:
    """Pure ASGI: refuse (403 `cross_origin`) browser calls from other sites that change
    state or read private data. Calls without `Origin` and `Sec-Fetch-Site` pass."""

    def __init__(self, app: ASGIApp, cors_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.origins = frozenset(o.lower() for o in cors_origins)

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        """Same origin as `host` (name and port), or listed in `TLC_CORS_ORIGINS`.

        >>> guard = OriginGuardMiddleware(None, ["https://hub.example.org"])
        >>> guard.origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000")
        True
        >>> guard.origin_allowed("http://localhost:8888", "localhost:8000")
        False
        >>> guard.origin_allowed("https://hub.example.org", "queue.internal")
        True
        """
        origin = origin.strip().lower()
        if origin in self.origins or "*" in self.origins:
            return True
        if host is None or origin == "null":  # "null": a sandboxed frame or a file:// page
            return False
        try:
            parts = urlsplit(origin)
            theirs = (parts.hostname, parts.port)
        except ValueError:
            return False
        default = {"http": 80, "https": 443}.get(parts.scheme)
        name, port = split_host(host)
        return theirs[0] is not None and (theirs[0], theirs[1] or default) == (
            name,
            port or default,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            scope["method"] not in SAFE_METHODS or scope["path"].startswith(PRIVATE_PREFIXES)
        ):
            origin = _header(scope, b"origin")
            site = (_header(scope, b"sec-fetch-site") or "").strip().lower()
            if origin is not None:
                refused = not self.origin_allowed(origin, _header(scope, b"host"))
                who = f"a page from {origin.strip()!r}"
            else:
                refused = site in ("cross-site", "same-site")
                who = f"a page from another site (Sec-Fetch-Site: {site})"
            if refused:
                detail = f"{scope['method']} {scope['path']} was sent by {who}."
                await _refuse(ErrorCode.CROSS_ORIGIN, detail)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_guard(app: FastAPI, settings: Settings, hub: bool = False) -> None:
    """Add the host check, CORS (if configured) and the origin check to `app`.

    Call it after every other `add_middleware`: the last added runs first, so a foreign
    `Host` or a cross-site form is refused before anything reads its body or its key.
    """
    app.add_middleware(OriginGuardMiddleware, cors_origins=settings.cors_origins)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],  # Authorization, Content-Type, Last-Event-ID …
            expose_headers=["Retry-After"],
        )
    if not hub:  # behind the Hub's proxy the Host is the Hub's public name, and every
        # route needs a Hub token or the Hub's login cookie (which a rebinding page lacks)
        app.add_middleware(HostGuardMiddleware, names=HostNames.from_settings(settings))


def check_exposure(settings: Settings, keyed: bool) -> None:
    """Refuse (`ValueError`, one sentence) to bind beyond loopback without keys, unless the
    operator said that anyone on the network may use the server.

    >>> check_exposure(Settings(host="127.0.0.1"), keyed=False)
    >>> check_exposure(Settings(host="0.0.0.0"), keyed=False)
    Traceback (most recent call last):
    ...
    ValueError: Refusing to bind 0.0.0.0 without keys: anyone on the network could use ...
    """
    if is_loopback(settings.host) or keyed:
        return
    if not settings.anyone_on_the_network:
        raise ValueError(
            f"Refusing to bind {settings.host} without keys: anyone on the network could use "
            "this queue, read every prompt and reply in its history, and pause or drain it. "
            "Give each person a key (--keys-file keys.toml, or TLC_KEYS='key:user:role,…'; "
            "see README, 'Keys, roles and history'), or, if that is really what you want, "
            "add --anyone-on-the-network (TLC_ANYONE_ON_THE_NETWORK=1)."
        )
    log.warning(
        "binding %s without keys (--anyone-on-the-network): anyone who can reach this "
        "machine can use the queue, read every request and pause it.",
        settings.host,
    )
