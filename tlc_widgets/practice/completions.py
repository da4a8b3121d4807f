"""`POST /v1/completions`: the legacy text completion, streamed or whole.

    >>> req = parse_completion_request({"prompt": "Once upon a time", "logprobs": 2}, "m")
    >>> req.prompts, req.logprobs
    (['Once upon a time'], 2)

The practice model continues each prompt (several prompts: one choice each). `logprobs`
(0–5) gives OpenAI's legacy shape — `tokens`, `token_logprobs`, `top_logprobs` (a dict per
token) and `text_offset` — from the chain's real probabilities.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from tlc_widgets.practice import wire
from tlc_widgets.practice.generation import Token
from tlc_widgets.practice.generator import MarkovModel
from tlc_widgets.practice.requests import BadRequest, number, parse_stop
from tlc_widgets.practice.stops import StopCut
from tlc_widgets.practice.streams import Pace

__all__ = ["CompletionRequest", "TextCompletion", "parse_completion_request"]

_MAX_LOGPROBS = 5  # OpenAI's limit for the legacy endpoint


@dataclass(frozen=True)
class CompletionRequest:
    """The fields of `POST /v1/completions` the practice model uses."""

    model: str
    prompts: list[str]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    echo: bool = False


def parse_completion_request(body: Any, default_model: str) -> CompletionRequest:
    """Check a decoded body; `prompt` is a string or an array of strings."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = list(prompt)
    else:
        raise BadRequest("'prompt' is required: a string or an array of strings.")
    logprobs = number(body, "logprobs", int)
    if logprobs is not None and not 0 <= logprobs <= _MAX_LOGPROBS:
        raise BadRequest(f"'logprobs' must be between 0 and {_MAX_LOGPROBS}.")
    model = body.get("model") or default_model
    if not isinstance(model, str):
        raise BadRequest("'model' must be a string.")
    options = body.get("stream_options") or {}
    return CompletionRequest(
        model=model,
        prompts=prompts,
        stream=bool(body.get("stream", False)),
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        max_tokens=number(body, "max_tokens", int),
        temperature=number(body, "temperature", float),
        seed=number(body, "seed", int),
        stop=parse_stop(body.get("stop")),
        logprobs=logprobs,
        echo=bool(body.get("echo", False)),
    )


def _legacy_logprobs(tokens: list[Token], offset: int) -> dict[str, Any]:
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token.text)
    return {
        "tokens": [t.text for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [dict(t.top) for t in tokens],
        "text_offset": offsets,
    }


class TextCompletion:
    """One `text_completion` answer: its choices' tokens, paced, as chunks or a whole body."""

    def __init__(self, model: MarkovModel, request: CompletionRequest, spec_id: str) -> None:
        self.request, self.model, self.spec_id = request, model, spec_id
        self.id = wire.new_completion_id("cmpl-")
        self.created = int(time.time())
        self.finish: dict[int, str] = {}
        self.counts: dict[int, int] = {}

    def _base(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.spec_id,
            "system_fingerprint": self.spec_id,
            "choices": choices,
        }

    def _pieces(self) -> Iterator[tuple[int, str, list[Token]]]:
        """`(choice index, text to send, tokens it carries)`; echo first, then the tokens."""
        req = self.request
        for index, prompt in enumerate(req.prompts):
            if req.echo:
                yield index, prompt, []
            generation = self.model.generate(
                prompt,
                seed=req.seed,
                temperature=req.temperature,
                max_tokens=req.max_tokens,
                top_logprobs=req.logprobs or 0,
            )
            cut, count = StopCut(req.stop), 0
            pending: list[Token] = []
            for token in generation:
                pending.append(token)
                count += 1
                text = cut.feed(token.text)
                if text or cut.stopped:
                    yield index, text, pending
                    pending = []
                if cut.stopped:
                    break
            rest = cut.flush()
            if rest:
                yield index, rest, pending
            self.counts[index] = count
            self.finish[index] = "stop" if cut.stopped else (generation.finish_reason or "stop")

    def _usage(self) -> dict[str, Any]:
        prompt = sum(len(p.split()) for p in self.request.prompts)
        return wire.usage(prompt, sum(self.counts.values()))

    def _choice(self, index: int, text: str, tokens: list[Token], offset: int) -> dict[str, Any]:
        logprobs = None if self.request.logprobs is None else _legacy_logprobs(tokens, offset)
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": None}

    async def stream(self, pace: Pace) -> AsyncIterator[bytes]:
        """One chunk per piece, a finishing chunk per choice, usage if asked, `[DONE]`."""
        offsets: dict[int, int] = {}
        async with aclosing(pace.tokens(self._pieces())) as pieces:
            async for index, text, tokens in pieces:
                offset = offsets.get(index, 0)
                yield wire.sse(self._base([self._choice(index, text, tokens, offset)]))
                offsets[index] = offset + len(text)
        for index in range(len(self.request.prompts)):
            end = {"index": index, "text": "", "logprobs": None}
            yield wire.sse(self._base([end | {"finish_reason": self.finish[index]}]))
        if self.request.include_usage:
            yield wire.sse(self._base([]) | {"usage": self._usage()})
        yield wire.DONE

    async def whole(self, pace: Pace) -> dict[str, Any]:
        """The whole `text_completion` body."""
        texts: dict[int, str] = {}
        tokens: dict[int, list[Token]] = {}
        async with aclosing(pace.tokens(self._pieces())) as pieces:
            async for index, text, carried in pieces:
                texts[index] = texts.get(index, "") + text
                tokens.setdefault(index, []).extend(carried)
        choices = []
        for index in range(len(self.request.prompts)):
            start = len(self.request.prompts[index]) if self.request.echo else 0
            choice = self._choice(index, texts.get(index, ""), tokens.get(index, []), start)
            choices.append(choice | {"finish_reason": self.finish[index]})
        return self._base(choices) | {"usage": self._usage()}
