"""What one chunk of an upstream's stream says, per endpoint: deltas, the finish, the usage.

    >>> reading = Reading("chat/completions")
    >>> chunk = {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    >>> list(reading.deltas("message", chunk))
    [Delta(content='Hi', reasoning=None, tool_calls=None, logprobs=None, refusal=None, index=0)]
    >>> reading.finish_reason is None
    True

Three stream shapes reach the queue: chat completions (`choices[].delta`), legacy completions
(`choices[].text`) and the Responses API (named events: `response.output_text.delta` …
`response.completed`). Each becomes the same native `Delta`s, carrying whatever extra fields
the upstream sent (tool-call pieces, log-probabilities, a refusal): the record keeps them and
the OpenAI door passes them on. The chunk itself is never rewritten here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..protocol import Delta

__all__ = ["Reading"]

#: Responses API events that end a reply, and the finish_reason each stands for.
_EMPTY: dict[str, Any] = {}
_RESPONSE_ENDS = {"response.completed": "stop", "response.incomplete": "length"}


class Reading:
    """The state of reading one stream: how it finished and its usage, once known."""

    __slots__ = ("endpoint", "failure", "finish_reason", "usage")

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.failure: str | None = None  #: the upstream's message, when a chunk is an error

    def deltas(self, event: str, chunk: dict[str, Any]) -> Iterator[Delta]:
        """The native deltas in one chunk (none for bookkeeping chunks)."""
        if chunk.get("error"):
            self.failure = _message(chunk)
            return
        if self.endpoint == "responses":
            yield from self._response_event(chunk.get("type") or event, chunk)
            return
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        # The usage chunk has `choices: []`: never index choices[0].
        for choice in chunk.get("choices") or ():
            if self.endpoint == "completions":
                content, delta = choice.get("text"), _EMPTY
            else:
                delta = choice.get("delta") or {}
                content = delta.get("content")
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            tool_calls, refusal = delta.get("tool_calls"), delta.get("refusal")
            logprobs = choice.get("logprobs")
            if content or reasoning or tool_calls or logprobs or refusal:
                yield Delta(
                    content or None,
                    reasoning or None,
                    tool_calls or None,
                    logprobs or None,
                    refusal or None,
                    choice.get("index") or 0,
                )
            self.finish_reason = choice.get("finish_reason") or self.finish_reason

    def _response_event(self, kind: str, chunk: dict[str, Any]) -> Iterator[Delta]:
        if kind == "response.output_text.delta":
            yield Delta(content=chunk.get("delta") or None)
        elif kind in ("response.reasoning_text.delta", "response.reasoning.delta"):
            yield Delta(reasoning=chunk.get("delta") or None)
        elif kind == "response.function_call_arguments.delta":
            piece = {"index": chunk.get("output_index", 0)}
            yield Delta(tool_calls=[{**piece, "function": {"arguments": chunk.get("delta", "")}}])
        elif kind in _RESPONSE_ENDS:
            self.finish_reason = _RESPONSE_ENDS[kind]
            self.usage = (chunk.get("response") or {}).get("usage")
        elif kind == "error":
            self.failure = str(chunk.get("message") or "The upstream reported an error.")
        elif kind == "response.failed":
            error = (chunk.get("response") or {}).get("error") or {}
            self.failure = str(error.get("message") or "The upstream reported a failed response.")


def _message(payload: Any) -> str:
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)
