"""`POST /api/v1/chat`: LM Studio's native chat, with its named events and load progress.

    >>> to_messages({"input": "Hi", "system_prompt": "Be kind"})
    [{'role': 'system', 'content': 'Be kind'}, {'role': 'user', 'content': 'Hi'}]

Streamed, the events come in LM Studio's order: chat.start, model_load.start/progress/end
(only when the model was not loaded; progress 0..1), prompt_processing.start/progress/end,
reasoning.start/delta/end (a reasoning model), message.start/delta/end, and chat.end with the
whole result. A failed load sends `error`, then chat.end with an empty output. Like LM
Studio's, this endpoint takes one input message (no assistant turns); the practice faults
that count tokens apply to the OpenAI endpoints only.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from tlc_widgets.practice import catalog, wire
from tlc_widgets.practice.answer import Part, plan_answer
from tlc_widgets.practice.app_server import PracticeServer
from tlc_widgets.practice.lifecycle import LoadFailed, Loading
from tlc_widgets.practice.requests import BadRequest, ChatRequest, number, parse_chat_request
from tlc_widgets.practice.settings import ModelSpec
from tlc_widgets.practice.streams import LeasedStream, Pace, unless_disconnected
from tlc_widgets.practice.text import count_prompt_tokens, message_text

__all__ = ["add_native_chat", "to_messages"]

_PROMPT_STEPS = 4  # prompt_processing.progress events per answer


def to_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat messages this native body stands for."""
    raw = body.get("input")
    if isinstance(raw, list):
        raw = " ".join(
            message_text([p]) or str(p.get("content", "")) for p in raw if isinstance(p, dict)
        )
    if not isinstance(raw, str) or not raw:
        raise BadRequest("'input' is required: the message to send to the model.")
    system = body.get("system_prompt")
    head = [{"role": "system", "content": system}] if isinstance(system, str) else []
    return [*head, {"role": "user", "content": raw}]


def _event(name: str, **fields: Any) -> bytes:
    return wire.sse({"type": name, **fields}, event=name)


class _NativeChat:
    """One native chat answer, streamed as events or returned whole."""

    def __init__(self, server: PracticeServer, spec: ModelSpec, chat: ChatRequest) -> None:
        self.server, self.spec, self.chat = server, spec, chat
        self.output: dict[bool, list[str]] = {True: [], False: []}
        self.first_token_s: float | None = None
        self.started = time.monotonic()

    def result(self) -> dict[str, Any]:
        output = []
        if self.output[True]:
            output.append({"type": "reasoning", "content": "".join(self.output[True])})
        if self.output[False]:
            output.append({"type": "message", "content": "".join(self.output[False])})
        tokens = len(self.output[True]) + len(self.output[False])
        took = time.monotonic() - self.started
        return {
            "model_instance_id": self.spec.id,
            "output": output,
            "stats": {
                "input_tokens": count_prompt_tokens(self.chat.messages),
                "total_output_tokens": tokens,
                "reasoning_output_tokens": len(self.output[True]),
                "tokens_per_second": round(tokens / took, 2) if took > 0 else 0.0,
                "time_to_first_token_seconds": round(self.first_token_s or 0.0, 3),
            },
            "response_id": "resp_" + wire.new_completion_id(""),
        }

    async def _load(self) -> AsyncIterator[bytes]:
        """model_load.* events while the model loads (or joins a load under way)."""
        life, model = self.server.lifecycle, self.spec.id
        loading, new = life.begin(model)
        yield _event("model_load.start", model_instance_id=model)
        loading.waiting += 1
        try:
            async for event in self._watch(loading, new):
                yield event
        finally:
            loading.waiting -= 1
        if loading.error is not None:
            raise LoadFailed(loading.error.code, str(loading.error))
        took = life.instances[model].load_time_s
        yield _event("model_load.end", model_instance_id=model, load_time_seconds=round(took, 3))

    async def _watch(self, loading: Loading, new: bool) -> AsyncIterator[bytes]:
        """Run the load if it is ours, and report its progress until it ends."""
        life, model = self.server.lifecycle, self.spec.id
        async with anyio.create_task_group() as tg:
            if new:
                ttl = self.chat.ttl if self.chat.ttl is not None else life.default_ttl_s

                async def run() -> None:
                    with anyio.CancelScope(shield=True):  # others may wait for this load
                        await life.run(
                            loading,
                            self.server.load_time,
                            self.server.faults.load_failure,
                            None,
                            None,
                            ttl,
                        )

                tg.start_soon(run)
            async for progress in loading.watch():
                if progress > 0:
                    yield _event("model_load.progress", model_instance_id=model, progress=progress)
            await loading.done.wait()

    def _add(self, part: Part) -> None:
        if self.first_token_s is None:
            self.first_token_s = time.monotonic() - self.started
        self.output[part.reasoning].append(part.text)

    def _answer(self) -> AsyncGenerator[Part, None]:
        pace = self.server.pace(self.spec)
        plan = plan_answer(self.server.model, self.chat, self.spec.reasoning)
        return Pace(0.0, pace.tokens_per_second).tokens(plan.parts)

    async def events(self) -> AsyncIterator[bytes]:
        """The whole event stream; exactly one chat.end."""
        server, model = self.server, self.spec.id
        yield _event("chat.start", model_instance_id=model)
        try:
            if not server.lifecycle.is_loaded(model):
                async for event in self._load():
                    yield event
        except LoadFailed as exc:
            yield _event("error", **catalog.native_error("internal_error", str(exc), exc.code))
            yield _event("chat.end", result=self.result())
            return
        server.lifecycle.touch(model, self.chat.ttl)
        lease = await server.slots.acquire(model)
        try:
            # The first-token latency is the prompt's processing, reported in steps.
            yield _event("prompt_processing.start")
            latency = server.pace(self.spec).latency
            for step in range(1, _PROMPT_STEPS + 1):
                await anyio.sleep(latency / _PROMPT_STEPS)
                yield _event("prompt_processing.progress", progress=step / _PROMPT_STEPS)
            yield _event("prompt_processing.end")
            kind: bool | None = None
            async with aclosing(self._answer()) as parts:
                async for part in parts:
                    if kind is not part.reasoning:
                        if kind is not None:
                            yield _event("reasoning.end" if kind else "message.end")
                        kind = part.reasoning
                        yield _event("reasoning.start" if kind else "message.start")
                    self._add(part)
                    name = "reasoning.delta" if part.reasoning else "message.delta"
                    yield _event(name, content=part.text)
            if kind is not None:
                yield _event("reasoning.end" if kind else "message.end")
            lease.ended_by_server = True
            yield _event("chat.end", result=self.result())
        finally:
            lease.release()

    async def whole(self) -> Response:
        """The non-streaming answer: LM Studio's result object, or its error."""
        server, model = self.server, self.spec.id
        if not server.lifecycle.is_loaded(model):
            try:
                await server.jit_load(model, self.chat.ttl)
            except LoadFailed as exc:
                error = catalog.native_error("internal_error", str(exc), exc.code)
                return JSONResponse(error, status_code=500)
        server.lifecycle.touch(model, self.chat.ttl)
        lease = await server.slots.acquire(model)
        try:
            await anyio.sleep(server.pace(self.spec).latency)
            async with aclosing(self._answer()) as parts:
                async for part in parts:
                    self._add(part)
            lease.ended_by_server = True
            return JSONResponse(self.result())
        finally:
            lease.release()


def add_native_chat(app: FastAPI, server: PracticeServer) -> None:
    """`POST /api/v1/chat`, streamed or not."""

    @app.post("/api/v1/chat")
    async def native_chat(request: Request) -> Response:
        try:
            body = await server.read_json(request)
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                raise BadRequest("'model' is required: the key of the model to chat with.")
            chat = parse_chat_request(
                {
                    "model": body["model"],
                    "messages": to_messages(body),
                    "temperature": number(body, "temperature", float),
                    "max_tokens": number(body, "max_output_tokens", int),
                    "ttl": number(body, "ttl", int),
                },
                server.default_chat,
            )
        except ClientDisconnect:
            return Response(status_code=499)
        except BadRequest as exc:
            error = catalog.native_error("invalid_request", str(exc))
            return JSONResponse(error, status_code=400)
        spec = server.spec_for(chat.model, "llm")
        if isinstance(spec, Response):
            return spec
        answer = _NativeChat(server, spec, chat)
        if body.get("stream"):
            return LeasedStream(answer.events(), None)
        result = await unless_disconnected(request, answer.whole)
        return result if result is not None else Response(status_code=499)
