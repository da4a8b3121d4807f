"""A scripted OpenAI-compatible upstream on loopback: canned LM Studio-shaped replies.

Until the practice model speaks tools, JSON-schema output, logprobs, embeddings,
completions and responses, the door is tested against this: a small starlette app that
answers like LM Studio, deterministically (the same request gets the same bytes), and keeps
every body it received so a test can compare what reached the upstream through the queue
with what reached it directly.

What it answers to a chat request:
- `tools` given: a call to a tool — the forced one (`tool_choice`), else the first that is
  not a `final_result*` output tool; after a tool result, the `final_result*` tool if there
  is one, else text. Arguments follow the tool's JSON schema and arrive in pieces.
- `response_format` json_schema / json_object: JSON text in pieces.
- a user message starting `echo:`: the rest, written in raw-byte pieces (multi-byte
  characters split across writes, U+2028 etc. raw in the JSON, as LM Studio writes them).
- a user message starting `stall:`: a stream that never ends (it holds a slot).
- otherwise a fixed short reply. `logprobs: true` adds log-probabilities to every piece.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL, EMBEDDER = "scripted-chat", "scripted-embed"
REPLY = "Once upon a time, a fox met a crow."
FINGERPRINT = "fp_scripted_1"


def _value(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return _value(schema["anyOf"][0])
    if kind == "object" or "properties" in schema:
        return {k: _value(v) for k, v in (schema.get("properties") or {}).items()}
    return {"string": "yes", "integer": 3, "number": 1.5, "boolean": True, "array": []}.get(
        str(kind), None
    )


def _pieces(text: str, size: int = 5) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _raw(obj: Any) -> bytes:
    # LM Studio's JSON writer: non-ASCII raw, U+2028/2029/0085 included.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class Scripted:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/models", self.models),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/responses", self.responses, methods=["POST"]),
            ]
        )

    async def models(self, request: Request) -> Response:
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "organization_owner"}
            for m in (MODEL, EMBEDDER)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _body(self, request: Request, endpoint: str) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.received.append((endpoint, body))
        return body

    # ------------------------------------------------------------------ chat

    async def chat(self, request: Request) -> Response:
        body = await self._body(request, "chat/completions")
        if str((body.get("messages") or [{}])[-1].get("content")).startswith("stall:"):
            return StreamingResponse(_stall(), media_type="text/event-stream")
        rid = "chatcmpl-" + hashlib.sha256(_raw(body.get("messages"))).hexdigest()[:12]
        head = {"id": rid, "object": "chat.completion.chunk", "created": 1700000001}
        head |= {"model": body["model"], "system_fingerprint": FINGERPRINT}
        text, calls = self._script(body)
        with_logprobs = bool(body.get("logprobs"))
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        for i, call in enumerate(calls):
            args = json.dumps(call["arguments"])
            first = {"index": i, "id": f"call_{i}", "type": "function"}
            deltas.append(
                {"tool_calls": [{**first, "function": {"name": call["name"], "arguments": ""}}]}
            )
            for piece in _pieces(args, 4):
                deltas.append({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        pieces = _pieces(text) if text is not None else []
        deltas += [{"content": p} for p in pieces]
        finish = "tool_calls" if calls else "stop"
        usage = {
            "prompt_tokens": 11,
            "completion_tokens": len(deltas) - 1,
            "total_tokens": 10 + len(deltas),
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

        def logprobs(delta: dict[str, Any]) -> dict[str, Any] | None:
            if not with_logprobs or not delta.get("content"):
                return None
            token = delta["content"]
            entry = {"token": token, "logprob": -0.25, "bytes": list(token.encode())}
            return {"content": [{**entry, "top_logprobs": []}], "refusal": None}

        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                message["tool_calls"] = [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                    }
                    for i, c in enumerate(calls)
                ]
            lp = [x for d in deltas if (x := logprobs(d))]
            choice = {
                "index": 0,
                "message": message,
                "logprobs": {"content": [e for x in lp for e in x["content"]], "refusal": None}
                if with_logprobs
                else None,
                "finish_reason": finish,
            }
            whole = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            return Response(_raw(whole), media_type="application/json")
        frames = [
            {
                **head,
                "choices": [
                    {"index": 0, "delta": d, "logprobs": logprobs(d), "finish_reason": None}
                ],
            }
            for d in deltas
        ]
        frames.append(
            {
                **head,
                "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}],
            }
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append({**head, "choices": [], "usage": usage})
        return _sse([b"data: " + _raw(f) + b"\n\n" for f in frames] + [b"data: [DONE]\n\n"])

    def _script(self, body: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
        messages = body.get("messages") or []
        tools = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function"]
        last = messages[-1] if messages else {}
        if tools:
            forced = body.get("tool_choice")
            name = forced["function"]["name"] if isinstance(forced, dict) else None
            outputs = [t for t in tools if t["name"].startswith("final_result")]
            others = [t for t in tools if t not in outputs]
            if name is None and last.get("role") == "tool":
                tool = outputs[0] if outputs else None
            else:
                tool = next((t for t in tools if t["name"] == name), None) or (others or outputs)[0]
            if tool is not None:
                return None, [
                    {"name": tool["name"], "arguments": _value(tool.get("parameters") or {})}
                ]
            return "The tool says: " + str(last.get("content")), []
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return json.dumps(_value(fmt["json_schema"].get("schema") or {})), []
        if fmt.get("type") == "json_object":
            return json.dumps({"answer": "yes"}), []
        content = last.get("content")
        if isinstance(content, str) and content.startswith("echo:"):
            return content[5:], []
        return REPLY, []

    # ------------------------------------------------------------------ the others

    async def completions(self, request: Request) -> Response:
        body = await self._body(request, "completions")
        head = {"id": "cmpl-scripted", "object": "text_completion", "created": 1700000002}
        head["model"] = body["model"]
        usage = {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}
        if not body.get("stream"):
            choice = {"index": 0, "text": REPLY, "logprobs": None, "finish_reason": "stop"}
            return JSONResponse({**head, "choices": [choice], "usage": usage})
        frames = [
            {**head, "choices": [{"index": 0, "text": p, "logprobs": None, "finish_reason": None}]}
            for p in _pieces(REPLY)
        ]
        frames.append(
            {
                **head,
                "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}],
            }
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append({**head, "choices": [], "usage": usage})
        return _sse([b"data: " + _raw(f) + b"\n\n" for f in frames] + [b"data: [DONE]\n\n"])

    async def embeddings(self, request: Request) -> Response:
        body = await self._body(request, "embeddings")
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [b / 255 for b in hashlib.sha256(str(t).encode()).digest()[:8]],
            }
            for i, t in enumerate(inputs)
        ]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        return JSONResponse(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    async def responses(self, request: Request) -> Response:
        body = await self._body(request, "responses")
        text = REPLY
        item = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed"}
        item["content"] = [{"type": "output_text", "text": text, "annotations": []}]
        response = {
            "id": "resp_scripted",
            "object": "response",
            "created_at": 1700000003,
            "model": body["model"],
            "status": "completed",
            "output": [item],
            "usage": {"input_tokens": 4, "output_tokens": 8, "total_tokens": 12},
        }
        if not body.get("stream"):
            return JSONResponse(response)
        events: list[dict[str, Any]] = [
            {
                "type": "response.created",
                "response": {**response, "status": "in_progress", "output": []},
            },
        ]
        events += [
            {
                "type": "response.output_text.delta",
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": p,
            }
            for p in _pieces(text)
        ]
        events.append({"type": "response.completed", "response": response})
        frames = []
        for n, event in enumerate(events):
            event["sequence_number"] = n
            frames.append(f"event: {event['type']}\n".encode() + b"data: " + _raw(event) + b"\n\n")
        return _sse(frames)


async def _stall() -> AsyncIterator[bytes]:
    """A reply that starts and never goes on: it holds its slot until it is cancelled."""
    import anyio

    yield b": thinking\n\n"
    await anyio.sleep_forever()


def _sse(frames: list[bytes]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for f in frames:
            # Each frame in two writes, cut inside its first multi-byte character if it has
            # one: readers must join bytes across network chunks before decoding.
            lead = next((i for i, b in enumerate(f) if b >= 0xC0), None)
            cut = len(f) // 2 if lead is None else lead + 1
            yield f[:cut]
            yield f[cut:]

    return StreamingResponse(body(), media_type="text/event-stream")
