"""Reading a request's events: SSE in (the project's one codec), typed events out, resumed
across broken connections with `Last-Event-ID`.

    >>> from tlc_widgets.sse import decode_text
    >>> sse = decode_text('event: delta\\ndata: {"content": "Hi"}\\nid: 4\\n\\n')[0]
    >>> to_event(sse).content
    'Hi'
    >>> to_event(decode_text('event: delta\\ndata: {"content": \\n\\n')[0])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tlc_widgets.errors.RequestFailed: The queue server sent an event this client cannot read ...

The wire is read by `tlc_widgets.sse.aiter_events` (httpx-sse: lines end at CRLF, LF or CR
only; UTF-8 decoded incrementally), so U+2028, U+2029, U+0085 and a multi-byte character
split across network chunks reach the text unchanged. Anything the codec hands over that is
not a valid event becomes a `RequestFailed` (`internal_error`), never a bare
`json.JSONDecodeError`: every consumer catches `TLCError`, and only that.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

import anyio
import httpx

from ..errors import RequestFailed, ServerUnavailable, error_from_response
from ..protocol import ErrorCode, Event, EventName, parse_event
from ..sse import ServerSentEvent, aiter_events

__all__ = [
    "KNOWN_EVENTS",
    "RECONNECT_BACKOFF_S",
    "closing",
    "is_event_stream",
    "json_body",
    "read_sse",
    "resuming",
    "to_event",
    "to_json",
    "typed",
]

#: Pauses before each reconnect of a broken stream; after the last one we give up.
RECONNECT_BACKOFF_S = (0.2, 0.5, 1.0, 2.0)
KNOWN_EVENTS = frozenset(EventName)


def to_event(sse: ServerSentEvent) -> Event:
    """The typed event of one SSE event; `RequestFailed` if its data is not what it should be."""
    try:
        return parse_event(sse.event, sse.data)
    except (ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        raise RequestFailed(
            f"The queue server sent an event this client cannot read ({sse.event}: "
            f"{sse.data[:60]!r}).",
            code=ErrorCode.INTERNAL_ERROR,
        ) from exc


def to_json(sse: ServerSentEvent) -> dict[str, Any]:
    """The JSON object of an event's data, or `RequestFailed` (as for `to_event`)."""
    try:
        value = json.loads(sse.data)
    except ValueError as exc:
        value = exc
    if not isinstance(value, dict):
        raise RequestFailed(
            f"The queue server sent an event this client cannot read ({sse.event}: "
            f"{sse.data[:60]!r}).",
            code=ErrorCode.INTERNAL_ERROR,
        )
    return value


def is_event_stream(response: httpx.Response) -> bool:
    content_type = str(response.headers.get("content-type", ""))
    return content_type.partition(";")[0].strip() == "text/event-stream"


async def read_sse(response: httpx.Response) -> AsyncGenerator[ServerSentEvent, None]:
    """The events of one open response; an HTTP error answer raises its `TLCError`."""
    if response.is_error:
        await response.aread()
        raise error_from_response(response)
    if not is_event_stream(response):
        await response.aread()
        raise RequestFailed(
            f"The queue server answered {response.headers.get('content-type')!r} where an "
            "event stream was expected.",
            code=ErrorCode.INTERNAL_ERROR,
        )
    async with aclosing(aiter_events(response)) as events:
        async for sse in events:
            yield sse


#: Opens one connection, resumed after the given event id (None: from the start).
Connect = Callable[[str | None], AsyncGenerator[ServerSentEvent, None]]


async def resuming(
    connect: Connect, url: str, last_event_id: str | None, final: frozenset[str]
) -> AsyncGenerator[ServerSentEvent, None]:
    """Events across reconnects, each connection resumed after the last id seen, until one
    named in `final` (or forever if none is). `connect(last_event_id)` opens one connection;
    it raises `httpx.TransportError` when the connection breaks. After a few failures in a
    row (`RECONNECT_BACKOFF_S`) it raises `ServerUnavailable`."""
    failures = 0
    while True:
        cause: Exception | None = None
        try:
            async with aclosing(connect(last_event_id)) as events:
                async for sse in events:
                    failures = 0
                    last_event_id = sse.id or last_event_id
                    yield sse
                    if sse.event in final:
                        return
        except httpx.TransportError as exc:
            cause = exc
        if failures == len(RECONNECT_BACKOFF_S):
            raise ServerUnavailable(url) from cause
        await anyio.sleep(RECONNECT_BACKOFF_S[failures])
        failures += 1


async def typed(
    sse_events: AsyncGenerator[ServerSentEvent, None],
) -> AsyncGenerator[Event, None]:
    """The typed events among `sse_events`; a newer server's new event names are skipped."""
    async with aclosing(sse_events) as events:
        async for sse in events:
            if sse.event in KNOWN_EVENTS:
                yield to_event(sse)


async def closing(
    response: httpx.Response, events: AsyncGenerator[ServerSentEvent, None]
) -> AsyncGenerator[ServerSentEvent, None]:
    """`events`, then the response they came on is closed (however the reading ends)."""
    try:
        async with aclosing(events) as open_events:
            async for sse in open_events:
                yield sse
    finally:
        await response.aclose()


def json_body(response: httpx.Response) -> Any:
    """A read response's JSON, or `RequestFailed` if it is not JSON."""
    try:
        return response.json()
    except ValueError as exc:
        raise RequestFailed(
            "The queue server's answer is not JSON.", code=ErrorCode.INTERNAL_ERROR
        ) from exc
