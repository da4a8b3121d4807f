"""Reading Server-Sent Events: text/event-stream lines in, events out.

    >>> async for event in iter_sse(response.aiter_lines()):      # doctest: +SKIP
    ...     print(event.event, event.id, event.data)
    queued 1 {"position": 3, "waiting": 7, "eta_s": 20.5}

A small parser of the SSE wire format (the WHATWG spec's field rules), kept apart from the
client so it can be unit-tested with plain lists of lines and reused by lessons.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

__all__ = ["ServerSentEvent", "iter_sse"]


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None  #: the last `id:` seen so far in the stream (it carries over, per the spec)


async def iter_sse(lines: AsyncIterator[str]) -> AsyncGenerator[ServerSentEvent, None]:
    """Events out of text/event-stream lines: `event:`, `data:` and `id:` fields, `:` comments
    ignored, a blank line ends an event. A half-received event at the end is dropped.

        event: done        ─►  ServerSentEvent(event="done", data="{}", id="7")
        data: {}
        id: 7
        <blank line>
    """
    name, last_id = "", None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield ServerSentEvent(name or "message", "\n".join(data), last_id)
            name, data = "", []
            continue
        if line.startswith(":"):
            continue  # a comment: the server's keep-alive `: ping`
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\0" not in value:
            last_id = value
