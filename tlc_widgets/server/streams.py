"""Event streams out of a record's event log, and the queue's live snapshot.

    >>> sse_response(iter([b": ping\\n\\n"])).media_type
    'text/event-stream'

Each record keeps its events already encoded (`records._frame`, once per event), so sending
is "write the frames after the last id, wait for more". All frames that piled up while a
client was busy go out in one write. Keep-alive pings need no timer per stream (a timer
around every wait cost ~5 µs per token per listener): the service nudges every live record
each `ping_interval_s`, and a stream woken with nothing new sends `: ping`.

We build on starlette's `StreamingResponse` rather than FastAPI's `EventSourceResponse`:
the latter re-encodes every event through a pydantic model and two memory streams per
client, which is the per-token, per-client work this server must not do (see
docs/benchmarks.md). The framing is the same text/event-stream, with the same `: ping`
keep-alive and headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.responses import StreamingResponse

from ..sse import KEEPALIVE, frame
from .clock import call_later
from .records import Record
from .service import QueueService
from .views import snapshot

__all__ = ["listening", "record_frames", "snapshot_frames", "sse_response"]


def sse_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        # no-cache: never replay a stale stream; X-Accel-Buffering: nginx must not buffer.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@asynccontextmanager
async def listening(queue: QueueService, record: Record) -> AsyncIterator[None]:
    """Count an open event stream. When the last one closes on a live request, wait
    `disconnect_grace_s` for a reconnect (`Last-Event-ID`), then cancel it: a closed tab or
    a dead kernel must not keep a slot or a place in line."""
    record.listeners += 1
    try:
        yield
    finally:
        record.listeners -= 1
        if record.listeners == 0 and not record.status.terminal:

            def cancel_if_abandoned() -> None:
                if record.listeners == 0:
                    queue.cancel(record, by="disconnect")

            grace = queue.settings.disconnect_grace_s
            call_later(grace, cancel_if_abandoned)


async def record_frames(queue: QueueService, record: Record, after: int) -> AsyncIterator[bytes]:
    """Every event after id `after`, then each new one as it comes, until the terminal one."""
    async with listening(queue, record):
        sent = after
        while True:
            frames = record.frames
            if len(frames) > sent:
                chunk = b"".join(frames[sent:])
                sent = len(frames)
                yield chunk
                continue
            if record.status.terminal:
                return
            await record.changed()
            if len(record.frames) == sent:
                yield KEEPALIVE  # woken by the service's keep-alive nudge


async def snapshot_frames(queue: QueueService, interval_s: float) -> AsyncIterator[bytes]:
    """`/api/queue/events`: the queue snapshot on every change, at most once per interval."""
    event_id = 0
    while True:
        event_id += 1
        changed = queue.change_event  # taken before the snapshot: no change slips between
        yield frame("queue", snapshot(queue), event_id)
        await anyio.sleep(interval_s)
        with anyio.move_on_after(queue.settings.ping_interval_s) as scope:
            await changed.wait()
        if scope.cancelled_caught:
            yield KEEPALIVE
