"""`/api/admin/*`: pause, resume and drain the queue, and see every user's live requests.

    $ curl -X POST -H "Authorization: Bearer $ADMIN_KEY" http://127.0.0.1:8000/api/admin/pause
    {"paused": true, "draining": false, "waiting": 3, "running": 2}

    paused    accept requests, start none (running ones go on): a break in the lesson
    draining  accept nothing new (503 `draining`); what is waiting or running finishes
    resume    back to normal from either, and start what waits at once

Only an admin may call these (403 `forbidden` for anyone else). Without keys every caller
is the admin of their own machine.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ..protocol import Status
from .auth import identity_of
from .records import Record
from .service import QueueService

__all__ = ["router"]

router = APIRouter(prefix="/api/admin", tags=["admin"])


def _admin_queue(request: Request) -> QueueService:
    identity_of(request).require_admin()
    return request.app.state.queue  # type: ignore[no-any-return]


def _state(queue: QueueService) -> dict[str, Any]:
    return {
        "paused": queue.dispatcher.paused,
        "draining": queue.draining,
        "waiting": len(queue.scheduler),
        "running": queue.dispatcher.running,
    }


@router.post("/pause")
async def pause(request: Request) -> dict[str, Any]:
    """Accept requests but start none until `resume`; running ones go on."""
    queue = _admin_queue(request)
    queue.dispatcher.paused = True
    queue.mark_dirty()
    return _state(queue)


@router.post("/resume")
async def resume(request: Request) -> dict[str, Any]:
    """End a pause or a drain; waiting requests start at once where slots are free."""
    queue = _admin_queue(request)
    queue.dispatcher.paused = False
    queue.draining = False
    queue.dispatcher.fill()
    queue.mark_dirty()
    return _state(queue)


@router.post("/drain")
async def drain(request: Request) -> dict[str, Any]:
    """Accept nothing new (503 `draining`); let what waits and runs finish."""
    queue = _admin_queue(request)
    queue.draining = True
    queue.mark_dirty()
    return _state(queue)


@router.get("/requests")
async def live_requests(request: Request) -> dict[str, Any]:
    """Every live (queued or running) request of every user, in the order they would start."""
    queue = _admin_queue(request)
    listed = []
    position: dict[str, int] = {}
    for entry in queue.scheduler.order():
        position[entry.model] = position.get(entry.model, 0) + 1
        record = queue.store.get(entry.id)
        if record is not None and record.status is Status.QUEUED:
            listed.append(_row(record, position[entry.model]))
    running = [r for r in queue.store.values() if r.status is Status.RUNNING]
    listed[:0] = [_row(r, None) for r in sorted(running, key=lambda r: r.dispatch_no or 0)]
    return {**_state(queue), "requests": listed}


def _row(record: Record, position: int | None) -> dict[str, Any]:
    return {
        "id": record.id,
        "user": record.user,
        "model": record.model,
        "status": record.status.value,
        "position": position,
        "priority": record.priority,
        "tokens": record.tokens,
        "upstream": record.upstream,
        "created": record.created_wall,
    }
