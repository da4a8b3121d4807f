"""`POST /v1/chat/completions`: a transparent door to the upstream's chat completions.

    >>> ChatBody(messages=[{"role": "user", "content": "hi"}], seed=7, top_k=40).model_extra
    {'seed': 7, 'top_k': 40}
    >>> client.chat.completions.create(model="practice-fast", messages=[...], tools=[...])
    ... # doctest: +SKIP

Every field the client sends reaches the upstream as sent (`bodies.extra_of`) except the
few the queue owns; the queue checks only what it must (the conversation's size, the
`max_tokens` cap) before the request takes its place in line.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ...protocol import ErrorCode, RequestBody
from ..api_error import ApiError
from ..deps import Caller, Service
from ..records import Call, Record
from .assemble import chat_completion
from .bodies import STREAMED, ChatBody, extra_of
from .errors import OpenAIRoute
from .serve import serve, usage_of

__all__ = ["router"]

router = APIRouter(route_class=OpenAIRoute)


@router.post("/chat/completions", response_model=None, responses=STREAMED["chat"])
async def chat_completions(
    body: ChatBody, request: Request, service: Service, caller: Caller
) -> Response:
    """OpenAI's chat completions, queued fairly; `stream` or a whole reply."""
    cap = service.settings.max_tokens_cap
    if body.max_completion_tokens is not None and body.max_completion_tokens > cap:
        raise ApiError(
            ErrorCode.MAX_TOKENS_TOO_LARGE, f"The limit is {cap}.", param="max_completion_tokens"
        )
    native = RequestBody(
        messages=body.messages,
        model=body.model,
        temperature=body.temperature,
        max_tokens=body.max_tokens,
    )
    extra = extra_of(await request.json())
    call = Call("chat/completions", extra, wire=body.stream, chunks=not body.stream)
    return await serve(
        service, caller, request, native, call, body.user, _whole, body.include_usage
    )


def _whole(record: Record) -> dict[str, object]:
    asked = bool(record.call.extra.get("logprobs"))
    return chat_completion(record.chunks or [], usage_of(record), asked)
