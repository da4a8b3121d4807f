"""The body limit: 413 once a request body passes `TLC_MAX_BODY_BYTES`, counted as it comes.

>>> BodyLimitMiddleware.DRAIN_BYTES // 1_048_576
64
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..protocol import ErrorCode, error_body

__all__ = ["BodyLimitMiddleware"]


class _TooLarge(Exception):
    """Raised into the app from `receive`: stop reading, the answer is 413."""


class BodyLimitMiddleware:
    """Pure ASGI: answer 413 once a body passes `max_bytes`, counting the bytes as they come.

    `Content-Length` alone is not enough: a chunked upload has none, and a client may lie.
    When the count passes the limit mid-read, whatever the app answers to its broken read is
    dropped and replaced by the 413.

    Before answering, the rest of the body is read and thrown away (up to `DRAIN_BYTES`):
    an HTTP/1.1 client sends its whole body before it reads, and a server that hangs up on
    unread bytes makes the client see a reset connection instead of the 413's sentence.
    """

    DRAIN_BYTES = 64 * 1_048_576  #: past this, hang up: the client gets no sentence

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            drain = int(declared) <= self.DRAIN_BYTES
            await self._refuse(scope, receive, send, read_all=not drain or await _drain(receive))
            return
        received, over, started, read_all = 0, False, False, False

        async def counting_receive() -> Message:
            nonlocal received, over, read_all
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over, read_all = True, not message.get("more_body", False)
                    raise _TooLarge
            return message

        async def send_unless_over(message: Message) -> None:
            nonlocal started
            if over:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, send_unless_over)
        except Exception:
            if not over:
                raise
        if over and not started:
            read_all = read_all or await _drain(receive, self.DRAIN_BYTES - received)
            await self._refuse(scope, receive, send, read_all)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, read_all: bool) -> None:
        detail = f"The limit is {self.max_bytes} bytes ({self.max_bytes / 1_048_576:.1f} MB)."
        body = error_body(ErrorCode.PAYLOAD_TOO_LARGE, detail, "body")
        # A body not read to its end leaves the connection unusable for another request.
        headers = None if read_all else {"Connection": "close"}
        await JSONResponse(body, 413, headers=headers)(scope, receive, send)


async def _drain(receive: Receive, budget: int = BodyLimitMiddleware.DRAIN_BYTES) -> bool:
    """Read and discard the rest of a body; True if it ended within `budget` bytes."""
    while budget >= 0:
        message = await receive()
        if message["type"] != "http.request":
            return False  # the client left
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False
