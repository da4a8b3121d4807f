"""Writing one chat answer, streamed or whole, with the faults it arrived with.

    >>> from tlc_widgets.practice.faults import Faults
    >>> Faults(fail_after_tokens=1).first_stream_fault()
    ('fail_after_tokens', 1)

`ChatWriter` turns a `Plan` (text, JSON or tool-call parts) into OpenAI's chunks or its whole
`chat.completion`, at the model's pace. Every fault counts parts: a token, or a piece of JSON
or of a tool call's arguments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

import anyio
from fastapi.responses import JSONResponse
from starlette.responses import Response

from tlc_widgets.practice import catalog, wire
from tlc_widgets.practice.answer import Part, Plan
from tlc_widgets.practice.faults import FAIL_MESSAGE, Faults
from tlc_widgets.practice.requests import ChatRequest
from tlc_widgets.practice.slots import Lease
from tlc_widgets.practice.streams import DroppedOnPurpose, Pace
from tlc_widgets.practice.text import count_prompt_tokens

__all__ = ["ChatWriter"]


@dataclass
class ChatWriter:
    """One answer to write: the request, its plan, pace, faults and the reply's identity."""

    chat: ChatRequest
    plan: Plan
    pace: Pace
    faults: Faults
    reply: wire.Reply
    #: A reasoning model always has `reasoning_content` in its whole answer, even if empty.
    reasoning_model: bool = False

    def _usage(self, parts: list[Part]) -> dict[str, object]:
        reasoning = sum(1 for p in parts if p.reasoning)
        return wire.usage(count_prompt_tokens(self.chat.messages), len(parts), reasoning)

    def _chunk(self, part: Part) -> bytes:
        if part.call is not None:
            return wire.sse(
                wire.tool_call_chunk(
                    self.reply, part.call_index, part.call, part.text, part.first_of_call
                )
            )
        logprobs = part.tokens if self.chat.logprobs and not part.reasoning else None
        return wire.sse(wire.delta_chunk(self.reply, part.text, part.reasoning, logprobs))

    async def stream(self, lease: Lease) -> AsyncIterator[bytes]:
        """The chunks, then the final chunk, usage if asked, and `[DONE]` (or a fault)."""
        fault = self.faults.first_stream_fault()
        sent: list[Part] = []
        async with aclosing(self.pace.tokens(self.plan.parts)) as parts:
            async for part in parts:
                if fault is not None and len(sent) == fault[1]:
                    break
                yield self._chunk(part)
                sent.append(part)
        if fault is not None and len(sent) == fault[1]:
            name = fault[0]
            if name == "stall_after_tokens":
                await anyio.sleep_forever()  # until the client gives up and starlette cancels us
            lease.ended_by_server = True
            if name == "fail_after_tokens":
                yield wire.sse(catalog.server_error(FAIL_MESSAGE))
            elif name == "drop_after_tokens":
                raise DroppedOnPurpose(f"practice fault: {name}={len(sent)}")
            return  # fail and truncate: end the body cleanly, without [DONE]
        yield wire.sse(wire.final_chunk(self.reply, self.plan.finish_reason))
        if self.chat.include_usage:
            yield wire.sse(wire.usage_chunk(self.reply, self._usage(sent)))
        lease.ended_by_server = True
        yield wire.DONE

    async def complete(self) -> Response:
        """The whole `chat.completion` (a 500 if the fail fault fires first)."""
        fail = self.faults.fail_after_tokens
        sent: list[Part] = []
        async with aclosing(self.pace.tokens(self.plan.parts)) as parts:
            async for part in parts:
                if len(sent) == fail:
                    break
                sent.append(part)
        if len(sent) == fail:
            return JSONResponse(catalog.server_error(FAIL_MESSAGE), status_code=500)
        thinking = [p.text for p in sent if p.reasoning]
        content = "".join(p.text for p in sent if not p.reasoning)
        tokens = [t for p in sent if not p.reasoning for t in p.tokens]
        body = wire.completion(
            self.reply,
            content=None if self.plan.calls else content,
            reasoning="".join(thinking) if thinking or self.reasoning_model else None,
            finish_reason=self.plan.finish_reason,
            usage_=self._usage(sent),
            tool_calls=self.plan.calls,
            logprobs=tokens if self.chat.logprobs else None,
        )
        return JSONResponse(body)
