"""An upstream that closes an idle keep-alive connection as the queue reuses it (LM Studio's
Node server and uvicorn close idle ones after 5 s): the request is sent again on a fresh
connection, and the student never sees it.

The upstream here is a minimal HTTP/1.1 server on a loopback port that answers exactly one
request per connection and closes the connection, silently, when a second one arrives on
it — the keep-alive race every time, instead of once in a while.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from .conftest import collect, queue_server

pytestmark = pytest.mark.anyio

MODELS = {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "t"}]}
CHUNKS = [
    {"id": "c1", "object": "chat.completion.chunk", "model": "fake-model",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"},
                  "finish_reason": None}]},
    {"id": "c1", "object": "chat.completion.chunk", "model": "fake-model",
     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
]  # fmt: skip


class OneRequestPerConnection:
    """Answers the first request on each connection; closes on the second, unanswered."""

    def __init__(self) -> None:
        self.answered = 0
        self.dropped = 0  #: requests met with a silent close (what a stale connection gets)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = False
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    (int(v) for k, _, v in (h.partition(":") for h in lines[1:])
                     if k.lower() == "content-length"), 0,
                )  # fmt: skip
                await reader.readexactly(length)
                if served:
                    self.dropped += 1
                    return  # closed without a word: the keep-alive race
                served = True
                method, path, _ = lines[0].split(" ", 2)
                writer.write(self.answer(method, path))
                await writer.drain()
                self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    def answer(self, method: str, path: str) -> bytes:
        if method == "GET" and path == "/v1/models":
            body, kind = json.dumps(MODELS).encode(), "application/json"
        elif method == "POST" and path == "/v1/chat/completions":
            frames = [f"data: {json.dumps(c)}\n\n" for c in CHUNKS] + ["data: [DONE]\n\n"]
            body, kind = "".join(frames).encode(), "text/event-stream"
        else:
            return b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
        head = f"HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {len(body)}\r\n"
        return head.encode() + b"connection: keep-alive\r\n\r\n" + body


@contextmanager
def serving(upstream: OneRequestPerConnection) -> Iterator[int]:
    """The upstream on its own thread and loop (the queue's start-up blocks this one)."""
    ready: queue.Queue[tuple[asyncio.AbstractEventLoop, asyncio.Event, int]] = queue.Queue()

    async def main() -> None:
        stop = asyncio.Event()
        server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
        ready.put((asyncio.get_running_loop(), stop, server.sockets[0].getsockname()[1]))
        async with server:
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    loop, stop, port = ready.get(timeout=10)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


async def test_a_request_on_a_connection_the_upstream_just_closed_is_sent_again() -> None:
    upstream = OneRequestPerConnection()
    with serving(upstream) as port, queue_server(f"http://127.0.0.1:{port}/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url, timeout=30) as client:
            for n in range(4):
                r = await client.post(
                    "/api/requests", json={"prompt": f"hi {n}", "model": "fake-model"}
                )
                assert r.status_code == 202, r.text
                events = await collect(client, r.json()["id"])
                assert events[-1][1] == "done", events
                assert "Hello" in "".join(d.get("content", "") for _, _, d in events)
    # Reused connections met a silent close, and none of it reached the student.
    assert upstream.dropped >= 1
    assert upstream.answered >= 4
