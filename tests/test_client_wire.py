"""`QueueClient` on the wire: every character arrives as written, whatever the network does
with the bytes, in the two-step and the one-round-trip form; malformed data is a `TLCError`;
and `follow()`'s cancel rule.

The loopback server here is a tiny starlette app that writes raw bytes in chosen chunks,
like LM Studio writes them (U+2028/2029/0085 raw inside JSON strings), so the client's
reading is tested against a real HTTP connection, not a parser fed lists of lines.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tlc_widgets.client import (
    InvalidRequest,
    Opened,
    QueueClient,
    RequestCancelled,
    RequestFailed,
    Submitted,
    follow,
)
from tlc_widgets.protocol import Cancelled, Delta, Done, Event, Queued, Started
from tlc_widgets.serving import BackgroundServer

pytestmark = pytest.mark.anyio

#: Everything a line splitter could get wrong: the three characters `str.splitlines` takes
#: for line ends, CR and CRLF (escaped in JSON), an emoji (4 UTF-8 bytes), accents, CJK.
NASTY = "a\u2028b\u2029c\u0085d\re\r\nf 😀 g é 中文 \U0001f9ea end"
TOKENS = ["a\u2028", "b\u2029c", "\u0085d\r", "e\r\nf ", "😀", " g é ", "中文 ", "\U0001f9ea end"]
ACCEPTED = {"id": "r1", "position": 1, "waiting": 1, "eta_s": None, "model": "m", "user": "u"}


def raw_json(data: dict[str, Any]) -> str:
    """JSON as LM Studio writes it: non-ASCII raw, U+2028/2029/0085 included."""
    return json.dumps(data, ensure_ascii=False)


def frames(tokens: list[str]) -> bytes:
    events: list[tuple[str, str]] = [
        ("queued", raw_json({"position": 1, "waiting": 1, "eta_s": None})),
        ("started", raw_json({"model": "m", "upstream": "u", "waited_s": 0.0})),
        *(("delta", raw_json({"content": t})) for t in tokens),
        ("done", raw_json({"finish_reason": "stop"})),
    ]
    text = "".join(
        f"event: {name}\ndata: {data}\nid: {i}\n\n" for i, (name, data) in enumerate(events, 1)
    )
    return text.encode()


class RawServer:
    """Answers `POST /api/requests` (202 JSON, or the event stream itself when `one_trip`),
    `GET /api/requests/r1/events` and `DELETE`, writing `body` in `chunk`-byte pieces."""

    def __init__(self, body: bytes, chunk: int, one_trip: bool) -> None:
        self.body, self.chunk, self.one_trip = body, chunk, one_trip
        self.gets = 0
        self.deleted: list[str] = []

    async def pieces(self, head: bytes = b"") -> AsyncIterator[bytes]:
        data = head + self.body
        for at in range(0, len(data), self.chunk):
            yield data[at : at + self.chunk]
            await anyio.lowlevel.checkpoint()  # a write of its own, so pieces leave separately

    async def post(self, request: Request) -> Response:
        if not self.one_trip or "text/event-stream" not in request.headers.get("accept", ""):
            return JSONResponse(ACCEPTED | {"status": "queued"}, status_code=202)
        head = f"event: accepted\ndata: {raw_json(ACCEPTED)}\n\n".encode()
        return StreamingResponse(self.pieces(head), media_type="text/event-stream")

    async def events(self, request: Request) -> Response:
        self.gets += 1
        return StreamingResponse(self.pieces(), media_type="text/event-stream")

    async def delete(self, request: Request) -> Response:
        self.deleted.append(request.path_params["rid"])
        return JSONResponse({"cancelled": True})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/requests", self.post, methods=["POST"]),
                Route("/api/requests/{rid}/events", self.events),
                Route("/api/requests/{rid}", self.delete, methods=["DELETE"]),
            ]
        )


@contextmanager
def raw_server(body: bytes, chunk: int, one_trip: bool) -> Iterator[tuple[RawServer, str]]:
    raw = RawServer(body, chunk, one_trip)
    with BackgroundServer(raw.app()) as server:
        yield raw, server.url


@pytest.mark.parametrize("one_trip", [False, True], ids=["two-step", "one-round-trip"])
@pytest.mark.parametrize("chunk", [1, 3, 7, 4096])
async def test_every_character_arrives_byte_identical_whatever_the_chunks(
    chunk: int, one_trip: bool
) -> None:
    assert "".join(TOKENS) == NASTY
    with raw_server(frames(TOKENS), chunk, one_trip) as (raw, url):
        async with QueueClient(url) as client:
            events: list[Event] = []
            reply = await follow(client, on_event=events.append, prompt="hi")
    assert reply.text == NASTY and reply.text.encode() == NASTY.encode()
    assert [e.content for e in events if isinstance(e, Delta)] == TOKENS
    assert isinstance(events[0], Queued) and isinstance(events[-1], Done)
    assert raw.gets == (0 if one_trip else 1)  # one round trip: no second request


@pytest.mark.parametrize("one_trip", [False, True], ids=["two-step", "one-round-trip"])
async def test_malformed_event_data_is_a_tlc_error_not_a_json_error(one_trip: bool) -> None:
    body = b'event: queued\ndata: {"position": 1, "waiting": 1, "eta_s": null}\nid: 1\n\n'
    body += b'event: delta\ndata: {"content": "half\nid: 2\n\n'
    with raw_server(body, 5, one_trip) as (_, url):
        async with QueueClient(url) as client:
            with pytest.raises(RequestFailed) as failed:
                await client.chat("hi")
    assert failed.value.code == "internal_error"
    assert "cannot read" in failed.value.message and "delta" in failed.value.message


# -- the one-round-trip form, parsed (httpx.MockTransport) ------------------------------------


def sse(name: str, data: dict[str, Any], event_id: int | None = None) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n" + (
        f"id: {event_id}\n\n" if event_id is not None else "\n"
    )


STREAM: list[tuple[str, dict[str, Any]]] = [
    ("queued", {"position": 2, "waiting": 3, "eta_s": 4.5}),
    ("started", {"model": "m", "upstream": "u", "waited_s": 1.0}),
    ("delta", {"content": "Hi"}),
    ("done", {"finish_reason": "stop"}),
]


class Broken(httpx.AsyncByteStream):
    """A response body that sends `data` and then breaks, as a dropped connection does."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data
        raise httpx.ReadError("connection reset")


async def test_open_reads_the_accepted_event_then_the_requests_events() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = sse("accepted", ACCEPTED | {"position": 2, "waiting": 3, "eta_s": 4.5})
        body += "".join(sse(n, d, i) for i, (n, d) in enumerate(STREAM, 1))
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    async with QueueClient("http://q", transport=httpx.MockTransport(answer)) as client:
        opened = await client.open("Hello", model="m", max_tokens=5)
        async with aclosing(opened):
            events = [e async for e in opened.events]
    assert opened.submitted == Submitted("r1", 2, 3, 4.5, "m")
    assert [type(e) for e in events] == [Queued, Started, Delta, Done]
    assert len(seen) == 1 and seen[0].method == "POST"
    assert "text/event-stream" in seen[0].headers["accept"]
    assert json.loads(seen[0].content)["max_tokens"] == 5


async def test_open_falls_back_to_two_steps_on_202_and_raises_a_refusal() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        body = json.loads(request.content or b"{}")
        if request.method == "POST" and body.get("max_tokens") == 0:
            error = {"code": "invalid_request", "message": "max_tokens must be at least 1."}
            return httpx.Response(422, json={"error": error})
        if request.method == "POST":
            return httpx.Response(202, json=ACCEPTED | {"status": "queued", "events": "/x"})
        text = "".join(sse(n, d, i) for i, (n, d) in enumerate(STREAM, 1))
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    async with QueueClient("http://q", transport=httpx.MockTransport(answer)) as client:
        assert await client.chat("Hello") == "Hi"
        assert seen == ["POST /api/requests", "GET /api/requests/r1/events"]
        with pytest.raises(InvalidRequest, match="max_tokens"):
            await client.open("Hello", max_tokens=0)


async def test_a_broken_one_round_trip_resumes_with_last_event_id() -> None:
    asked: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        head = {"content-type": "text/event-stream"}
        if request.method == "POST":
            body = sse("accepted", ACCEPTED) + sse(*STREAM[0], 1) + sse(*STREAM[1], 2)
            return httpx.Response(200, stream=Broken(body.encode()), headers=head)
        asked.append(request.headers.get("Last-Event-ID"))
        rest = "".join(sse(n, d, i) for i, (n, d) in enumerate(STREAM, 1) if i > 2)
        return httpx.Response(200, text=rest, headers=head)

    async with QueueClient("http://q", transport=httpx.MockTransport(answer)) as client:
        events: list[Event] = []
        reply = await follow(client, on_event=events.append, prompt="Hello")
    assert asked == ["2"] and reply.text == "Hi"
    assert [type(e) for e in events] == [Queued, Started, Delta, Done]


async def test_a_stream_that_does_not_start_with_accepted_is_refused() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        text = sse(*STREAM[0], 1)
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    async with QueueClient("http://q", transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(RequestFailed, match="accepted"):
            await client.open("Hello")


# -- follow()'s cancel rule --------------------------------------------------------------------


class Scripted:
    """A stand-in client for `follow`: plays `events`, waits at `gate` before each delta."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.gate = anyio.Event()
        self.cancelled: list[str] = []

    async def open(self, **request: Any) -> Opened:
        return Opened(Submitted("r9", 1, 1, None, "m"), self.play())

    async def play(self) -> AsyncGenerator[Event, None]:
        for event in self.events:
            if isinstance(event, Delta):
                await self.gate.wait()
            yield event

    async def cancel(self, request_id: str) -> bool:
        self.cancelled.append(request_id)
        return True


async def test_follow_ends_by_the_terminal_event() -> None:
    started = Started("m", "u", 0.0)
    with pytest.raises(RequestCancelled, match="admin"):
        await follow(Scripted([started, Cancelled("admin")]), prompt="x")
    with pytest.raises(RequestFailed) as cut:
        await follow(Scripted([started]), prompt="x")  # no terminal event
    assert cut.value.code == "internal_error"
    ok = Scripted([started, Delta(content="ok"), Done("stop")])
    ok.gate.set()
    assert (await follow(ok, prompt="x")).text == "ok"
    assert ok.cancelled == []  # it ended by itself: nothing to cancel


async def test_cancelling_the_following_task_cancels_on_the_server_before_it_ends() -> None:
    client = Scripted([Started("m", "u", 0.0), Delta(content="never"), Done("stop")])
    accepted = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await follow(client, on_accepted=lambda _: accepted.set(), prompt="x")

        tg.start_soon(run)
        await accepted.wait()
        tg.cancel_scope.cancel()
    assert client.cancelled == ["r9"]  # sent before the task ended (rule 2)
