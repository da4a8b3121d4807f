"""Chat clients on raw asyncio streams: one per connection, noting when each event arrives.

    >>> client = Client(0, "ada", "Tell me about the White Rabbit")
    >>> asyncio.run(run_client(port, client, max_tokens=32))            # doctest: +SKIP
    >>> client.ending, "".join(client.text)                            # doctest: +SKIP

A thousand clients in one process (uvloop) on HTTP/1.1 by hand: httpx costs several times
more CPU per stream, and the clients share the machine's cores with the servers measured.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from bench.harness import PRACTICE_MODEL

__all__ = ["FAST_MODEL", "Client", "run_client", "run_openai_client"]

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
