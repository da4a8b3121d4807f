"""What the queue looks like right now: the snapshot for monitors, the live list for admins.

    >>> from tlc_widgets.server.routes.queue import router
    >>> router.url_path_for("queue_snapshot")
    '/api/queue'

Read-only views over the service, computed when asked (a monitor asks a few times a second,
an admin now and then), so the service itself keeps only the verbs that change things.
"""

from __future__ import annotations

from typing import Any

from ..protocol import Status
from .records import Record
from .service import QueueService

__all__ = ["live", "snapshot"]


def snapshot(service: QueueService) -> dict[str, Any]:
    """What `/api/queue` answers: the whole queue in one small JSON object."""
    return {
        **service.state(),
        "upstreams": service.catalog.upstream_rows(),
        "served": service.stats.served,
        "mean_wait_s": service.stats.mean_wait_s(),
        "tokens_per_s": service.stats.tokens_per_s(),
        "loading": service.loads.loading(),
        "class_mode": service.classroom.mode.value,
        "class_message": service.classroom.message,
    }


def live(service: QueueService) -> list[tuple[Record, int | None]]:
    """Every live request with its place among its model's waiting ones (None while
    running): running ones first, in the order they started, then the line."""
    running = [r for r in service.store.values() if r.status is Status.RUNNING]
    rows: list[tuple[Record, int | None]] = [
        (r, None) for r in sorted(running, key=lambda r: r.dispatch_no or 0)
    ]
    position: dict[str, int] = {}
    for entry in service.scheduler.order():
        position[entry.model] = position.get(entry.model, 0) + 1
        record = service.store.get(entry.id)
        if record is not None and record.status is Status.QUEUED:
            rows.append((record, position[entry.model]))
    return rows
