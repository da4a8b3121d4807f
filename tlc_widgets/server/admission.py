"""Admission checks: is a request acceptable, and which model will serve it?

    >>> messages, chars = validate(RequestBody(prompt="Hi"), Settings())
    >>> chars
    2

Every refusal is an `ApiError` with one code, the limit, and the field it concerns, so the
learner reads what to change. Queue-length and rate checks live with the queue
(`service.py`), since they depend on who is waiting right now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..protocol import ErrorCode, RequestBody
from .api_error import ApiError
from .limits import check_conversation
from .upstream import Upstream

if TYPE_CHECKING:
    from .service import QueueService

__all__ = ["resolve_model", "urls", "validate"]


def validate(body: RequestBody, s: Settings) -> tuple[list[dict[str, Any]], int]:
    """The conversation as plain dicts and its length in characters, or `ApiError`."""
    check_conversation(body, s)
    messages = [m.model_dump(exclude_none=True) for m in body.chat_messages()]
    chars = sum(len(m.text()) for m in body.chat_messages())
    if chars > s.max_prompt_chars:
        raise ApiError(
            ErrorCode.PROMPT_TOO_LONG,
            f"The limit is {s.max_prompt_chars} characters.",
            param="messages",
        )
    if body.max_tokens is not None and body.max_tokens > s.max_tokens_cap:
        raise ApiError(
            ErrorCode.MAX_TOKENS_TOO_LARGE,
            f"The limit is {s.max_tokens_cap}.",
            param="max_tokens",
        )
    return messages, chars


async def resolve_model(queue: QueueService, requested: str | None) -> str:
    """The model a request will use: the one it names, else the default, else the first
    listed. Re-reads the upstreams once before saying a model or an upstream is missing."""
    if not any(u.reachable for u in queue.upstreams):
        await queue.refresh_upstreams()  # it may have come back since the last look
        if not any(u.reachable for u in queue.upstreams):
            raise ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, urls(queue.upstreams))
    model = requested or queue.settings.default_model
    allowed = queue.settings.allowed_models
    if model is not None and allowed and model not in allowed:
        raise ApiError(
            ErrorCode.MODEL_NOT_FOUND,
            f"Asked for {model!r}; this server allows only: {', '.join(allowed)}.",
            param="model",
        )
    available = queue.models()
    if model is None:
        if not available:
            raise ApiError(ErrorCode.MODEL_NOT_LOADED, "The upstream lists no models.")
        return available[0]
    if model not in available:
        await queue.refresh_upstreams()
        if model not in queue.models():
            choices = ", ".join(queue.models()) or "none"
            raise ApiError(
                ErrorCode.MODEL_NOT_FOUND,
                f"Asked for {model!r}; available: {choices}.",
                param="model",
            )
    return model


def urls(upstreams: list[Upstream]) -> str:
    return "Tried: " + ", ".join(u.base_url for u in upstreams) + "."
