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

from collections.abc import AsyncIterator, Callable

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..protocol import ErrorCode
from ..sse import KEEPALIVE, frame
from .api_error import ApiError
from .clock import call_later
from .records import Record
from .service import QueueService
from .views import snapshot

__all__ = ["EventStream", "open_stream", "record_frames", "snapshot_frames", "sse_response"]


class EventStream(StreamingResponse):
    """A `text/event-stream` response that runs `on_close` however it ends — streamed to the
    end, cut by the client, or never started because the client left first — so a stream
    counted when it was opened is always uncounted."""

    def __init__(
        self, body: AsyncIterator[bytes], on_close: Callable[[], None] | None = None
    ) -> None:
        # no-cache: never replay a stale stream; X-Accel-Buffering: nginx must not buffer.
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(body, media_type="text/event-stream", headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._on_close is not None:
                self._on_close()


def sse_response(
    body: AsyncIterator[bytes], on_close: Callable[[], None] | None = None
) -> EventStream:
    return EventStream(body, on_close)


def open_stream(queue: QueueService, user: str, record: Record | None = None) -> Callable[[], None]:
    """Count an event stream about to open (of `record`, or a monitor's), or refuse it with
    429 `too_many_streams` past the caps; the returned function uncounts it. When the last
    stream of a live request closes, wait `disconnect_grace_s` for a reconnect
    (`Last-Event-ID`), then cancel it: a closed tab must not keep a slot or a place in line."""
    s = queue.settings
    if record is not None and record.listeners >= s.max_streams_per_request:
        raise ApiError(
            ErrorCode.TOO_MANY_STREAMS, f"The limit is {s.max_streams_per_request} per request."
        )
    if queue.streams[user] >= s.max_streams_per_user:
        raise ApiError(
            ErrorCode.TOO_MANY_STREAMS, f"The limit is {s.max_streams_per_user} per user."
        )
    queue.streams[user] += 1
    if record is not None:
        record.listeners += 1

    def close() -> None:
        queue.streams[user] -= 1
        if not queue.streams[user]:
            del queue.streams[user]  # nothing kept for users with no stream open
        if record is None:
            return
        record.listeners -= 1
        if record.listeners == 0 and not record.status.terminal:

            def cancel_if_abandoned() -> None:
                if record.listeners == 0:  # (with --redis: unless read on another replica)
                    queue.dispatcher.abandoned(record, lambda: queue.cancel(record, "disconnect"))

            call_later(s.disconnect_grace_s, cancel_if_abandoned)

    return close


async def record_frames(queue: QueueService, record: Record, after: int) -> AsyncIterator[bytes]:
    """Every event after id `after`, then each new one as it comes, until the terminal one.
    (The route counted the stream with `open_stream`; its response uncounts it.)"""
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
