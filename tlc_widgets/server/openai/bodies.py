"""The bodies of the OpenAI door: what we check, and what we pass on untouched.

    >>> extra_of({"model": "m", "stream": True, "seed": 7, "tools": []})
    {'seed': 7, 'tools': []}
    >>> text_of([{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}])
    'Hi'

Each model names only the fields the queue acts on (to check them and to answer 400 when
they are wrong); `extra="allow"` lets every other field through. What reaches the upstream
is the client's own JSON (`extra_of`), minus the fields the queue owns: which model, whether
the upstream streams, and who the user is. Nothing is re-encoded on the way.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ...protocol import Message

__all__ = [
    "OWNED",
    "STREAMED",
    "ChatBody",
    "CompletionBody",
    "EmbeddingBody",
    "ResponseBody",
    "extra_of",
    "text_of",
]

#: Fields the queue owns: `model` (it resolves it), `stream` / `stream_options` (the
#: upstream always streams, with usage), `user` (the queue's identity decides who asks).
OWNED = frozenset({"model", "stream", "stream_options", "user"})


def streamed(title: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI answer of a route that returns JSON, or (`stream: true`) SSE."""
    return {
        200: {
            "description": f"A `{title}` object, or (`stream: true`) its events as SSE.",
            "content": {
                "application/json": {"schema": {"type": "object", "title": title}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        }
    }


#: OpenAPI answers of the streaming routes (schemathesis reads them).
STREAMED = {
    "chat": streamed("ChatCompletion"),
    "completions": streamed("Completion"),
    "responses": streamed("Response"),
}

#: OpenAPI answer of `/v1/embeddings` (a JSON object only).
EMBEDDINGS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An OpenAI `list` of `embedding` objects.",
        "content": {"application/json": {"schema": {"type": "object", "title": "Embeddings"}}},
    }
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    user: str | None = Field(default=None, max_length=64)

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatBody(_Body):
    """`POST /v1/chat/completions`."""

    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=8)


class CompletionBody(_Body):
    """`POST /v1/completions` (legacy text completion)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=None, ge=1)


class EmbeddingBody(_Body):
    """`POST /v1/embeddings`."""

    input: str | list[str] | list[int] | list[list[int]]


class ResponseBody(_Body):
    """`POST /v1/responses`."""

    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)


def extra_of(raw: dict[str, Any]) -> dict[str, Any]:
    """The client's fields that go upstream exactly as sent."""
    return {k: v for k, v in raw.items() if k not in OWNED}


def text_of(value: Any) -> str:
    """The text in an input, however nested (strings, parts, messages), for the queue's
    length limits and token estimates; token-id arrays count as their digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (text_of(v) for v in value) if t)
    if isinstance(value, dict):
        return text_of(value.get("content") or value.get("text") or "")
    return "" if value is None else str(value)
