"""`POST /v1/responses`: OpenAI's Responses API over the same answer plans as chat.

    >>> to_chat_body({"input": "Hi", "instructions": "Be brief"})["messages"]
    [{'role': 'system', 'content': 'Be brief'}, {'role': 'user', 'content': 'Hi'}]

The body is turned into a chat request (instructions → system message, input items →
messages, flat `tools` and `text.format` → chat's nested ones), answered by the same plan
(text, JSON or function calls), and written as a `response` object — whole, or as OpenAI's
named events: response.created, response.in_progress, response.output_item.added,
response.content_part.added, response.output_text.delta …, response.completed. A reasoning
model's thinking is not sent here (only its answer).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from tlc_widgets.practice import wire
from tlc_widgets.practice.answer import Part, Plan
from tlc_widgets.practice.requests import BadRequest, ChatRequest
from tlc_widgets.practice.streams import Pace
from tlc_widgets.practice.text import count_prompt_tokens, message_text

__all__ = ["ResponseWriter", "to_chat_body"]


def _item_message(item: dict[str, Any]) -> dict[str, Any]:
    kind = item.get("type", "message")
    if kind == "function_call_output":
        return {"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output")}
    if kind == "function_call":
        call = {
            "id": item.get("call_id"),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if kind != "message" or not isinstance(item.get("role"), str):
        raise BadRequest("Each 'input' item must be a message with a 'role', or a function call.")
    return {"role": item["role"], "content": message_text(item.get("content"))}


def to_chat_body(body: Any) -> dict[str, Any]:
    """The chat-completions body that asks the same as this Responses body."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    raw = body.get("input")
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
    elif isinstance(raw, list) and all(isinstance(i, dict) for i in raw):
        messages.extend(_item_message(i) for i in raw)
    else:
        raise BadRequest("'input' is required: a string or an array of input items.")
    chat = {k: body[k] for k in ("model", "temperature", "seed", "ttl") if k in body}
    chat["max_tokens"] = body.get("max_output_tokens")
    tools = [
        {"type": "function", "function": {k: t[k] for k in ("name", "parameters") if k in t}}
        for t in body.get("tools") or []
        if isinstance(t, dict) and t.get("type") == "function"
    ]
    if tools:
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        choice = {"type": "function", "function": {"name": choice.get("name")}}
    if choice is not None:
        chat["tool_choice"] = choice
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": fmt}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    return chat | {"messages": messages, "parallel_tool_calls": body.get("parallel_tool_calls")}


class ResponseWriter:
    """One `response` object, written whole or as a stream of named events."""

    def __init__(self, chat: ChatRequest, plan: Plan, model: str, body: dict[str, Any]) -> None:
        self.chat, self.plan, self.model, self.body = chat, plan, model, body
        self.id = "resp_" + wire.new_completion_id("")
        self.msg_id = "msg_" + wire.new_completion_id("")
        self.created = int(time.time())
        self._seq = 0
        self._count = 0

    def _response(self, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        prompt = count_prompt_tokens(self.chat.messages)
        done = status == "completed"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "model": self.model,
            "output": output,
            "error": None,
            "incomplete_details": None,
            "instructions": self.body.get("instructions"),
            "max_output_tokens": self.body.get("max_output_tokens"),
            "parallel_tool_calls": self.chat.parallel_tool_calls,
            "temperature": self.chat.temperature,
            "top_p": None,
            "tool_choice": self.body.get("tool_choice", "auto"),
            "tools": self.body.get("tools") or [],
            "text": self.body.get("text") or {"format": {"type": "text"}},
            "metadata": {},
            "usage": {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self._count,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + self._count,
            }
            if done
            else None,
        }

    def _message(self, text: str, status: str) -> dict[str, Any]:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        content = [part] if status == "completed" else []
        return {
            "type": "message",
            "id": self.msg_id,
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def _calls(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "function_call",
                "id": "fc_" + call.id.removeprefix("call_"),
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
                "status": "completed",
            }
            for call in self.plan.calls
        ]

    def _event(self, name: str, **fields: Any) -> bytes:
        self._seq += 1
        return wire.sse({"type": name, "sequence_number": self._seq - 1, **fields}, event=name)

    async def whole(self, pace: Pace) -> dict[str, Any]:
        """The whole `response` object."""
        parts: list[Part] = []
        async with aclosing(pace.tokens(self.plan.parts)) as stream:
            parts.extend([p async for p in stream if not p.reasoning])
        self._count = len(parts)
        if self.plan.calls:
            return self._response("completed", self._calls())
        text = "".join(p.text for p in parts)
        return self._response("completed", [self._message(text, "completed")])

    def _message_started(self) -> list[bytes]:
        item = self._message("", "in_progress")
        empty = {"type": "output_text", "text": "", "annotations": []}
        where = {"output_index": 0, "item_id": self.msg_id}
        return [
            self._event("response.output_item.added", output_index=0, item=item),
            self._event("response.content_part.added", content_index=0, part=empty, **where),
        ]

    async def stream(self, pace: Pace) -> AsyncIterator[bytes]:
        """OpenAI's named events, ending with response.completed."""
        yield self._event("response.created", response=self._response("in_progress", []))
        yield self._event("response.in_progress", response=self._response("in_progress", []))
        text, started = "", False
        calls_started: set[int] = set()
        where = {"output_index": 0, "item_id": self.msg_id}
        async with aclosing(pace.tokens(self.plan.parts)) as stream:
            async for part in stream:
                if part.reasoning:
                    continue
                self._count += 1
                if part.call is not None:
                    fc = self._calls()[part.call_index]
                    at = {"output_index": part.call_index, "item_id": fc["id"]}
                    if part.call_index not in calls_started:
                        calls_started.add(part.call_index)
                        added = fc | {"arguments": "", "status": "in_progress"}
                        yield self._event("response.output_item.added", item=added, **at)
                    yield self._event(
                        "response.function_call_arguments.delta", delta=part.text, **at
                    )
                    continue
                if not started:
                    started = True
                    for event in self._message_started():
                        yield event
                text += part.text
                yield self._event(
                    "response.output_text.delta",
                    content_index=0,
                    delta=part.text,
                    logprobs=[],
                    **where,
                )
        if self.plan.calls:
            for index, fc in enumerate(self._calls()):
                at = {"output_index": index, "item_id": fc["id"]}
                yield self._event(
                    "response.function_call_arguments.done", arguments=fc["arguments"], **at
                )
                yield self._event("response.output_item.done", output_index=index, item=fc)
            yield self._event(
                "response.completed", response=self._response("completed", self._calls())
            )
            return
        if not started:
            for event in self._message_started():
                yield event
        message = self._message(text, "completed")
        yield self._event(
            "response.output_text.done", content_index=0, text=text, logprobs=[], **where
        )
        yield self._event(
            "response.content_part.done", content_index=0, part=message["content"][0], **where
        )
        yield self._event("response.output_item.done", output_index=0, item=message)
        yield self._event("response.completed", response=self._response("completed", [message]))
