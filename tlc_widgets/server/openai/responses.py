"""`POST /v1/responses`: OpenAI's Responses API (LM Studio 0.3.29+), queued like chat.

    >>> ResponseBody(input="Hello", reasoning={"effort": "low"}).model_extra
    {'reasoning': {'effort': 'low'}}
    >>> client.responses.create(model="practice-fast", input="Hello")  # doctest: +SKIP

A stream forwards the upstream's named events (`response.created`, …
`response.output_text.delta`, … `response.completed`) as they came; a whole reply is the
`response` object of the upstream's `response.completed` event.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ...protocol import ErrorCode, RequestBody
from ..api_error import ApiError
from ..deps import Caller, Service
from ..records import Call, Record
from .bodies import STREAMED, ResponseBody, extra_of, text_of
from .errors import OpenAIRoute
from .serve import serve

__all__ = ["router"]

router = APIRouter(route_class=OpenAIRoute)

_ENDS = ("response.completed", "response.incomplete")


@router.post("/responses", response_model=None, responses=STREAMED["responses"])
async def responses(
    body: ResponseBody, request: Request, service: Service, caller: Caller
) -> Response:
    """OpenAI's Responses API, queued fairly; `stream` or a whole reply."""
    cap = service.settings.max_tokens_cap
    if body.max_output_tokens is not None and body.max_output_tokens > cap:
        raise ApiError(
            ErrorCode.MAX_TOKENS_TOO_LARGE, f"The limit is {cap}.", param="max_output_tokens"
        )
    text = "\n".join(t for t in (body.instructions, text_of(body.input)) if t)
    native = RequestBody(
        prompt=text or " ",
        model=body.model,
        temperature=body.temperature,
    )
    call = Call(
        "responses", extra_of(await request.json()), wire=body.stream, chunks=not body.stream
    )
    return await serve(service, caller, request, native, call, body.user, _whole)


def _whole(record: Record) -> dict[str, Any]:
    for chunk in reversed(record.chunks or []):
        if chunk.get("type") in _ENDS:
            return dict(chunk.get("response") or {})
    return {}
