"""The OpenAI-compatible front door: `/v1/…`, an adapter over the queue's own records.

    >>> router.prefix, router.tags
    ('/v1', ['openai'])
    >>> client.chat.completions.create(model="practice-fast", messages=[...], stream=True)
    ... # doctest: +SKIP

Not a second queue: every request is admitted, ordered and dispatched like a native one,
and the record is the source of truth. What the queue does not own passes through both
ways (docs/compatibility.md lists every field and endpoint).

    chat.py         /v1/chat/completions        completions.py  /v1/completions
    embeddings.py   /v1/embeddings              responses.py    /v1/responses
    models.py       /v1/models, /v1/models/{id}
    bodies.py       what is checked, what passes   serve.py    stream or whole reply
    assemble.py     a whole reply from chunks      retry.py    a retry keeps its place
    errors.py       OpenAI's envelope and statuses; no retry after a "no"
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from . import chat, completions, embeddings, models, responses
from .errors import OpenAIRoute

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)
for _part in (models, chat, completions, embeddings, responses):
    router.include_router(_part.router)


@router.api_route(
    "/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def unknown(path: str, request: Request) -> JSONResponse:
    """Any other `/v1` path: 404 in OpenAI's envelope, as OpenAI answers it."""
    message = (
        f"Invalid URL ({request.method} /v1/{path}): this queue serves /v1/chat/completions, "
        "/v1/completions, /v1/embeddings, /v1/responses and /v1/models."
    )
    error = {
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }
    return JSONResponse({"error": error}, status_code=404)
