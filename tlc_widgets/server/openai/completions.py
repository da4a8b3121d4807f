"""`POST /v1/completions`: legacy text completion (LM Studio serves it), queued like chat.

>>> CompletionBody(prompt="Once upon", suffix="!").model_extra
{'suffix': '!'}
>>> client.completions.create(model="practice-fast", prompt="Once upon")  # doctest: +SKIP
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ...protocol import RequestBody
from ..deps import Caller, Service
from ..records import Call, Record
from .assemble import text_completion
from .bodies import STREAMED, CompletionBody, extra_of, text_of
from .errors import OpenAIRoute
from .serve import serve, usage_of

__all__ = ["router"]

router = APIRouter(route_class=OpenAIRoute)


@router.post("/completions", response_model=None, responses=STREAMED["completions"])
async def completions(
    body: CompletionBody, request: Request, service: Service, caller: Caller
) -> Response:
    """OpenAI's text completions, queued fairly; `stream` or a whole reply."""
    native = RequestBody(
        prompt=text_of(body.prompt) or " ",
        model=body.model,
        temperature=body.temperature,
        max_tokens=body.max_tokens,
    )
    call = Call(
        "completions", extra_of(await request.json()), wire=body.stream, chunks=not body.stream
    )
    return await serve(
        service, caller, request, native, call, body.user, _whole, body.include_usage
    )


def _whole(record: Record) -> dict[str, object]:
    return text_completion(record.chunks or [], usage_of(record))
