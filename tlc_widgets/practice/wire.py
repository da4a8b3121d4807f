"""OpenAI's chat-completion JSON as LM Studio sends it: chunks, whole answers, usage.

    >>> sse({"a": 1})
    b'data: {"a":1}\\n\\n'

Shapes follow what LM Studio sends (see /work/shared/reference/UPSTREAMS.md): every streamed
delta carries `"role":"assistant"`, `system_fingerprint` is the model id, ids look like
`chatcmpl-` plus 21 lower-case letters and digits, and non-streaming answers carry `"stats":{}`.
Tool calls and logprobs take OpenAI's shapes.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tlc_widgets.practice.generation import Token

__all__ = [
    "DONE",
    "Reply",
    "ToolCall",
    "completion",
    "delta_chunk",
    "final_chunk",
    "logprob_entry",
    "new_completion_id",
    "sse",
    "tool_call_chunk",
    "usage",
    "usage_chunk",
]

#: The end of every complete OpenAI stream.
DONE = b"data: [DONE]\n\n"
_ID_CHARS = string.ascii_lowercase + string.digits


def sse(payload: Mapping[str, Any], event: str | None = None) -> bytes:
    """One server-sent event: OpenAI's chat streams use only `data:` lines; `event` for others."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    # JSON escapes CR and LF, so the data is one line; U+2028/2029/0085 are escaped too, so
    # that no reader that splits lines on them can break the event.
    data = data.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    data = data.replace("\x85", "\\u0085")
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + data + "\n\n").encode()


def new_completion_id(prefix: str = "chatcmpl-") -> str:
    """`chatcmpl-` and 21 random characters, like LM Studio's ids."""
    return prefix + "".join(random.choices(_ID_CHARS, k=21))


def logprob_entry(token: Token) -> dict[str, Any]:
    """One token of OpenAI's `logprobs.content`, with its top alternatives.

    >>> logprob_entry(Token(" a", logprob=-0.5, top=((" a", -0.5),)))["top_logprobs"][0]
    {'token': ' a', 'logprob': -0.5, 'bytes': [32, 97]}
    """
    return {
        "token": token.text,
        "logprob": token.logprob,
        "bytes": list(token.text.encode()),
        "top_logprobs": [
            {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in token.top
        ],
    }


@dataclass(frozen=True)
class ToolCall:
    """One call of a tool: its id, the function's name and the arguments as JSON text."""

    id: str
    name: str
    arguments: str

    def as_message_part(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
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


def usage(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0) -> dict[str, Any]:
    """The OpenAI `usage` object, with its details (nothing is cached: `cached_tokens` 0)."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _choice_logprobs(tokens: Sequence[Token] | None) -> dict[str, Any] | None:
    if tokens is None:
        return None
    return {"content": [logprob_entry(t) for t in tokens], "refusal": None}


def delta_chunk(
    reply: Reply, text: str, reasoning: bool, logprobs: Sequence[Token] | None = None
) -> dict[str, Any]:
    """One token; LM Studio repeats `role` in every delta."""
    key = "reasoning_content" if reasoning else "content"
    delta = {"role": "assistant", key: text}
    choice = {
        "index": 0,
        "delta": delta,
        "logprobs": _choice_logprobs(logprobs),
        "finish_reason": None,
    }
    return reply._chunk([choice])


def tool_call_chunk(
    reply: Reply, index: int, call: ToolCall, piece: str, first: bool
) -> dict[str, Any]:
    """A piece of a tool call: the first names the function, the others add to its arguments."""
    part: dict[str, Any] = {"index": index, "function": {"arguments": piece}}
    if first:
        part = {"index": index, "id": call.id, "type": "function"}
        part["function"] = {"name": call.name, "arguments": piece}
    delta = {"role": "assistant", "content": None, "tool_calls": [part]}
    return reply._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])


def final_chunk(reply: Reply, finish_reason: str) -> dict[str, Any]:
    """The last choice chunk: an empty delta and why the answer ended."""
    choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish_reason}
    return reply._chunk([choice])


def usage_chunk(reply: Reply, usage_: dict[str, Any]) -> dict[str, Any]:
    """Only with `stream_options.include_usage`; `choices` is empty, so `choices[0]` fails."""
    return reply._chunk([]) | {"usage": usage_}


def completion(
    reply: Reply,
    content: str | None,
    reasoning: str | None,
    finish_reason: str,
    usage_: dict[str, Any],
    tool_calls: Sequence[ToolCall] = (),
    logprobs: Sequence[Token] | None = None,
) -> dict[str, Any]:
    """A whole non-streaming `chat.completion`, with LM Studio's empty `stats`."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = [c.as_message_part() for c in tool_calls]
    choice = {
        "index": 0,
        "logprobs": _choice_logprobs(logprobs),
        "finish_reason": finish_reason,
        "message": message,
    }
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [choice],
        "usage": usage_,
        "stats": {},
        "system_fingerprint": reply.model,
    }
