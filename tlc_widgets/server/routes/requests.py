"""`/api/requests`: submit a request, follow its events, read its status, cancel it.

    POST   /api/requests               submit → 202 {id, position, …}, or (Accept:
                                       text/event-stream) the event stream itself
    GET    /api/requests/{id}/events   SSE: queued… started delta… done|error|cancelled
    GET    /api/requests/{id}          status and text so far
    DELETE /api/requests/{id}          cancel

    >>> SSE_ONLY[200]["content"]["text/event-stream"]["schema"]["type"]
    'string'

Another user's id answers 404, exactly like an id that never existed, so ids do not leak.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from starlette.responses import Response

from ...protocol import ACCEPTED, ErrorCode, RequestBody, Status, event_data, event_name
from ...sse import frame
from ..api_error import ApiError
from ..auth import Identity
from ..deps import Caller, Service
from ..limits import parse_last_event_id
from ..records import Record
from ..schemas import CancelAnswer, Outcome, RequestView, SubmitAnswer
from ..service import QueueService
from ..streams import open_stream, record_frames, sse_response

__all__ = ["SSE_ONLY", "describe", "router"]

router = APIRouter(prefix="/api/requests", tags=["requests"])

#: The OpenAPI description of a route that answers with an event stream.
SSE_ONLY: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events (`text/event-stream`).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.post(
    "",
    status_code=202,
    response_model=SubmitAnswer,
    responses={200: SSE_ONLY[200]},
)
async def submit(
    body: RequestBody,
    service: Service,
    caller: Caller,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """Queue a chat request. Follow it at `events`; its first event is `queued`.

    With `Accept: text/event-stream` the answer is the stream itself (one round trip): an
    `accepted` event with this route's JSON, then the request's events."""
    record = await _accept(body, service, caller)
    answer = _answer(record)
    if accept is not None and "text/event-stream" in accept:
        close = open_stream(service, record.user, record)
        return sse_response(_accepted_then_events(service, record, answer), close)
    return JSONResponse(answer.model_dump(), status_code=202)


async def _accept(body: RequestBody, service: QueueService, caller: Identity) -> Record:
    if body.priority > 0 and not caller.may_prioritise:
        raise ApiError(
            ErrorCode.FORBIDDEN,
            "priority: only a teacher or an admin may set a priority above 0.",
            param="priority",
        )
    return await service.submit(body, user=caller.owner(body.user), role=caller.role)


def _answer(record: Record) -> SubmitAnswer:
    accepted = record.last_queued  # the place it was given on arrival
    assert accepted is not None
    # It may have started already (an idle slot); the events say so. This answer describes
    # the acceptance: the place it took in line.
    return SubmitAnswer(
        id=record.id,
        status="queued",
        position=accepted.position,
        waiting=accepted.waiting,
        eta_s=accepted.eta_s,
        model=record.model,
        user=record.user,
        events=f"/api/requests/{record.id}/events",
    )


async def _accepted_then_events(
    service: QueueService, record: Record, answer: SubmitAnswer
) -> AsyncIterator[bytes]:
    yield frame(ACCEPTED, answer.model_dump())  # no `id:`: not part of the event log
    async for chunk in record_frames(service, record, after=0):
        yield chunk


def visible(service: QueueService, caller: Identity, request_id: str) -> Record:
    """The record `caller` may see, or 404 (another's id reads as unknown)."""
    record = service.store.get(request_id)
    if record is None or not caller.may_see(record.user):
        raise ApiError(ErrorCode.NOT_FOUND)
    return record


@router.get("/{request_id}/events", response_class=Response, responses=SSE_ONLY)
async def events(
    request_id: str,
    service: Service,
    caller: Caller,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, le=10**9, description="Like Last-Event-ID.")] = None,
) -> Response:
    """Server-Sent Events of one request, from the start or after `Last-Event-ID`."""
    start = after or 0
    if last_event_id is not None:
        start = parse_last_event_id(last_event_id)
    if service.store.get(request_id) is None and service.dispatcher.replica is not None:
        return await _from_shared_log(service, caller, request_id, start)
    record = visible(service, caller, request_id)
    close = open_stream(service, record.user, record)  # 429 past the caps
    return sse_response(record_frames(service, record, after=start), close)


async def _shared_view(service: QueueService, caller: Identity, request_id: str) -> Any:
    """Another replica's request (`--redis`), rebuilt from its shared log; 404 as always."""
    replica = service.dispatcher.replica
    assert replica is not None
    view = await replica.view(request_id)  # Redis down: the app's 503 store_unavailable
    if view is None or not caller.may_see(view["user"]):
        raise ApiError(ErrorCode.NOT_FOUND)
    return view


async def _from_shared_log(
    service: QueueService, caller: Identity, request_id: str, after: int
) -> Response:
    """Another replica's request (`--redis`): its events from the shared log, the same bytes
    its own replica sends. Its end comes from there too, even if that replica died."""
    replica = service.dispatcher.replica
    assert replica is not None
    user = await replica.owner(request_id)
    if user is None or not caller.may_see(user):
        raise ApiError(ErrorCode.NOT_FOUND)
    close = open_stream(service, user)  # the per-user cap; no disconnect cancel from here
    return sse_response(replica.frames(request_id, after), close)


@router.get("/{request_id}", response_model=RequestView)
async def status(request_id: str, service: Service, caller: Caller) -> RequestView:
    """A request's status, the text so far, and its timings."""
    if service.store.get(request_id) is None and service.dispatcher.replica is not None:
        return RequestView(**await _shared_view(service, caller, request_id))
    return describe(visible(service, caller, request_id))


@router.delete("/{request_id}", response_model=CancelAnswer)
async def cancel(request_id: str, service: Service, caller: Caller) -> CancelAnswer:
    """Cancel: a queued request leaves the line, a running one's stream is closed."""
    replica = service.dispatcher.replica
    if service.store.get(request_id) is None and replica is not None:
        view = await _shared_view(service, caller, request_id)  # 404 unless theirs to see
        by = "client" if caller.user in (None, view["user"]) else "admin"
        view, cancelled = await replica.cancel(request_id, by)
        return CancelAnswer(**view, cancelled=cancelled)
    record = visible(service, caller, request_id)
    by = "client" if caller.user in (None, record.user) else "admin"
    cancelled = service.cancel(record, by=by)
    return CancelAnswer(**describe(record).model_dump(), cancelled=cancelled)


def describe(record: Record) -> RequestView:
    """A record as `GET /api/requests/{id}` answers it."""
    queued = record.last_queued if record.status is Status.QUEUED else None
    outcome = record.outcome
    return RequestView(
        id=record.id,
        status=record.status.value,
        user=record.user,
        model=record.model,
        upstream=record.upstream,
        dispatch_no=record.dispatch_no,
        position=queued.position if queued else None,
        waiting=queued.waiting if queued else None,
        eta_s=queued.eta_s if queued else None,
        text=record.text,
        reasoning="".join(record.reasoning),
        tokens=record.tokens,
        timings=record.timings(),
        outcome=None
        if outcome is None
        else Outcome(event=event_name(outcome), **event_data(outcome)),
    )
