"""A whole OpenAI reply assembled from the upstream's stream chunks, nothing dropped.

    >>> chunks = [
    ...     {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
    ...      "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
    ...          {"index": 0, "id": "call_1", "type": "function",
    ...           "function": {"name": "add", "arguments": '{"a":'}}]}, "finish_reason": None}]},
    ...     {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
    ...          {"index": 0, "function": {"arguments": " 1}"}}]}, "finish_reason": "tool_calls"}]},
    ... ]
    >>> whole = chat_completion(chunks, usage=None)
    >>> whole["object"], whole["choices"][0]["message"]["tool_calls"][0]["function"]
    ('chat.completion', {'name': 'add', 'arguments': '{"a": 1}'})

The queue always streams from the upstream (so a slow reply is timed, cancellable and
visible to the native API as it grows); a client that asked for a whole reply gets what the
upstream would have answered: per choice, the content, the reasoning, the refusal, the
tool calls joined by `index` (their `arguments` arrive in pieces), the log-probabilities
joined in order, the finish reason; the upstream's id, created, model, system_fingerprint
and usage with its details.
"""

from __future__ import annotations

from typing import Any

__all__ = ["chat_completion", "text_completion"]

_TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")


def chat_completion(
    chunks: list[dict[str, Any]], usage: dict[str, Any] | None, logprobs: bool = False
) -> dict[str, Any]:
    """`chat.completion` from `chat.completion.chunk`s. With `logprobs` (the client asked for
    them) every choice has a `logprobs` object, its `content` empty if no token had any."""
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for part in chunk.get("choices") or ():
            choice = choices.setdefault(part.get("index") or 0, _new_choice(part, logprobs))
            message = choice["message"]
            delta = part.get("delta") or {}
            for name in _TEXT_FIELDS:
                if delta.get(name):
                    message[name] = (message.get(name) or "") + delta[name]
            for call in delta.get("tool_calls") or ():
                _merge_call(message.setdefault("tool_calls", []), call)
            _merge_logprobs(choice, part.get("logprobs"))
            choice["finish_reason"] = part.get("finish_reason") or choice["finish_reason"]
    return {
        **_head(chunks, "chat.completion"),
        "choices": [choices[i] for i in sorted(choices)],
        **({"usage": usage} if usage is not None else {}),
    }


def text_completion(chunks: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    """`text_completion` from its stream (legacy completions): text and logprobs joined."""
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for part in chunk.get("choices") or ():
            index = part.get("index") or 0
            choice = choices.setdefault(
                index, {"index": index, "text": "", "logprobs": None, "finish_reason": None}
            )
            choice["text"] += part.get("text") or ""
            new = part.get("logprobs")
            if isinstance(new, dict):
                old = choice["logprobs"] = choice["logprobs"] or {}
                for key, values in new.items():
                    if isinstance(values, list):
                        old.setdefault(key, []).extend(values)
            choice["finish_reason"] = part.get("finish_reason") or choice["finish_reason"]
    return {
        **_head(chunks, "text_completion"),
        "choices": [choices[i] for i in sorted(choices)],
        **({"usage": usage} if usage is not None else {}),
    }


def _head(chunks: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    first = chunks[0] if chunks else {}
    head: dict[str, Any] = {k: first[k] for k in ("id", "created", "model") if k in first}
    fingerprint = next(
        (c["system_fingerprint"] for c in chunks if c.get("system_fingerprint")), None
    )
    return {**head, "object": kind, "system_fingerprint": fingerprint}


def _new_choice(part: dict[str, Any], logprobs: bool) -> dict[str, Any]:
    message = {"role": (part.get("delta") or {}).get("role") or "assistant", "content": None}
    return {
        "index": part.get("index") or 0,
        "message": message,
        "logprobs": {"content": [], "refusal": None} if logprobs else None,
        "finish_reason": None,
    }


def _merge_call(calls: list[dict[str, Any]], piece: dict[str, Any]) -> None:
    index = piece.get("index", len(calls))
    while len(calls) <= index:
        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    call = calls[index]
    if piece.get("id"):
        call["id"] = piece["id"]
    if piece.get("type"):
        call["type"] = piece["type"]
    function = piece.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


def _merge_logprobs(choice: dict[str, Any], new: Any) -> None:
    if not isinstance(new, dict):
        return
    old = choice["logprobs"] = choice["logprobs"] or {"content": None, "refusal": None}
    for key in ("content", "refusal"):
        if new.get(key):
            if old.get(key) is None:
                old[key] = []
            old[key].extend(new[key])
