"""The HTTP surface: routes translate HTTP to and from the queue service, nothing else.

    >>> app = create_app(Settings(upstreams=["http://127.0.0.1:1234/v1"]))
    >>> # uvicorn.run(app)  — or `tlc serve`

Native API (what the widgets and lessons use) — see README.md for the full table:

    POST   /api/requests               submit → 202 {id, status, position, …}
    GET    /api/requests/{id}/events   SSE: queued… started delta… done|error|cancelled
    GET    /api/requests/{id}          status and text so far
    DELETE /api/requests/{id}          cancel
    GET    /api/queue, /api/queue/events, /api/models, /healthz, /readyz, /metrics
    /api/history…  (history_api.py) · /api/admin/…  (admin.py) · /v1/…  (openai/)

Around every route: the body limit (limits.py), then the key check (auth.py), which
leaves the caller's identity for `identity_of(request)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from ..config import ModelPreset, Settings
from ..protocol import ErrorCode, RequestBody, error_body
from . import admin, history_api, openai
from .auth import AuthMiddleware, Keys, identity_of
from .limits import BodyLimitMiddleware
from .practice_mount import practice_upstream
from .records import Record
from .service import ApiError, QueueService
from .sse import record_frames, snapshot_frames, sse_response

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    keys = Keys.from_settings(settings)  # a bad keys file stops the start, with its line

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with practice_upstream(settings) as effective:
            async with QueueService.running(effective, keys_on=bool(keys)) as queue:
                app.state.queue = queue
                yield

    app = FastAPI(
        title="TLC queue server",
        summary="A fair queue in front of LM Studio: positions, ETAs and live tokens.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.include_router(openai.router)
    app.include_router(admin.router)
    app.include_router(history_api.router)
    # The last added runs first: the body limit holds even for requests without a key.
    app.add_middleware(AuthMiddleware, keys=keys)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    def queue_of(request: Request) -> QueueService:
        return request.app.state.queue  # type: ignore[no-any-return]

    def record_of(request: Request, request_id: str) -> Record:
        record = queue_of(request).store.get(request_id)
        if record is None or not identity_of(request).may_see(record.user):
            raise ApiError(ErrorCode.NOT_FOUND)  # another's id reads as unknown: ids do not leak
        return record

    @app.post("/api/requests", status_code=202, tags=["requests"])
    async def submit(body: RequestBody, request: Request) -> dict[str, Any]:
        """Queue a chat request. Follow it at `events`; its first event is `queued`."""
        queue = queue_of(request)
        identity = identity_of(request)
        if body.priority > 0 and not identity.may_prioritise:
            raise ApiError(
                ErrorCode.FORBIDDEN,
                "priority: only a teacher or an admin may set a priority above 0.",
                param="priority",
            )
        user = identity.owner(body.user)
        record = await queue.submit(body, user=user, role=identity.role)
        accepted = record.last_queued  # the position it was given on arrival
        assert accepted is not None
        # It may have started already (an idle slot); the events say so. This answer
        # describes the acceptance: the place it took in line.
        return {
            "id": record.id,
            "status": "queued",
            "position": accepted.position,
            "waiting": accepted.waiting,
            "eta_s": accepted.eta_s,
            "model": record.model,
            "user": record.user,
            "events": f"/api/requests/{record.id}/events",
        }

    @app.get("/api/requests/{request_id}/events", tags=["requests"])
    async def events(
        request_id: str,
        request: Request,
        last_event_id: Annotated[str | None, Header()] = None,
        after: Annotated[int | None, Query(ge=0, description="Like Last-Event-ID.")] = None,
    ) -> Response:
        """Server-Sent Events of one request, from the start or after `Last-Event-ID`."""
        record = record_of(request, request_id)
        start = after or 0
        if last_event_id is not None:
            # isdecimal + isascii: "²" is a digit to isdigit() but not a number to int().
            if not (last_event_id.strip().isascii() and last_event_id.strip().isdecimal()):
                raise ApiError(
                    ErrorCode.INVALID_REQUEST,
                    "Last-Event-ID must be a whole number: the id of the last event you got.",
                    param="Last-Event-ID",
                )
            start = int(last_event_id)
        return sse_response(record_frames(queue_of(request), record, after=start))

    @app.get("/api/requests/{request_id}", tags=["requests"])
    async def status(request_id: str, request: Request) -> dict[str, Any]:
        """A request's status, the text so far, and its timings."""
        return describe(record_of(request, request_id))

    @app.delete("/api/requests/{request_id}", tags=["requests"])
    async def cancel(request_id: str, request: Request) -> dict[str, Any]:
        """Cancel: a queued request leaves the line, a running one's stream is closed."""
        record = record_of(request, request_id)
        by = "client" if identity_of(request).user in (None, record.user) else "admin"
        cancelled = queue_of(request).cancel(record, by=by)
        return {**describe(record), "cancelled": cancelled}

    @app.get("/api/queue", tags=["queue"])
    async def queue_snapshot(request: Request) -> dict[str, Any]:
        """Waiting, running, per-upstream slots, served, mean wait, tokens/s."""
        return queue_of(request).snapshot()

    @app.get("/api/queue/events", tags=["queue"])
    async def queue_events(request: Request) -> Response:
        """The `/api/queue` snapshot as a live SSE stream (`event: queue`), for monitors."""
        queue = queue_of(request)
        return sse_response(snapshot_frames(queue, queue.settings.position_interval_s or 0.25))

    @app.get("/api/models", tags=["queue"])
    async def models(request: Request) -> dict[str, Any]:
        """Models across upstreams, each with its preset (defaults for the chat panel)."""
        queue = queue_of(request)
        listed = []
        for name in queue.models():
            preset = queue.presets.get(name, ModelPreset())
            where = [u for u in queue.upstreams if u.reachable and name in u.models]
            listed.append(
                {
                    "id": name,
                    "display_name": preset.display_name or name,
                    "practice": name.startswith("practice-"),
                    "upstreams": [u.base_url for u in where],
                    "loaded": any(u.models[name].loaded for u in where),
                    "slots": queue.dispatcher.slots_for(name),
                    "preset": preset.model_dump(),
                }
            )
        default = queue.settings.default_model or (listed[0]["id"] if listed else None)
        return {"models": listed, "default": default}

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request) -> dict[str, Any]:
        """Liveness: 200 while the server runs; the body says how each upstream is."""
        queue = queue_of(request)
        ups = [{"url": u.base_url, "reachable": u.reachable} for u in queue.upstreams]
        return {"status": "ok", "upstreams": ups}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: 503 while no upstream answers."""
        queue = queue_of(request)
        ready = any(u.reachable for u in queue.upstreams)
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics(request: Request) -> Response:
        """Prometheus text format."""
        queue = queue_of(request)
        queue.stats.queue_length.set(len(queue.scheduler))
        queue.stats.running.set(queue.dispatcher.running)
        return Response(generate_latest(queue.stats.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def describe(record: Record) -> dict[str, Any]:
    """A record as JSON: what `GET /api/requests/{id}` answers."""
    queued = record.last_queued
    outcome = record.outcome
    return {
        "id": record.id,
        "status": record.status.value,
        "user": record.user,
        "model": record.model,
        "upstream": record.upstream,
        "dispatch_no": record.dispatch_no,
        "position": queued.position if queued and record.status == "queued" else None,
        "waiting": queued.waiting if queued and record.status == "queued" else None,
        "eta_s": queued.eta_s if queued and record.status == "queued" else None,
        "text": record.text,
        "reasoning": "".join(record.reasoning),
        "tokens": record.tokens,
        "timings": record.timings(),
        "outcome": None
        if outcome is None
        else {"event": type(outcome).__name__.lower(), **_fields(outcome)},
    }


def _fields(event: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(event)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse(
        error_body(exc.code, exc.detail, exc.param), status_code=exc.status, headers=headers
    )


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each bad field and why, in one readable sentence."""
    problems = []
    first_field = None
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        first_field = first_field or where
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    detail = "; ".join(problems[:5]) + (
        "" if len(problems) <= 5 else f" (+{len(problems) - 5} more)"
    )
    return JSONResponse(error_body(ErrorCode.INVALID_REQUEST, detail, first_field), status_code=422)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """A body FastAPI could not parse (not UTF-8, nested too deep) is a 422 like any bad body."""
    if exc.status_code == 400:
        detail = "body: it could not be read as JSON (it must be UTF-8 JSON text)."
        return JSONResponse(error_body(ErrorCode.INVALID_REQUEST, detail, "body"), status_code=422)
    return await http_exception_handler(request, exc)
