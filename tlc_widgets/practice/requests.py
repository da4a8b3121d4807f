"""The request bodies the practice model reads, checked: chat, and the shared options.

    >>> parse_chat_request({"messages": [{"role": "user", "content": "Hi"}]}, "m").model
    'm'

Unknown fields are ignored, as LM Studio does. Bad values raise `BadRequest`, whose message
goes back to the student as LM Studio's bare `{"error": "…"}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tlc_widgets.practice.structured import FormatError, ResponseFormat, parse_response_format
from tlc_widgets.practice.tools import Tool, ToolError, parse_tool_choice, parse_tools

__all__ = ["BadRequest", "ChatRequest", "number", "parse_chat_request", "parse_stop"]

_MAX_TOP_LOGPROBS = 20  # OpenAI's limit


class BadRequest(ValueError):
    """The body is not a valid request; the message says what to change."""


@dataclass(frozen=True)
class ChatRequest:
    """The fields of `POST /v1/chat/completions` the practice model uses; others are ignored."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    tools: list[Tool] = field(default_factory=list)
    tool_choice: str = "auto"
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    ttl: int | None = None


def number(body: Mapping[str, Any], name: str, kind: type[int] | type[float]) -> Any:
    """`body[name]` as an int or float, None if absent; `BadRequest` if not a number."""
    value = body.get(name)
    ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    if not ok or (kind is int and value is not None and value != int(value)):
        raise BadRequest(f"'{name}' must be a {'whole ' if kind is int else ''}number")
    return None if value is None else kind(value)


def parse_stop(raw: Any) -> tuple[str, ...]:
    """`stop`: a string or up to 4 strings.

    >>> parse_stop("END"), parse_stop(["a", "b"]), parse_stop(None)
    (('END',), ('a', 'b'), ())
    """
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,) if raw else ()
    if isinstance(raw, list) and len(raw) <= 4 and all(isinstance(s, str) for s in raw):
        return tuple(s for s in raw if s)
    raise BadRequest("'stop' must be a string or an array of up to 4 strings.")


def _top_logprobs(body: Mapping[str, Any]) -> int:
    top = number(body, "top_logprobs", int) or 0
    if not 0 <= top <= _MAX_TOP_LOGPROBS:
        raise BadRequest(f"'top_logprobs' must be between 0 and {_MAX_TOP_LOGPROBS}.")
    return int(top)


def parse_chat_request(body: Any, default_model: str) -> ChatRequest:
    """Check a decoded JSON body of `POST /v1/chat/completions`."""
    if not isinstance(body, Mapping):
        raise BadRequest("The request body must be a JSON object.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' field is required and must be a non-empty array.")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest("Each message must be an object with a 'role' and a 'content'.")
        if not isinstance(message.get("content"), str | list | None):
            raise BadRequest("A message's 'content' must be a string or an array of parts.")
    model = body.get("model") or default_model  # LM Studio answers with the loaded model
    if not isinstance(model, str):
        raise BadRequest("'model' must be a string.")
    options = body.get("stream_options") or {}
    max_tokens = number(body, "max_tokens", int)
    if max_tokens is None:
        max_tokens = number(body, "max_completion_tokens", int)
    try:
        tools = parse_tools(body.get("tools"))
        tool_choice = parse_tool_choice(body.get("tool_choice"), tools)
        response_format = parse_response_format(body.get("response_format"))
    except (ToolError, FormatError) as exc:
        raise BadRequest(str(exc)) from exc
    return ChatRequest(
        model=model,
        messages=messages,
        stream=bool(body.get("stream", False)),
        include_usage=isinstance(options, Mapping) and bool(options.get("include_usage")),
        max_tokens=max_tokens,
        temperature=number(body, "temperature", float),
        seed=number(body, "seed", int),
        stop=parse_stop(body.get("stop")),
        logprobs=bool(body.get("logprobs")),
        top_logprobs=_top_logprobs(body),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=body.get("parallel_tool_calls") is not False,
        response_format=response_format,
        ttl=number(body, "ttl", int),
    )
