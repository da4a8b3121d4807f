"""The OpenAI-compatible front door: `/v1/models` and `/v1/chat/completions`.

    >>> client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    >>> client.chat.completions.create(model="practice-fast", messages=[...], stream=True)

An adapter over the same records as the native API, not a second queue: the body becomes a
`RequestBody`, the request is queued and scheduled like every other, and the record's state
is turned back into OpenAI chunks. While a streaming request waits, its position travels in
SSE comment lines (`: queued position=3 …`), which OpenAI clients ignore. A client that goes
away is cancelled at once: nobody can reconnect to an OpenAI stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from ..protocol import ERRORS, Done, ErrorCode, ErrorEvent, Message, RequestBody, Status
from .api_error import ApiError
from .auth import identity_of
from .records import Record
from .service import QueueService
from .streams import sse_response

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["openai"])


class ChatCompletionBody(BaseModel):
    """The part of OpenAI's body we act on; other fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    messages: list[Message] = Field(min_length=1)
    model: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, max_length=64)


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    queue: QueueService = request.app.state.queue
    data = [{"id": m, "object": "model", "owned_by": "tlc"} for m in queue.catalog.models()]
    return {"object": "list", "data": data}


_COMPLETION: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A `chat.completion` object, or (`stream: true`) its chunks as SSE.",
        "content": {
            "application/json": {"schema": {"type": "object", "title": "ChatCompletion"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }
}


@router.post("/chat/completions", response_model=None, responses=_COMPLETION)
async def chat_completions(body: ChatCompletionBody, request: Request) -> Response:
    queue: QueueService = request.app.state.queue
    try:
        native = RequestBody(
            messages=body.messages,
            model=body.model,
            temperature=body.temperature,
            max_tokens=body.max_tokens or body.max_completion_tokens,
        )
    except ValidationError as exc:  # OpenAI's body admits what ours does not: a 422, not a 500
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(ErrorCode.INVALID_REQUEST, f"{where}: {first['msg']}", param=where) from exc
    identity = identity_of(request)  # with keys, the key says who; `user` is ignored
    record = await queue.submit(native, user=identity.owner(body.user), role=identity.role)
    if body.stream:
        usage = bool((body.stream_options or {}).get("include_usage"))
        return sse_response(_chunks(queue, record, include_usage=usage))
    return await _whole(queue, record, request)


# ---------------------------------------------------------------------------- streaming


def _data(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


async def _chunks(queue: QueueService, record: Record, include_usage: bool) -> AsyncIterator[bytes]:
    head = {
        "id": f"chatcmpl-{record.id}",
        "object": "chat.completion.chunk",
        "created": int(record.created_wall),
        "model": record.model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _data({**head, "choices": [choice]})

    seen_frames, sent_content, sent_reasoning = 0, 0, 0
    announced, last_queued = False, None
    try:
        while True:
            out: list[bytes] = []
            if record.status is Status.QUEUED and record.last_queued != last_queued:
                q = last_queued = record.last_queued
                assert q is not None
                out.append(
                    f": queued position={q.position} waiting={q.waiting} "
                    f"eta_s={q.eta_s}\n\n".encode()
                )
            if record.started is not None and not announced:
                announced = True
                out.append(chunk({"role": "assistant", "content": ""}))
            for text in record.reasoning[sent_reasoning:]:
                out.append(chunk({"reasoning_content": text}))
            sent_reasoning = len(record.reasoning)
            for text in record.content[sent_content:]:
                out.append(chunk({"content": text}))
            sent_content = len(record.content)
            if record.status.terminal:
                out.extend(_ending(record, chunk, head, include_usage))
                yield b"".join(out)
                return
            if out:
                yield b"".join(out)
            seen_frames = record.last_id
            await record.changed()
            if record.last_id == seen_frames:
                yield b": ping\n\n"  # woken by the keep-alive nudge, nothing new
    finally:
        # The client went away (or we are shutting down): free its place or slot now.
        if not record.status.terminal:
            queue.cancel(record, by="disconnect")


def _ending(record: Record, chunk: Any, head: dict[str, Any], include_usage: bool) -> list[bytes]:
    outcome = record.outcome
    if isinstance(outcome, Done):
        out = [chunk({}, outcome.finish_reason)]
        if include_usage:
            out.append(_data({**head, "choices": [], "usage": _usage(record)}))
        return [*out, b"data: [DONE]\n\n"]
    # An error mid-stream is a JSON `data:` with an `error` key: OpenAI clients raise on it.
    return [_data(_error_of(record))]


def _usage(record: Record) -> dict[str, int]:
    if record.usage:
        return record.usage
    prompt = sum(len(str(m.get("content", "")).split()) for m in record.messages)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": record.tokens,
        "total_tokens": prompt + record.tokens,
    }


def _error_of(record: Record) -> dict[str, Any]:
    outcome = record.outcome
    if isinstance(outcome, ErrorEvent):
        kind = (
            "server_error" if ERRORS[ErrorCode(outcome.code)][0] >= 500 else "invalid_request_error"
        )
        return {
            "error": {"code": outcome.code, "message": outcome.message, "type": kind, "param": None}
        }
    by = getattr(outcome, "by", "someone")
    return {
        "error": {
            "code": "cancelled",
            "message": f"The request was cancelled ({by}).",
            "type": "invalid_request_error",
            "param": None,
        }
    }


# ---------------------------------------------------------------------------- whole reply


async def _whole(queue: QueueService, record: Record, request: Request) -> Response:
    async with anyio.create_task_group() as tg:

        async def cancel_on_disconnect() -> None:
            # The body is read, so the next ASGI message can only be the disconnect.
            while (await request.receive())["type"] != "http.disconnect":
                pass
            queue.cancel(record, by="disconnect")

        tg.start_soon(cancel_on_disconnect)
        while not record.status.terminal:
            await record.wait_beyond(record.last_id)
        tg.cancel_scope.cancel()

    outcome = record.outcome
    if isinstance(outcome, Done):
        message: dict[str, Any] = {"role": "assistant", "content": record.text}
        if record.reasoning:
            message["reasoning_content"] = "".join(record.reasoning)
        return JSONResponse(
            {
                "id": f"chatcmpl-{record.id}",
                "object": "chat.completion",
                "created": int(record.created_wall or time.time()),
                "model": record.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": outcome.finish_reason,
                    }
                ],
                "usage": _usage(record),
            }
        )
    error = _error_of(record)
    status = (
        ERRORS[ErrorCode(error["error"]["code"])][0] if isinstance(outcome, ErrorEvent) else 409
    )
    return JSONResponse(error, status_code=status)
