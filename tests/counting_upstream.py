"""A pass-through upstream that counts the replies in flight at once, for the scale-out tests.

    with practice_server(parallel=64) as practice, counting_upstream(practice.url) as counter:
        ...  # queue servers use counter.url + "/v1" as their upstream (with slots=4)
        assert counter.peak <= 4

The practice model waits its own extra requests in line (its `parallel` semaphore), so its
`peak_active` cannot show an over-sent upstream. This proxy counts every chat request from
the moment it arrives until its reply is over, so `peak` is what the upstream was asked to
run at once. It lists the models without `parallel` (the OpenAI list only), so the queue
servers use their `--slots` for it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tlc_widgets.launch import BackgroundServer

__all__ = ["Counter", "counting_upstream"]


class Counter:
    def __init__(self, url: str = "") -> None:
        self.url = url
        self.now = 0  #: replies in flight
        self.peak = 0  #: most replies in flight at once
        self.started = 0  #: chat requests received
        self.prompts: list[str] = []  #: each request's last message, in the order received

    def enter(self) -> None:
        self.now += 1
        self.started += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


@contextmanager
def counting_upstream(practice_url: str) -> Iterator[Counter]:
    counter = Counter()
    client = httpx.AsyncClient(base_url=practice_url, timeout=60)  # used on the server's loop

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    async def models(request: Request) -> Response:
        r = await client.get("/v1/models")
        return Response(r.content, r.status_code, media_type="application/json")

    async def no_native_list(request: Request) -> Response:
        return Response(status_code=404)

    async def chat(request: Request) -> Response:
        body = await request.body()
        counter.enter()
        counter.prompts.append(str(json.loads(body)["messages"][-1]["content"]))
        left = False

        def leave() -> None:
            nonlocal left
            if not left:
                left = True
                counter.leave()

        try:
            req = client.build_request(
                "POST",
                "/v1/chat/completions",
                content=body,
                headers={"content-type": "application/json"},
            )
            upstream = await client.send(req, stream=True)
        except BaseException:
            leave()
            raise

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    if b"[DONE]" in chunk:
                        leave()  # over before the queue can read its end and free the slot
                    yield chunk
            finally:
                leave()
                await upstream.aclose()

        media = upstream.headers.get("content-type", "text/event-stream")
        return StreamingResponse(relay(), upstream.status_code, media_type=media)

    routes = [
        Route("/api/v1/models", no_native_list),
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ]
    with BackgroundServer(
        Starlette(routes=routes, lifespan=lifespan), timeout_graceful_shutdown=1
    ) as server:
        counter.url = server.url
        yield counter
