"""The practice server: LM Studio's HTTP API in front of the Markov practice model.

    >>> from tlc_widgets.serving import BackgroundServer
    >>> with BackgroundServer(create_app(PracticeSettings(tokens_per_second=0))) as srv:
    ...     httpx.get(srv.url + "/v1/models").json()["data"][0]["id"]   # doctest: +SKIP
    'practice-fast'

A request first waits for a slot of its model (FIFO, before any byte is sent, like LM Studio),
then gets one chunk per token at the model's speed. A client that leaves — while waiting or
while reading — frees its slot at once. The `/practice/*` routes are not LM Studio's: they let
lessons and tests watch the slots and switch faults on and off while the server runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from tlc_widgets.practice import wire
from tlc_widgets.practice.faults import FAIL_MESSAGE, Faults
from tlc_widgets.practice.generator import Generation, Token, count_prompt_tokens, default_model
from tlc_widgets.practice.settings import ModelSpec, PracticeSettings
from tlc_widgets.practice.slots import Lease, Slots

__all__ = ["create_app"]

T = TypeVar("T")
_YIELD_EVERY = 32  # with no delay, still let other streams run this often (in tokens)


class _DroppedOnPurpose(Exception):
    """Raised mid-stream by the drop fault: uvicorn then closes the TCP connection abruptly."""


class _HideDropTraceback(logging.Filter):
    # uvicorn logs every exception that escapes an app, with a traceback; a drop that a student
    # switched on is not a bug of the server, so keep it out of their terminal.
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _DroppedOnPurpose))


class _LeasedStream(StreamingResponse):
    """A StreamingResponse that frees its slot however it ends.

    The body iterator's own `finally` is not enough: if the client leaves before the first
    chunk is pulled, starlette cancels the response before the generator ever started.
    """

    def __init__(self, content: AsyncIterator[bytes], lease: Lease) -> None:
        super().__init__(content, media_type="text/event-stream")
        self.headers["Cache-Control"] = "no-cache"
        self.lease = lease

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.lease.release()


async def _unless_disconnected(request: Request, work: Callable[[], Awaitable[T]]) -> T | None:
    """`await work()`, or None as soon as the client hangs up (`work` is then cancelled)."""
    result: T | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            # The body is already read, so the next ASGI message can only be the disconnect.
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        result = await work()
        tg.cancel_scope.cancel()
    return result


@dataclass(frozen=True)
class _Pace:
    """How fast a model writes: first-token latency, then tokens per second (0: no delay)."""

    latency: float
    tokens_per_second: float

    async def tokens(self, tokens: Iterator[Token]) -> AsyncGenerator[Token, None]:
        await anyio.sleep(self.latency)
        start = anyio.current_time()
        for n, token in enumerate(tokens, start=1):
            yield token
            if self.tokens_per_second > 0:
                # Keep to a schedule counted from the start, so slow sends cannot add up.
                due = start + n / self.tokens_per_second
                await anyio.sleep(max(0.0, due - anyio.current_time()))
            elif n % _YIELD_EVERY == 0:
                # No delay wanted, but one stream must not starve the others.
                await anyio.lowlevel.checkpoint()


class _PracticeServer:
    """Everything one practice app holds: settings, models, slots and the current faults."""

    def __init__(self, settings: PracticeSettings) -> None:
        self.settings = settings
        self.specs = {s.id: s for s in settings.offered_models()}
        self.model = default_model()
        self.slots = Slots(self.specs, settings.parallel)
        self.faults = Faults.from_settings(settings)

    def pace(self, spec: ModelSpec) -> _Pace:
        """The model's own speed, unless the settings override it for every model."""
        latency, speed = self.settings.first_token_latency_s, self.settings.tokens_per_second
        return _Pace(
            spec.first_token_latency_s if latency is None else latency,
            spec.tokens_per_second if speed is None else speed,
        )

    async def chat(self, request: Request) -> Response:
        try:
            raw = await request.body()
        except ClientDisconnect:
            # The client left before its body arrived (a request cancelled as it started).
            return Response(status_code=499)
        try:
            body = json.loads(raw)
            chat = wire.parse_chat_request(body, default_model=next(iter(self.specs), ""))
        except ValueError as exc:  # BadRequest and JSONDecodeError are both ValueErrors
            message = str(exc) if isinstance(exc, wire.BadRequest) else f"Invalid JSON: {exc}"
            return JSONResponse(wire.bad_request(message), status_code=400)
        faults = self.faults  # a request keeps the faults it arrived with
        if faults.no_models_loaded:
            return JSONResponse(wire.no_models_loaded(), status_code=404)
        spec = self.specs.get(chat.model)
        if spec is None:
            return JSONResponse(wire.model_not_found(chat.model, self.specs), status_code=400)
        lease = await _unless_disconnected(request, lambda: self.slots.acquire(spec.id))
        if lease is None:
            return Response(status_code=499)  # nobody is listening any more
        reply = wire.Reply(wire.new_completion_id(), int(time.time()), spec.id)
        if chat.stream:
            return _LeasedStream(self.stream(chat, spec, faults, reply, lease), lease)
        try:
            answer = await _unless_disconnected(
                request, lambda: self.complete(chat, spec, faults, reply)
            )
            lease.ended_by_server = answer is not None
            return answer or Response(status_code=499)
        finally:
            lease.release()

    def _generate(self, chat: wire.ChatRequest, spec: ModelSpec) -> Generation:
        return self.model.generate(
            chat.messages,
            seed=chat.seed,
            temperature=chat.temperature,
            max_tokens=chat.max_tokens,
            reasoning=spec.reasoning,
        )

    async def stream(
        self,
        chat: wire.ChatRequest,
        spec: ModelSpec,
        faults: Faults,
        reply: wire.Reply,
        lease: Lease,
    ) -> AsyncIterator[bytes]:
        fault = faults.first_stream_fault()
        generation = self._generate(chat, spec)
        sent = 0
        async with aclosing(self.pace(spec).tokens(generation)) as tokens:
            async for token in tokens:
                if fault is not None and sent == fault[1]:
                    break
                yield wire.sse(wire.delta_chunk(reply, token.text, token.reasoning))
                sent += 1
        if fault is not None and sent == fault[1]:
            name = fault[0]
            if name == "stall_after_tokens":
                await anyio.sleep_forever()  # until the client gives up and starlette cancels us
            lease.ended_by_server = True
            if name == "fail_after_tokens":
                yield wire.sse(wire.server_error(FAIL_MESSAGE))
            elif name == "drop_after_tokens":
                raise _DroppedOnPurpose(f"practice fault: {name}={sent}")
            return  # fail and truncate: end the body cleanly, without [DONE]
        yield wire.sse(wire.final_chunk(reply, generation.finish_reason or "stop"))
        if chat.include_usage:
            prompt = count_prompt_tokens(chat.messages)
            yield wire.sse(wire.usage_chunk(reply, prompt, sent))
        lease.ended_by_server = True
        yield wire.DONE

    async def complete(
        self, chat: wire.ChatRequest, spec: ModelSpec, faults: Faults, reply: wire.Reply
    ) -> Response:
        fail = faults.fail_after_tokens
        generation = self._generate(chat, spec)
        parts: dict[bool, list[str]] = {True: [], False: []}  # reasoning? -> token texts
        count = 0
        async with aclosing(self.pace(spec).tokens(generation)) as tokens:
            async for token in tokens:
                if count == fail:
                    break
                parts[token.reasoning].append(token.text)
                count += 1
        if count == fail:
            return JSONResponse(wire.server_error(FAIL_MESSAGE), status_code=500)
        body = wire.completion(
            reply,
            content="".join(parts[False]),
            reasoning="".join(parts[True]) if spec.reasoning else None,
            finish_reason=generation.finish_reason or "stop",
            prompt_tokens=count_prompt_tokens(chat.messages),
            completion_tokens=count,
        )
        return JSONResponse(body)


def create_app(settings: PracticeSettings | None = None) -> FastAPI:
    """The practice server as an ASGI app; run it with uvicorn or `BackgroundServer`.

    >>> app = create_app(PracticeSettings(parallel=2, models=["practice-fast"]))
    """
    server = _PracticeServer(settings or PracticeSettings())
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDropTraceback) for f in logger.filters):
        logger.addFilter(_HideDropTraceback())
    app = FastAPI(
        title="tlc practice model",
        description="LM Studio's API in front of a practice model (statistical text "
        "generator, not an LLM).",
    )
    app.state.practice = server  # for tests and lessons that want to look inside

    def loaded() -> bool:
        return not server.faults.no_models_loaded

    @app.get("/v1/models")
    async def models_openai() -> dict[str, Any]:
        return wire.models_openai(list(server.specs.values()), loaded())

    @app.get("/api/v0/models")
    async def models_api_v0() -> dict[str, Any]:
        return wire.models_api_v0(list(server.specs.values()), loaded())

    @app.get("/api/v1/models")
    async def models_api_v1() -> dict[str, Any]:
        specs = list(server.specs.values())
        return wire.models_api_v1(specs, loaded(), server.settings.parallel)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await server.chat(request)

    @app.get("/practice/stats")
    async def practice_stats() -> dict[str, Any]:
        """Practice only: slot use for the whole server and per model."""
        return server.slots.stats.as_dict()

    @app.post("/practice/stats/reset")
    async def practice_stats_reset() -> dict[str, Any]:
        """Practice only: forget served/disconnect/request counts and the peak."""
        server.slots.stats.reset()
        return server.slots.stats.as_dict()

    @app.get("/practice/faults")
    async def practice_faults() -> dict[str, Any]:
        """Practice only: which faults are switched on."""
        return server.faults.as_dict()

    @app.put("/practice/faults")
    async def practice_faults_put(request: Request) -> Response:
        """Practice only: switch faults on or off; fields not sent keep their value."""
        try:
            changes = json.loads(await request.body())
            if not isinstance(changes, dict):
                raise ValueError("send a JSON object of fault fields")
            server.faults = server.faults.updated(changes)
        except ValueError as exc:
            return JSONResponse(wire.bad_request(str(exc)), status_code=400)
        return JSONResponse(server.faults.as_dict())

    return app
