"""LM Studio's JSON, built in one place: model lists, completion chunks, errors, the request.

    >>> sse({"a": 1})
    b'data: {"a":1}\\n\\n'

Shapes follow what LM Studio sends (see /work/shared/reference/UPSTREAMS.md): every streamed
delta carries `"role":"assistant"`, `system_fingerprint` is the model id, ids look like
`chatcmpl-` plus 21 lower-case letters and digits, and non-streaming answers carry `"stats":{}`.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tlc_widgets.practice.settings import DESCRIPTION, ModelSpec

__all__ = [
    "CONTEXT_LENGTH",
    "DONE",
    "BadRequest",
    "ChatRequest",
    "Reply",
    "bad_request",
    "completion",
    "delta_chunk",
    "final_chunk",
    "model_not_found",
    "models_api_v0",
    "models_api_v1",
    "models_openai",
    "new_completion_id",
    "no_models_loaded",
    "parse_chat_request",
    "server_error",
    "sse",
    "usage",
    "usage_chunk",
]

CONTEXT_LENGTH = 8192
#: The end of every complete OpenAI stream.
DONE = b"data: [DONE]\n\n"
_ID_CHARS = string.ascii_lowercase + string.digits


def sse(payload: Mapping[str, Any]) -> bytes:
    """One server-sent event: OpenAI streams use only `data:` lines (no `event:`, no `id:`)."""
    return (
        b"data: "
        + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n\n"
    )


def new_completion_id() -> str:
    """`chatcmpl-` and 21 random characters, like LM Studio's ids."""
    return "chatcmpl-" + "".join(random.choices(_ID_CHARS, k=21))


# -- the request ------------------------------------------------------------------------------


class BadRequest(ValueError):
    """The body is not a chat request; the message goes back as LM Studio's bare `{"error": …}`."""


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


def _number(body: Mapping[str, Any], name: str, kind: type[int] | type[float]) -> Any:
    value = body.get(name)
    ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    if not ok or (kind is int and value is not None and value != int(value)):
        raise BadRequest(f"'{name}' must be a {'whole ' if kind is int else ''}number")
    return None if value is None else kind(value)


def parse_chat_request(body: Any, default_model: str) -> ChatRequest:
    """Check a decoded JSON body; unknown fields are ignored, as LM Studio does.

    >>> parse_chat_request({"messages": [{"role": "user", "content": "Hi"}]}, "m").model
    'm'
    """
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
    max_tokens = _number(body, "max_tokens", int)
    if max_tokens is None:
        max_tokens = _number(body, "max_completion_tokens", int)
    return ChatRequest(
        model=model,
        messages=messages,
        stream=bool(body.get("stream", False)),
        include_usage=isinstance(options, Mapping) and bool(options.get("include_usage")),
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", float),
        seed=_number(body, "seed", int),
    )


# -- errors -----------------------------------------------------------------------------------


def bad_request(message: str) -> dict[str, Any]:
    """LM Studio's terse form: the error is a bare string."""
    return {"error": message}


def model_not_found(name: str, available: Iterable[str]) -> dict[str, Any]:
    """400: the model name is not one the server offers."""
    return {
        "error": {
            "message": f'Model "{name}" not found. Available: {", ".join(available)}',
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def no_models_loaded() -> dict[str, Any]:
    """404: LM Studio with nothing loaded (and JIT loading off)."""
    return {
        "error": {
            "message": "No models loaded. Please load a model in the developer page or use "
            "the `lms load` command.",
            "type": "invalid_request_error",
            "param": "model",
            "code": None,
        }
    }


def server_error(message: str) -> dict[str, Any]:
    """A crash, mid-stream as a `data:` line or as a 500 body."""
    return {"error": {"message": message, "type": "server_error"}}


# -- model lists ------------------------------------------------------------------------------


def models_openai(specs: Sequence[ModelSpec], loaded: bool) -> dict[str, Any]:
    """`GET /v1/models`."""
    data = [{"id": s.id, "object": "model", "owned_by": "organization_owner"} for s in specs]
    return {"object": "list", "data": data if loaded else []}


def models_api_v0(specs: Sequence[ModelSpec], loaded: bool) -> dict[str, Any]:
    """`GET /api/v0/models` (LM Studio 0.3.6+ native REST)."""
    return {
        "object": "list",
        "data": [
            {
                "id": s.id,
                "object": "model",
                "type": "llm",
                "publisher": "tlc",
                "arch": "markov",
                "compatibility_type": "gguf",
                "quantization": "none",
                "state": "loaded" if loaded else "not-loaded",
                "max_context_length": CONTEXT_LENGTH,
            }
            for s in specs
        ],
    }


def models_api_v1(specs: Sequence[ModelSpec], loaded: bool, parallel: int) -> dict[str, Any]:
    """`GET /api/v1/models` (LM Studio 0.4+): `parallel` is "Max Concurrent Predictions"."""
    return {
        "models": [
            {
                "type": "llm",
                "key": s.id,
                "display_name": s.display_name,
                "publisher": "tlc",
                "architecture": "markov",
                "quantization": None,
                "size_bytes": s.size_bytes,
                "params_string": None,
                "loaded_instances": (
                    [
                        {
                            "id": s.id,
                            "config": {"context_length": CONTEXT_LENGTH, "parallel": parallel},
                        }
                    ]
                    if loaded
                    else []
                ),
                "max_context_length": CONTEXT_LENGTH,
                "format": "gguf",
                "capabilities": {
                    "vision": False,
                    "trained_for_tool_use": False,
                    "reasoning": s.reasoning,
                },
                "description": DESCRIPTION,
            }
            for s in specs
        ]
    }


# -- completions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What every chunk of one answer repeats: its id, creation time and model."""

    id: str
    created: int
    model: str

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.model,
            "choices": choices,
        }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The OpenAI `usage` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def delta_chunk(reply: Reply, text: str, reasoning: bool) -> dict[str, Any]:
    """One token; LM Studio repeats `role` in every delta."""
    key = "reasoning_content" if reasoning else "content"
    delta = {"role": "assistant", key: text}
    return reply._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])


def final_chunk(reply: Reply, finish_reason: str) -> dict[str, Any]:
    """The last choice chunk: an empty delta and why the answer ended."""
    choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}
    return reply._chunk([choice])


def usage_chunk(reply: Reply, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """Only with `stream_options.include_usage`; `choices` is empty, so `choices[0]` fails."""
    return reply._chunk([]) | {"usage": usage(prompt_tokens, completion_tokens)}


def completion(
    reply: Reply,
    content: str,
    reasoning: str | None,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """A whole non-streaming `chat.completion`, with LM Studio's empty `stats`."""
    message = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    choice = {"index": 0, "logprobs": None, "finish_reason": finish_reason, "message": message}
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [choice],
        "usage": usage(prompt_tokens, completion_tokens),
        "stats": {},
        "system_fingerprint": reply.model,
    }
