"""One OpenAI request through the queue: admitted (or a retry re-attached), then answered
as a stream of the upstream's own frames, or as one whole reply.

    >>> usage_of(Record.new(user="ada", model="m", messages=[{"content": "two words"}], params={}))
    {'prompt_tokens': 2, 'completion_tokens': 0, 'total_tokens': 2}
    >>> return await serve(service, caller, request, native, call, body)   # doctest: +SKIP

A stream forwards the frames the upstream wrote, as it wrote them (`record.wire`): nothing
is re-encoded per token, and every field it sent — tool-call pieces, log-probabilities, the
upstream's id, `system_fingerprint` — reaches the client. The queue's own additions are SSE
comments (`: queued position=3 …` while waiting, `: ping` when idle), which OpenAI clients
ignore. A streaming client that goes away is cancelled at once (nobody can resume an
OpenAI stream). A whole-reply client that goes away leaves the request for
`disconnect_grace_s`, so the SDK's retry after its read timeout finds it (`retry.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from ...protocol import Cancelled, Done, ErrorCode, ErrorEvent, RequestBody, Status
from ...sse import KEEPALIVE, comment, data_frame, frame
from ..auth import Identity
from ..records import Call, Record
from ..service import QueueService
from ..streams import open_stream, sse_response
from .errors import NO_RETRY, cancelled_error, openai_error
from .retry import retries_of

__all__ = ["Whole", "serve"]

#: Builds a whole reply from a finished record (per endpoint).
Whole = Callable[[Record], dict[str, Any]]


async def serve(
    service: QueueService,
    caller: Identity,
    request: Request,
    native: RequestBody,
    call: Call,
    user: str | None,
    whole: Whole,
    include_usage: bool = False,
) -> Response:
    owner = caller.owner(user)
    retries = retries_of(service)
    key = retries.key_of(request.headers, owner, await request.body())
    record = retries.find(service, key) if key and retries.is_retry(request.headers) else None
    if record is not None and record.wire is None and record.chunks is None:
        record = None  # its answer was delivered and let go: this is a new request
    if record is None:
        record = await service.submit(native, user=owner, role=caller.role, call=call)
        if key:
            retries.remember(key, record)
    if call.wire:
        return sse_response(_frames(service, record, include_usage))
    return await _whole(service, record, request, whole)


# ---------------------------------------------------------------------------- a stream


async def _frames(
    service: QueueService, record: Record, include_usage: bool
) -> AsyncIterator[bytes]:
    wire = record.wire
    assert wire is not None
    sent, last_queued = 0, None
    try:
        while True:
            out: list[bytes] = []
            if record.status is Status.QUEUED and record.last_queued is not last_queued:
                q = last_queued = record.last_queued
                assert q is not None
                out.append(
                    comment(f"queued position={q.position} waiting={q.waiting} eta_s={q.eta_s}")
                )
            if len(wire) > sent:
                out.extend(wire[sent:])
                sent = len(wire)
            if record.status.terminal:
                out.extend(_ending(record, include_usage))
                yield b"".join(out)
                record.wire = None  # delivered: the record stays, its frames need not
                return
            if out:
                yield b"".join(out)
            seen = record.last_id
            await record.changed()
            if record.last_id == seen and len(wire) == sent and record.last_queued is last_queued:
                yield KEEPALIVE  # woken by the keep-alive nudge, nothing new
    finally:
        # The client went away (or we are shutting down): free its place or slot now.
        if not record.status.terminal:
            service.cancel(record, by="disconnect")


def _ending(record: Record, include_usage: bool) -> list[bytes]:
    outcome = record.outcome
    responses = record.call.endpoint == "responses"
    if isinstance(outcome, Done):
        if responses:
            return []  # `response.completed` was the upstream's own last event
        out = []
        if include_usage:
            out.append(record.usage_wire or data_frame(_usage_chunk(record)))
        return [*out, data_frame("[DONE]")]
    # An error mid-stream is a JSON `data:` with an `error` key: OpenAI clients raise on it.
    _, body, _ = _failure(record)
    if responses:
        return [frame("error", {"type": "error", **body["error"]})]
    return [data_frame(body)]


def _usage_chunk(record: Record) -> dict[str, Any]:
    meta = record.meta or {}
    head: dict[str, Any] = {k: meta[k] for k in ("id", "object", "created", "model") if k in meta}
    return {**head, "choices": [], "usage": usage_of(record)}


def usage_of(record: Record) -> dict[str, Any]:
    """The upstream's usage, or (if it gave none) our estimate in the same shape."""
    if record.usage:
        return record.usage
    prompt = sum(len(str(m.get("content", "")).split()) for m in record.messages)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": record.tokens,
        "total_tokens": prompt + record.tokens,
    }


# ---------------------------------------------------------------------------- whole


async def _whole(service: QueueService, record: Record, request: Request, whole: Whole) -> Response:
    close = open_stream(service, record.user, record)  # a listener: a retry gets the grace
    try:
        return await _wait_whole(service, record, request, whole)
    finally:
        close()


async def _wait_whole(
    service: QueueService, record: Record, request: Request, whole: Whole
) -> Response:
    async with anyio.create_task_group() as tg:

        async def watch_disconnect() -> None:
            # The body is read, so the next ASGI message can only be the disconnect. The
            # request is not cancelled here: `listening` gives a retry the grace period.
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(watch_disconnect)
        while not record.status.terminal:
            await record.wait_beyond(record.last_id)
        tg.cancel_scope.cancel()
    if not record.status.terminal:
        return Response(status_code=499)  # nobody is listening any more
    if isinstance(record.outcome, Done):
        answer = JSONResponse(whole(record))
        record.chunks = None  # delivered: the record stays, its chunks need not
        return answer
    status, body, headers = _failure(record)
    return JSONResponse(body, status_code=status, headers=headers)


def _failure(record: Record) -> tuple[int, dict[str, Any], dict[str, str]]:
    """How an ended record that did not finish well is answered."""
    outcome = record.outcome
    if isinstance(outcome, ErrorEvent):
        status, body, headers = openai_error(ErrorCode(outcome.code))
        body["error"]["message"] = outcome.message
        return status, body, headers
    by = outcome.by if isinstance(outcome, Cancelled) else "someone"
    if by == "shutdown":  # the server is stopping: trying again later is right
        status, body, headers = openai_error(ErrorCode.DRAINING)
        return status, body, headers
    return 409, cancelled_error(by), dict(NO_RETRY)
