"""A minimal OpenAI-compatible upstream that streams as many tokens as asked, as fast as asked.

    $ python -m uvicorn bench.fast_upstream:app --port 1234
    $ FAST_UPSTREAM_TPS=1000 python -m uvicorn bench.fast_upstream:app   # paced: 1 ms apart
    $ FAST_UPSTREAM_TOKEN_CHARS=200 python -m uvicorn bench.fast_upstream:app  # big tokens

The practice model ends a reply at a natural length (~30–180 tokens), so a reply's fixed costs
hide the cost of relaying one token. This upstream sends exactly `max_tokens` chunks of one
word each (LM Studio's chunk shape), with no delay, or `FAST_UPSTREAM_TPS` tokens per second
per stream. Each token is `FAST_UPSTREAM_TOKEN_CHARS` characters (5: " word"), so a reply
of `max_tokens` tokens has exactly `max_tokens × FAST_UPSTREAM_TOKEN_CHARS` characters
(`bench.memory_bounds` asks for 3,960 × 200 = 792,000). It lists one model and has no
slots: the queue server's `--slots` applies.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

MODEL = "fast"
TPS = float(os.environ.get("FAST_UPSTREAM_TPS", "0"))
TOKEN_CHARS = max(1, int(os.environ.get("FAST_UPSTREAM_TOKEN_CHARS", "5")))


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fast",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


TOKEN = _chunk({"role": "assistant", "content": (" word" * TOKEN_CHARS)[:TOKEN_CHARS]})


async def _stream(n: int) -> AsyncIterator[bytes]:
    start = time.monotonic()
    for i in range(n):
        yield TOKEN
        if TPS > 0:
            await asyncio.sleep(max(0.0, start + (i + 1) / TPS - time.monotonic()))
        elif i % 32 == 31:
            await asyncio.sleep(0)  # let other streams run
    yield _chunk({}, "length")
    yield b"data: [DONE]\n\n"


async def chat(request: Request) -> StreamingResponse | JSONResponse:
    body = await request.json()
    n = int(body.get("max_tokens") or 16)
    if not body.get("stream"):
        return JSONResponse({"error": {"message": "only stream=true is served here"}}, 400)
    return StreamingResponse(_stream(n), media_type="text/event-stream")


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


app = Starlette(
    routes=[
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ]
)
