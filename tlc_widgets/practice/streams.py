"""HTTP plumbing of the practice server: leased streams, hang-up detection, pacing.

    >>> pace = Pace(latency=0.0, tokens_per_second=0.0)
    >>> pace.tokens_per_second
    0.0

A request first waits for a slot of its model (FIFO, before any byte is sent, like LM Studio),
then gets one chunk per token at the model's speed. A client that leaves — while waiting or
while reading — frees its slot at once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.lowlevel
from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from tlc_widgets.practice.slots import Lease

__all__ = ["DroppedOnPurpose", "HideDropTraceback", "LeasedStream", "Pace", "unless_disconnected"]

T = TypeVar("T")
_YIELD_EVERY = 32  # with no delay, still let other streams run this often (in tokens)


class DroppedOnPurpose(Exception):
    """Raised mid-stream by the drop fault: uvicorn then closes the TCP connection abruptly."""


class HideDropTraceback(logging.Filter):
    """Keeps the drop fault's exception out of uvicorn's error log."""

    # uvicorn logs every exception that escapes an app, with a traceback; a drop that a student
    # switched on is not a bug of the server, so keep it out of their terminal.
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedOnPurpose))


class LeasedStream(StreamingResponse):
    """A StreamingResponse that frees its slot however it ends.

    The body iterator's own `finally` is not enough: if the client leaves before the first
    chunk is pulled, starlette cancels the response before the generator ever started.
    """

    def __init__(self, content: AsyncIterator[bytes], lease: Lease | None) -> None:
        super().__init__(content, media_type="text/event-stream")
        self.headers["Cache-Control"] = "no-cache"
        self.lease = lease

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.lease is not None:
                self.lease.release()


async def unless_disconnected(request: Request, work: Callable[[], Awaitable[T]]) -> T | None:
    """`await work()`, or None as soon as the client hangs up (`work` is then cancelled)."""
    result: T | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            # The body is already read, so the next ASGI message can only be the disconnect.
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        result = await work()
        tg.cancel_scope.cancel()
    return result


@dataclass(frozen=True)
class Pace:
    """How fast a model writes: first-token latency, then tokens per second (0: no delay)."""

    latency: float
    tokens_per_second: float

    async def tokens(self, tokens: Iterator[T]) -> AsyncGenerator[T, None]:
        """`tokens`, each at its due time."""
        await anyio.sleep(self.latency)
        start = anyio.current_time()
        for n, token in enumerate(tokens, start=1):
            yield token
            if self.tokens_per_second > 0:
                # Keep to a schedule counted from the start, so slow sends cannot add up.
                due = start + n / self.tokens_per_second
                await anyio.sleep(max(0.0, due - anyio.current_time()))
            elif n % _YIELD_EVERY == 0:
                # No delay wanted, but one stream must not starve the others.
                await anyio.lowlevel.checkpoint()
