"""Bounded connections: a header-read timeout, a header size cap, and a cap on open sockets.

    >>> options = uvicorn_options(Settings(header_timeout_s=5, max_connections=500))
    >>> sorted(options)
    ['backlog', 'h11_max_incomplete_event_size', 'http', 'timeout_keep_alive']
    >>> options["http"].header_timeout_s, options["http"].max_connections <= 500
    (5.0, True)

uvicorn gives a keep-alive timeout (idle between two requests) and `limit_concurrency`, but
nothing times out a request whose headers never finish, and `limit_concurrency` refuses only
once headers *are* complete — a slow-header socket holds a file descriptor forever. 1,100 of
them exhaust the usual 1,024 open files, and then `accept()` fails for everyone, `/healthz`
included. `GuardedHttpTools` (uvicorn's httptools protocol, passed as `http=`) adds:

- **Header timeout.** From the first byte of a request (or the connection's opening) to the
  end of its headers: `TLC_HEADER_TIMEOUT_S`, then 408 `request_timeout` and close.
- **Header size.** More than `TLC_MAX_HEADER_BYTES` before the headers end: 431.
- **Connection cap.** `TLC_MAX_CONNECTIONS`, lowered to fit the open-file limit. A new
  connection over the cap first pushes out the oldest one still waiting for its headers
  (the cheapest to lose, and what a slow-header attack is made of); only if every open
  connection is busy with a request is the newcomer refused: 503 `too_many_connections`.

`limit_concurrency` is not used: it counts connections too, so at the cap it would refuse
the next request on every kept-alive connection instead of the newcomer.
"""

from __future__ import annotations

import asyncio
import json
import resource
import weakref
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ..config import Settings
from ..protocol import ERRORS, ErrorCode, error_body

__all__ = [
    "HEADROOM",
    "GuardedHttpTools",
    "connection_cap",
    "guarded_protocol",
    "raise_open_file_limit",
    "uvicorn_options",
]

#: File descriptors kept free of client connections: the listening socket, upstream and
#: in-process practice connections, the history database, logs.
HEADROOM = 128

#: Per server: connections still waiting for their headers, oldest first (a dict as an
#: ordered set). Keyed by the uvicorn server's shared state, so two servers never mix.
_waiting: weakref.WeakKeyDictionary[ServerState, dict[GuardedHttpTools, None]] = (
    weakref.WeakKeyDictionary()
)


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = min(hard, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # a platform that says no: the cap below fits what we have
    return soft


def connection_cap(settings: Settings) -> int:
    """`max_connections`, lowered so that client sockets can never use up the open files."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return settings.max_connections
    return max(1, min(settings.max_connections, soft - HEADROOM))


def _raw_error(code: ErrorCode) -> bytes:
    """A complete HTTP/1.1 response in the JSON error shape, for a connection we then close."""
    status, _ = ERRORS[code]
    body = json.dumps(error_body(code)).encode()
    reason = {408: "Request Timeout", 431: "Request Header Fields Too Large"}.get(
        status, "Service Unavailable"
    )
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    )
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode() + b"\r\n" + body


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout, a header size cap and a
    connection cap. Configure with `guarded_protocol(...)`, not by instantiating."""

    header_timeout_s: ClassVar[float] = 10.0
    max_header_bytes: ClassVar[int] = 65_536
    max_connections: ClassVar[int] = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._armed_cycle: object = None  # the request cycle when the timer was armed
        self._waiting = _waiting.setdefault(self.server_state, {})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._push_out_oldest():
            self._refuse(ErrorCode.TOO_MANY_CONNECTIONS)
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the next request on a kept-alive connection starts arriving
        super().data_received(data)
        if self._timer is not None:
            self._header_bytes += len(data)
            if self.cycle is not self._armed_cycle or self.transport.get_protocol() is not self:
                self._disarm()  # headers complete: the app (or a WebSocket upgrade) has it
            elif self._header_bytes > self.max_header_bytes:
                self._refuse(ErrorCode.HEADERS_TOO_LARGE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_bytes = 0
        self._armed_cycle = self.cycle
        self._timer = self.loop.call_later(self.header_timeout_s, self._timed_out)
        self._waiting[self] = None

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.pop(self, None)

    def _timed_out(self) -> None:
        self._timer = None
        if self.cycle is not self._armed_cycle:  # the headers did finish (e.g. pipelined)
            self._disarm()
            return
        self._refuse(ErrorCode.REQUEST_TIMEOUT)

    def _push_out_oldest(self) -> bool:
        """Close the connection that has waited longest for its headers, if any."""
        for victim in self._waiting:
            if victim is not self:
                victim._refuse(ErrorCode.TOO_MANY_CONNECTIONS)
                return True
        return False

    def _refuse(self, code: ErrorCode) -> None:
        self._disarm()
        # Out of the count now, not when the loop gets to connection_lost: a burst of new
        # connections must not push out more than one waiting connection each.
        self.connections.discard(self)
        if not self.transport.is_closing():
            self.transport.write(_raw_error(code))
            self.transport.close()


def guarded_protocol(
    header_timeout_s: float, max_header_bytes: int, max_connections: int
) -> type[GuardedHttpTools]:
    """A `GuardedHttpTools` subclass with these limits, to pass as uvicorn's `http=`."""
    return type(
        "GuardedHttpTools",
        (GuardedHttpTools,),
        {
            "header_timeout_s": float(header_timeout_s),
            "max_header_bytes": max_header_bytes,
            "max_connections": max_connections,
        },
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` / `uvicorn.run` that bound connections."""
    return {
        "http": guarded_protocol(
            settings.header_timeout_s, settings.max_header_bytes, connection_cap(settings)
        ),
        "timeout_keep_alive": 5,  # uvicorn's default, said out loud: idle between requests
        "h11_max_incomplete_event_size": settings.max_header_bytes,  # if h11 is ever chosen
        "backlog": 2048,
    }
