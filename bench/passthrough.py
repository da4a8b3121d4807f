"""A bare pass-through proxy: FastAPI + httpx, no queue. The floor any proxy is measured from.

    $ PASSTHROUGH_UPSTREAM=http://127.0.0.1:1234/v1 python -m uvicorn bench.passthrough:app

It forwards `POST /v1/chat/completions` and streams the upstream's bytes back as they come,
untouched: no parsing, no records, no slots.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

UPSTREAM = os.environ.get("PASSTHROUGH_UPSTREAM", "http://127.0.0.1:1234/v1").rstrip("/")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with httpx.AsyncClient(timeout=None) as client:
        app.state.client = client
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/v1/models")
async def models(request: Request) -> dict[str, object]:
    return (await request.app.state.client.get(UPSTREAM + "/models")).json()  # type: ignore[no-any-return]


@app.post("/v1/chat/completions")
async def chat(request: Request) -> StreamingResponse:
    client: httpx.AsyncClient = request.app.state.client
    upstream = await client.send(
        client.build_request(
            "POST",
            UPSTREAM + "/chat/completions",
            content=await request.body(),
            headers={"content-type": "application/json"},
        ),
        stream=True,
    )
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type"),
        background=BackgroundTask(upstream.aclose),
    )
