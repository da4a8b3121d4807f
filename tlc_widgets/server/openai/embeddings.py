"""`POST /v1/embeddings`: queued fairly, in a pool of its own model's slots.

    >>> EmbeddingBody(input=["a", "b"], dimensions=8).model_extra
    {'dimensions': 8}
    >>> client.embeddings.create(model="text-embedding-nomic", input=["a", "b"])  # doctest: +SKIP

Embeddings are short (one forward pass, no generation), and in LM Studio an embedding model
is a model of its own. So an embedding request waits its turn in the same fair order as
chat (same per-user limits, same positions), but takes a slot of its own model's pool:
even when the upstream reports no per-model slots, embeddings never wait behind a long
chat reply (docs/compatibility.md has the figures). The upstream's answer is passed on
whole, as it came.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ...protocol import RequestBody
from ..deps import Caller, Service
from ..records import Call, Record
from .bodies import EMBEDDINGS, EmbeddingBody, extra_of, text_of
from .errors import OpenAIRoute
from .serve import serve

__all__ = ["router"]

router = APIRouter(route_class=OpenAIRoute)


@router.post("/embeddings", response_model=None, responses=EMBEDDINGS)
async def embeddings(
    body: EmbeddingBody, request: Request, service: Service, caller: Caller
) -> Response:
    """OpenAI's embeddings, queued fairly; the upstream's answer unchanged."""
    native = RequestBody(prompt=text_of(body.input) or " ", model=body.model)
    call = Call("embeddings", extra_of(await request.json()), chunks=True)
    return await serve(service, caller, request, native, call, body.user, _whole)


def _whole(record: Record) -> dict[str, Any]:
    return (record.chunks or [{}])[0]
