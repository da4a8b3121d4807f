"""`GET /v1/models` and `/v1/models/{id}`: the models of every answering upstream.

    >>> [route.path for route in router.routes]
    ['/models', '/models/{model:path}']
    >>> client.models.list().data[0].id          # doctest: +SKIP
    'practice-fast'

Each item is complete per OpenAI's spec (`id`, `object`, `created`, `owned_by`): `created`
and `owned_by` as the upstream's own list gives them, else the time this server first saw
the model and `organization_owner` (LM Studio's value). When no upstream answers, the list
is not silently empty: it is a 503 `upstream_unavailable`, like a request would get.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from ...protocol import ErrorCode
from ..api_error import ApiError
from ..deps import Service
from ..service import QueueService
from .errors import OpenAIRoute

__all__ = ["router"]

router = APIRouter(route_class=OpenAIRoute)

_FIRST_SEEN: dict[str, int] = {}  #: model → when this process first listed it (a stable `created`)


@router.get("/models")
async def list_models(service: Service) -> dict[str, Any]:
    """Every model an answering upstream offers (and this server allows)."""
    return {"object": "list", "data": [_item(service, m) for m in await _models(service)]}


@router.get("/models/{model:path}")
async def get_model(model: str, service: Service) -> dict[str, Any]:
    """One model, or 404 `model_not_found` in OpenAI's envelope."""
    models = await _models(service)
    if model not in models:
        raise ApiError(
            ErrorCode.MODEL_NOT_FOUND,
            f"Asked for {model!r}; available: {', '.join(models) or 'none'}.",
            param="model",
        )
    return _item(service, model)


async def _models(service: QueueService) -> list[str]:
    catalog = service.catalog
    if not catalog.any_reachable:
        await service.refresh_upstreams()  # it may have come back since the last look
        if not catalog.any_reachable:
            raise ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, catalog.tried())
    return catalog.models()


def _item(service: QueueService, model: str) -> dict[str, Any]:
    info = next((u.models[model] for u in service.catalog.upstreams if model in u.models), None)
    created = (
        info.created if info and info.created else _FIRST_SEEN.setdefault(model, int(time.time()))
    )
    owned_by = info.owned_by if info and info.owned_by else "organization_owner"
    # `state` as LM Studio's own API says it; OpenAI clients ignore fields they do not know.
    state = "loaded" if service.catalog.loaded_on(model) else "not-loaded"
    seen = service.loads.loader.load_times.get(model)
    return {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": owned_by,
        "state": state,
        "load_time_s": seen,
    }
