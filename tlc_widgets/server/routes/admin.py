"""`/api/admin/*`: pause, resume and drain the queue, and see every user's live requests.

    $ curl -X POST -H "Authorization: Bearer $ADMIN_KEY" http://127.0.0.1:8000/api/admin/pause
    {"paused": true, "draining": false, "waiting": 3, "running": 2}

    paused    accept requests, start none (running ones go on): a break in the lesson
    draining  accept nothing new (503 `draining`); what is waiting or running finishes
    resume    back to normal from either, and start what waits at once

    >>> router.prefix
    '/api/admin'

Only an admin may call these (403 `forbidden` for anyone else). Without keys every caller
is the admin of their own machine.
"""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import Admin
from ..records import Record
from ..schemas import AdminState, LiveRequest, LiveRequests, ModelLoadState, ModelOrder
from ..service import QueueService
from ..views import live

__all__ = ["router"]

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.post("/pause", response_model=AdminState)
async def pause(service: Admin) -> AdminState:
    """Accept requests but start none until `resume`; running ones go on."""
    service.pause()
    return AdminState(**service.state())


@router.post("/resume", response_model=AdminState)
async def resume(service: Admin) -> AdminState:
    """End a pause or a drain; waiting requests start at once where slots are free."""
    service.resume()
    return AdminState(**service.state())


@router.post("/drain", response_model=AdminState)
async def drain(service: Admin) -> AdminState:
    """Accept nothing new (503 `draining`); let what waits and runs finish."""
    service.drain()
    return AdminState(**service.state())


@router.get("/requests", response_model=LiveRequests)
async def live_requests(service: Admin) -> LiveRequests:
    """Every live (queued or running) request of every user, in the order they would start."""
    rows = [_row(record, position) for record, position in live(service)]
    return LiveRequests(**service.state(), requests=rows)


@router.post("/models/load", response_model=ModelLoadState, status_code=202)
async def load_model(order: ModelOrder, service: Admin) -> ModelLoadState:
    """Load a model ahead of a class (LM Studio's `ttl` passes through). The load runs in
    the background; follow it in `/api/models` (or `tlc models load NAME`, which waits)."""
    model = await service.catalog.resolve(order.model)
    service.loads.ensure(model, order.ttl)
    return _load_state(service, model)


@router.get("/models/{model}", response_model=ModelLoadState)
async def model_state(model: str, service: Admin) -> ModelLoadState:
    """Whether a model is loaded, how far its load is, and why the last one failed."""
    return _load_state(service, await service.catalog.resolve(model))


@router.post("/models/unload", response_model=ModelLoadState)
async def unload_model(order: ModelOrder, service: Admin) -> ModelLoadState:
    """Unload a model from every upstream that has it loaded (frees the machine's memory)."""
    model = await service.catalog.resolve(order.model)
    await service.loads.unload(model)
    return _load_state(service, model)


def _load_state(service: QueueService, model: str) -> ModelLoadState:
    return ModelLoadState(
        model=model,
        loaded=bool(service.catalog.loaded_on(model)),
        loading=service.loads.progress_of(model),
        failure=service.loads.failures.get(model),
    )


def _row(record: Record, position: int | None) -> LiveRequest:
    return LiveRequest(
        id=record.id,
        user=record.user,
        model=record.model,
        status=record.status.value,
        position=position,
        priority=record.priority,
        tokens=record.tokens,
        upstream=record.upstream,
        created=record.created_wall,
    )
