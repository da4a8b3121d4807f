"""`/api/queue` and `/api/models`: the queue as a whole, and what it can serve.

GET /api/queue           snapshot: waiting, running, slots per upstream, served, rates
GET /api/queue/events    the same snapshot, live (`event: queue`), for monitors
GET /api/models          models across upstreams, each with its preset

>>> router.prefix
'/api'
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from ...config import ModelPreset
from ..deps import Caller, Service
from ..schemas import ModelRow, Models, QueueSnapshot
from ..streams import open_stream, snapshot_frames, sse_response
from ..views import snapshot
from .requests import SSE_ONLY

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["queue"])


@router.get("/queue", response_model=QueueSnapshot)
async def queue_snapshot(service: Service) -> QueueSnapshot:
    """Waiting, running, per-upstream slots, served, mean wait, tokens/s."""
    return QueueSnapshot(**snapshot(service))


@router.get("/queue/events", response_class=Response, responses=SSE_ONLY)
async def queue_events(service: Service, caller: Caller) -> Response:
    """The `/api/queue` snapshot as a live SSE stream (`event: queue`), for monitors."""
    interval = service.settings.position_interval_s or 0.25
    if caller.user is None:  # no keys: no one to count against (connection caps still hold)
        return sse_response(snapshot_frames(service, interval))
    close = open_stream(service, caller.user)  # counts against the user's cap
    return sse_response(snapshot_frames(service, interval), close)


@router.get("/models", response_model=Models)
async def models(service: Service) -> Models:
    """Models across upstreams, each with its preset (defaults for the chat panel)."""
    catalog = service.catalog
    listed = []
    for name in catalog.models():
        preset = service.presets.get(name, ModelPreset())
        where = catalog.serving(name)
        listed.append(
            ModelRow(
                id=name,
                display_name=preset.display_name or name,
                practice=name.startswith("practice-"),
                upstreams=[u.base_url for u in where],
                loaded=any(u.models[name].loaded for u in where),
                loading=service.loads.progress_of(name),
                load_time_s=service.loads.loader.load_times.get(name),
                slots=catalog.slots_for(name),
                preset=preset.model_dump(),
            )
        )
    default = catalog.default_model or (listed[0].id if listed else None)
    return Models(models=listed, default=default)
