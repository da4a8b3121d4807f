"""Admission checks: is a request acceptable as it stands?

    >>> messages, chars = validate(RequestBody(prompt="Hi"), Settings())
    >>> chars
    2

Every refusal is an `ApiError` with one code, the limit, and the field it concerns, so the
learner reads what to change. Which model serves it is the catalog's to say
(`catalog.resolve`); queue-length and rate checks live with the queue (`service.py`),
since they depend on who is waiting right now.
"""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..protocol import ErrorCode, RequestBody
from .api_error import ApiError
from .limits import check_conversation, conversation_size

__all__ = ["validate"]


def validate(body: RequestBody, s: Settings) -> tuple[list[dict[str, Any]], int]:
    """The conversation as plain dicts and its length in characters, or `ApiError`."""
    check_conversation(body, s)
    messages = [m.model_dump(exclude_none=True) for m in body.chat_messages()]
    chars = conversation_size(body.chat_messages())  # every part counts, not only text
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
