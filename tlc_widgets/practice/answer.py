"""What one chat answer consists of: text tokens, JSON pieces or tool-call pieces, in order.

    >>> from tlc_widgets.practice.generator import default_model
    >>> from tlc_widgets.practice.requests import parse_chat_request
    >>> chat = parse_chat_request({"messages": [{"role": "user", "content": "Hi"}],
    ...     "response_format": {"type": "json_object"}}, "m")
    >>> plan = plan_answer(default_model(), chat, reasoning=False)
    >>> text = "".join(p.text for p in plan.parts)
    >>> plan.finish_reason, text.startswith('{"answer"')
    ('stop', True)

A `Part` is what one streamed chunk carries, so the server paces, counts and faults all three
kinds of answer the same way. Tool calls and JSON answers are not cut by `max_tokens` (a cut
would leave invalid JSON); `stop` sequences and logprobs apply to text answers only.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from tlc_widgets.practice.generation import Generation, Token
from tlc_widgets.practice.generator import MarkovModel
from tlc_widgets.practice.requests import ChatRequest
from tlc_widgets.practice.stops import StopCut
from tlc_widgets.practice.structured import json_text, json_value
from tlc_widgets.practice.text import prompt_text, stable_seed
from tlc_widgets.practice.tools import chosen_tools, new_call_id, pieces
from tlc_widgets.practice.wire import ToolCall

__all__ = ["Part", "Plan", "plan_answer"]

_WORDS_FOR_VALUES = 80  # Markov words generated to fill strings in JSON and arguments


@dataclass(frozen=True)
class Part:
    """One chunk's worth: text (`reasoning` or not), or a piece of tool call `call`."""

    text: str
    reasoning: bool = False
    #: Tokens whose probabilities this part carries (text answers only).
    tokens: tuple[Token, ...] = ()
    call: ToolCall | None = None
    call_index: int = 0
    first_of_call: bool = False


@dataclass
class Plan:
    """The parts of one answer; `finish_reason` is final once `parts` is exhausted."""

    parts: Iterator[Part]
    calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"


def _words(model: MarkovModel, chat: ChatRequest) -> list[str]:
    generation = model.generate(chat.messages, seed=chat.seed, max_tokens=_WORDS_FOR_VALUES)
    return [t.text.strip() for t in generation]


def plan_answer(model: MarkovModel, chat: ChatRequest, reasoning: bool) -> Plan:
    """Tool calls if the tool rule says so, else JSON if asked for, else Markov text."""
    whole, _ = prompt_text(chat.messages)
    rng = random.Random(stable_seed(whole, chat.seed, "structured"))
    tools = chosen_tools(chat.tools, chat.tool_choice, chat.messages, chat.parallel_tool_calls)
    if tools:
        words = _words(model, chat)
        calls = [
            ToolCall(new_call_id(rng), t.name, _json(json_value(t.parameters, rng, words)))
            for t in tools
        ]
        plan = Plan(iter(()), calls, "tool_calls")
        plan.parts = _call_parts(calls)
        return plan
    if chat.response_format is not None:
        text = json_text(chat.response_format, rng, _words(model, chat), whole)
        return Plan(iter([Part(p) for p in pieces(text)]))
    generation = model.generate(
        chat.messages,
        seed=chat.seed,
        temperature=chat.temperature,
        max_tokens=chat.max_tokens,
        reasoning=reasoning,
        top_logprobs=chat.top_logprobs if chat.logprobs else 0,
    )
    plan = Plan(iter(()))
    plan.parts = _text_parts(generation, StopCut(chat.stop), plan)
    return plan


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _call_parts(calls: list[ToolCall]) -> Iterator[Part]:
    for index, call in enumerate(calls):
        for n, piece in enumerate(pieces(call.arguments)):
            yield Part(piece, call=call, call_index=index, first_of_call=n == 0)


def _text_parts(generation: Generation, cut: StopCut, plan: Plan) -> Iterator[Part]:
    pending: list[Token] = []  # tokens whose text is (partly) held back by the stop cut
    for token in generation:
        if token.reasoning:
            yield Part(token.text, reasoning=True)
            continue
        pending.append(token)
        text = cut.feed(token.text)
        if cut.stopped:
            if text:
                yield Part(text, tokens=tuple(pending))
            plan.finish_reason = "stop"
            return
        if text:
            yield Part(text, tokens=tuple(pending))
            pending = []
    rest = cut.flush()
    if rest or pending:
        yield Part(rest, tokens=tuple(pending))
    plan.finish_reason = generation.finish_reason or "stop"
