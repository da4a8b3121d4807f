"""The one Server-Sent Events codec of the project: frames out, events in.

    >>> frame("delta", {"content": "a\\u2028b"}, event_id=7)
    b'event: delta\\ndata: {"content":"a\\\\u2028b"}\\nid: 7\\n\\n'
    >>> decode_text('event: done\\r\\ndata: {}\\rid: 3\\n\\n')
    [ServerSentEvent(event='done', data='{}', id='3')]

**Writing.** Every frame goes through `frame()` (or `data_frame()` / `comment()`), so one
rule holds everywhere: a JSON payload on one `data:` line, with U+2028, U+2029 and U+0085
escaped. Those three are legal raw inside JSON strings, and LM Studio writes them raw, but
any reader that splits lines the way Python's `str.splitlines()` does (httpx's
`aiter_lines()` among them) would cut the event in two. Escaped, they reach every client.

**Reading.** The WHATWG rules: a line ends at CRLF, LF or CR and nowhere else. We do not
parse by hand: `httpx-sse` (maintained, used by the MCP SDK and others) implements exactly
that rule and decodes UTF-8 incrementally, so a multi-byte character split across network
chunks arrives whole. One WHATWG rule it leaves out we add: an event whose data is empty is
not dispatched (httpx-sse dispatches one at every blank line once an `id:` was seen).
`aiter_events(response)` is what the server's upstream reader, the client and the lessons
call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterable
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

__all__ = [
    "KEEPALIVE",
    "ServerSentEvent",
    "aiter_events",
    "comment",
    "data_frame",
    "decode_text",
    "dumps",
    "frame",
]

#: What a stream sends when it has nothing to say (clients and proxies keep it open).
KEEPALIVE = b": ping\n\n"

# Characters that are line ends to `str.splitlines()` but not to SSE or JSON: escaped on
# the way out. (CR and LF never appear raw: json.dumps always escapes them.)
_UNSAFE = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"}


def dumps(obj: Any) -> str:
    """Compact JSON with the three unsafe line separators escaped.

    >>> dumps({"t": "x\\u0085y é"})
    '{"t":"x\\\\u0085y é"}'
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if "\u2028" in text or "\u2029" in text or "\u0085" in text:
        for raw, escaped in _UNSAFE.items():
            text = text.replace(raw, escaped)
    return text


def frame(event: str | None, data: Any, event_id: int | str | None = None) -> bytes:
    """One SSE event: `event:`, one `data:` line of JSON (or a pre-encoded str), `id:`."""
    payload = data if isinstance(data, str) else dumps(data)
    head = f"event: {event}\n" if event else ""
    tail = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {payload}\n{tail}\n".encode()


def data_frame(data: Any) -> bytes:
    """A bare `data:` event, as OpenAI's streams use (`data: {...}` / `data: [DONE]`).

    >>> data_frame("[DONE]")
    b'data: [DONE]\\n\\n'
    """
    return frame(None, data)


def comment(text: str) -> bytes:
    """An SSE comment line, ignored by every client (keep-alives, queue positions).

    >>> comment("queued position=2")
    b': queued position=2\\n\\n'
    """
    return f": {text.replace(chr(13), ' ').replace(chr(10), ' ')}\n\n".encode()


async def aiter_events(response: httpx.Response) -> AsyncGenerator[ServerSentEvent, None]:
    """The events of a streaming httpx response, per the WHATWG line rules."""
    async for event in EventSource(response).aiter_sse():
        if event.data:
            yield event


def decode_text(text: str | Iterable[str]) -> list[ServerSentEvent]:
    """Events out of already-received text (one string, or chunks of it): for lessons and
    tests that hold a whole stream. Same rules as `aiter_events`."""
    lines, decoder = SSELineDecoder(), SSEDecoder()
    out: list[ServerSentEvent] = []
    chunks = [text] if isinstance(text, str) else text
    for line in [ln for chunk in chunks for ln in lines.decode(chunk)] + lines.flush():
        event = decoder.decode(line.rstrip("\n"))
        if event is not None and event.data:
            out.append(event)
    return out
