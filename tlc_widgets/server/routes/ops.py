"""Health, readiness and metrics: what probes and scrapers read (no key needed).

GET /healthz    200 while the server runs; the body says how each upstream is
GET /readyz     503 while no upstream answers
GET /metrics    Prometheus text format

>>> Ready(ready=False, history="failing").model_dump()
{'ready': False, 'history': 'failing'}
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from ..deps import Service
from ..schemas import Health, Ready, UpstreamHealth

__all__ = ["router"]

router = APIRouter(tags=["ops"])

_PROMETHEUS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format.",
        "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
    }
}


@router.get("/healthz", response_model=Health)
async def healthz(service: Service) -> Health:
    """Liveness: 200 while the server runs; the body says how each upstream is."""
    ups = [UpstreamHealth(url=u.base_url, reachable=u.reachable) for u in service.catalog.upstreams]
    return Health(status="ok", upstreams=ups)


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
async def readyz(service: Service) -> JSONResponse:
    """Readiness: 503 while no upstream answers, or while history writes fail (a full disk:
    nothing is lost, the rows are kept and tried again)."""
    history = "failing" if service.history.failing else "ok"
    ready = service.catalog.any_reachable and history == "ok"
    answer = Ready(ready=ready, history=history)
    return JSONResponse(answer.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, responses=_PROMETHEUS)
async def metrics(service: Service) -> Response:
    """Prometheus text format."""
    stats = service.stats
    stats.queue_length.set(len(service.scheduler))
    stats.running.set(service.dispatcher.running)
    return Response(generate_latest(stats.registry), media_type=CONTENT_TYPE_LATEST)
