"""Chat clients on raw asyncio streams: one per connection, noting when each event arrives.

    >>> client = Client(0, "ada", "Tell me about the White Rabbit")
    >>> asyncio.run(run_client(port, client, max_tokens=32))            # doctest: +SKIP
    >>> client.ending, "".join(client.text)                            # doctest: +SKIP

A thousand clients in one process (uvloop) on HTTP/1.1 by hand: httpx costs several times
more CPU per stream, and the clients share the machine's cores with the servers measured.
Ten thousand that mostly wait (`bench.hold`) are `Waiter`s, fed by the loop directly.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field

from bench.harness import PRACTICE_MODEL

__all__ = ["FAST_MODEL", "Client", "Waiter", "open_waiter", "run_client", "run_openai_client"]

FAST_MODEL = "fast"  #: bench/fast_upstream.py
HOST = "127.0.0.1"


def _host(port: int) -> bytes:
    # The address itself: the queue server refuses a Host header naming another site.
    return f"{HOST}:{port}".encode()


@dataclass
class Client:
    """One chat panel: what it sent, and every event with the time it arrived."""

    index: int
    user: str
    prompt: str
    id: str = ""
    t_sent: float = 0.0
    t_accepted: float = 0.0
    t_started: float | None = None
    t_ended: float | None = None
    ending: str = ""
    text: list[str] = field(default_factory=list)
    queued: list[tuple[float, int]] = field(default_factory=list)  #: (arrival, position)
    error: str | None = None
    terminals: int = 0  #: terminal events received (exactly one when all went well)


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return status, headers


async def run_client(
    port: int, client: Client, max_tokens: int, model: str = PRACTICE_MODEL
) -> None:
    """Submit, then read the event stream (chunked) to its end, on one connection."""
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError as exc:
        client.error = f"connect: {exc}"
        return
    try:
        body = json.dumps(
            {"prompt": client.prompt, "model": model, "max_tokens": max_tokens, "user": client.user}
        ).encode()
        client.t_sent = time.monotonic()
        writer.write(
            b"POST /api/requests HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (_host(port), len(body), body)
        )
        status, headers = await _head(reader)
        answer = json.loads(await reader.readexactly(int(headers["content-length"])))
        if status != 202:
            client.error = f"submit: HTTP {status} {answer}"
            return
        client.t_accepted = time.monotonic()
        client.id = answer["id"]
        writer.write(f"GET {answer['events']} HTTP/1.1\r\nhost: {HOST}:{port}\r\n\r\n".encode())
        status, headers = await _head(reader)
        if status != 200:
            client.error = f"events: HTTP {status}"
            return
        await _read_events(reader, client)
    except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as exc:
        client.error = f"{type(exc).__name__}: {exc}"
    finally:
        writer.close()


async def _read_events(reader: asyncio.StreamReader, client: Client) -> None:
    buffer = b""
    while True:
        size = int((await reader.readline()).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readline()
            return
        buffer += (await reader.readexactly(size + 2))[:-2]
        now = time.monotonic()
        *events, buffer = buffer.split(b"\n\n")
        for raw in events:
            name, data = "", b""
            for line in raw.split(b"\n"):
                if line.startswith(b"event: "):
                    name = line[7:].decode()
                elif line.startswith(b"data: "):
                    data = line[6:]
            if name == "delta":
                client.text.append(json.loads(data).get("content") or "")
            elif name == "queued":
                client.queued.append((now, int(json.loads(data)["position"])))
            elif name == "started":
                client.t_started = now
            elif name in ("done", "error", "cancelled"):
                client.t_ended, client.ending = now, name
                client.terminals += 1


async def run_openai_client(port: int, client: Client, max_tokens: int) -> None:
    """One streaming `POST /v1/chat/completions` (OpenAI's shape), read to its end."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        body = json.dumps(
            {
                "model": FAST_MODEL,
                "messages": [{"role": "user", "content": client.prompt}],
                "max_tokens": max_tokens,
                "stream": True,
            }
        ).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: %s\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (_host(port), len(body), body)
        )
        status, _ = await _head(reader)
        if status != 200:
            client.error = f"HTTP {status}"
            return
        buffer = b""
        while size := int((await reader.readline()).split(b";", 1)[0], 16):
            buffer += (await reader.readexactly(size + 2))[:-2]
            *events, buffer = buffer.split(b"\n\n")
            for raw in events:
                data = raw.removeprefix(b"data: ")
                if data == b"[DONE]":
                    client.ending = "done"
                elif data.startswith(b"{"):
                    for choice in json.loads(data).get("choices") or ():
                        if content := (choice.get("delta") or {}).get("content"):
                            client.text.append(content)
        await reader.readline()
    finally:
        writer.close()


# ---------------------------------------------------------------------------- waiting only

_POSITION = re.compile(rb'"position":(\d+)')
_ID = re.compile(rb'"id":"([^"]+)"')
_TERMINAL = (b"done", b"error", b"cancelled")


class Waiter(asyncio.Protocol):
    """A chat panel that mostly waits, as light as a client can be: one `POST /api/requests`
    answered as an event stream (`Accept: text/event-stream`), parsed in `data_received`
    with no coroutine per read and no JSON decoding. It notes what waiting shows (`accepted`,
    every `queued` position, `started`, the terminal event) and skips the reply's text.

    >>> waiter = Waiter(Client(0, "ada", "Hi"))
    >>> waiter.data_received(b"HTTP/1.1 200 OK\\r\\ntransfer-encoding: chunked\\r\\n\\r\\n")
    >>> event = b'event: queued\\ndata: {"position":7,"waiting":9}\\n\\n'
    >>> waiter.data_received(b"%x\\r\\n%s" % (len(event), event[:20]))  # one chunk, ...
    >>> waiter.data_received(event[20:] + b"\\r\\n")  # ... in two reads
    >>> [position for _, position in waiter.client.queued]
    [7]
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.answered = asyncio.Event()  #: the answer's head arrived, or the connection failed
        self.ended = asyncio.Event()  #: closed (after the terminal event, if all went well)
        self.transport: asyncio.Transport | None = None
        self._head = True
        self._raw = b""  # bytes not yet de-chunked
        self._left = 0  # data bytes left in the current chunk
        self._skip = 0  # the CRLF after a chunk's data, still to skip
        self._sse = b""  # de-chunked text not yet split into events
        self.events = 0  #: events received (pings aside): the server's frames of the request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()  # one reading per read: events that came together, together
        if self._head:
            self._raw += data
            end = self._raw.find(b"\r\n\r\n")
            if end < 0:
                return
            status = int(self._raw[9:12])
            data, self._raw, self._head = self._raw[end + 4 :], b"", False
            self.answered.set()
            if status != 200:
                self.client.error = f"HTTP {status}: {data[:200]!r}"
                self._close()
                return
        *events, self._sse = (self._sse + self._dechunk(data)).split(b"\n\n")
        for event in events:
            self._event(event, now)

    def _dechunk(self, data: bytes) -> bytes:
        raw, pos, out = self._raw + data, 0, []
        while pos < len(raw):
            if self._skip:
                step = min(self._skip, len(raw) - pos)
                pos, self._skip = pos + step, self._skip - step
            elif self._left:
                piece = raw[pos : pos + self._left]
                out.append(piece)
                pos, self._left = pos + len(piece), self._left - len(piece)
                self._skip = 0 if self._left else 2
            else:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                self._left = int(raw[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                if self._left == 0:  # the last chunk: the stream is over
                    self._close()
                    break
        self._raw = raw[pos:]
        return b"".join(out)

    def _event(self, event: bytes, now: float) -> None:
        if not event.startswith(b"event: "):
            return  # a `: ping` comment
        name = event[7 : event.find(b"\n")]
        client = self.client
        self.events += 1
        if name == b"queued":
            match = _POSITION.search(event)
            if match is None:
                client.error = f"a queued event without a position: {event[:200]!r}"
            else:
                client.queued.append((now, int(match.group(1))))
        elif name == b"accepted":
            match = _ID.search(event)
            client.id, client.t_accepted = (match.group(1).decode() if match else ""), now
        elif name == b"started":
            client.t_started = now
        elif name in _TERMINAL:
            client.t_ended, client.ending = now, name.decode()
            client.terminals += 1

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.client.ending and self.client.error is None:
            self.client.error = f"closed before a terminal event ({exc or 'by the server'})"
        self.answered.set()
        self.ended.set()


async def open_waiter(
    port: int, client: Client, max_tokens: int, model: str = PRACTICE_MODEL
) -> Waiter:
    """Connect, submit `client`'s prompt asking for an event stream, and return once the
    answer's head arrived (or the connection failed: `client.error`); then await `.ended`."""
    loop = asyncio.get_running_loop()
    waiter = Waiter(client)
    body = json.dumps(
        {"prompt": client.prompt, "model": model, "max_tokens": max_tokens, "user": client.user}
    ).encode()
    try:
        transport, _ = await loop.create_connection(lambda: waiter, HOST, port)
    except OSError as exc:
        client.error = f"connect: {exc}"
        waiter.connection_lost(None)
        return waiter
    client.t_sent = time.monotonic()
    transport.write(
        b"POST /api/requests HTTP/1.1\r\nhost: %s\r\naccept: text/event-stream\r\n"
        b"connection: close\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (_host(port), len(body), body)
    )
    await waiter.answered.wait()
    return waiter
