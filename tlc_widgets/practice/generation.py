"""One answer of the Markov chain, token by token, with each token's real probability.

    >>> from tlc_widgets.practice.generator import default_model
    >>> gen = default_model().generate("Once upon a time", seed=3, top_logprobs=2)
    >>> first = next(gen)
    >>> first.logprob <= 0.0, len(first.top) <= 2
    (True, True)

A token's `logprob` is the natural log of the probability the chain gave the word it drew, at
the request's temperature and with the prompt's words boosted — the very weights it drew
from. `top` lists the most likely words at that step. Two simplifications, said here so the
numbers stay honest: the blank line or space before a word is not part of its probability,
and the fixed "thinking" lead-in has probability 1 (logprob 0).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, NamedTuple

from tlc_widgets.practice.text import ends_sentence

if TYPE_CHECKING:
    from tlc_widgets.practice.generator import MarkovModel

__all__ = ["FinishReason", "Generation", "Step", "Token"]

FinishReason = Literal["stop", "length"]
_PARAGRAPH = 0.15  # chance that a new sentence starts a new paragraph
_OVERRUN = 60  # tokens past the drawn length we keep looking for a sentence end


class Step(NamedTuple):
    """One word the chain drew, with its log probability and the top alternatives."""

    word: str
    logprob: float = 0.0
    top: tuple[tuple[str, float], ...] = ()


class Token(NamedTuple):
    """One generated word with its leading space; `reasoning` marks "thinking" tokens."""

    text: str
    reasoning: bool = False
    logprob: float = 0.0
    #: The most likely tokens at this step (with the same leading space), best first.
    top: tuple[tuple[str, float], ...] = ()


class Generation:
    """The tokens of one answer, in order; `finish_reason` is "stop" or "length" at the end.

    >>> from tlc_widgets.practice.generator import default_model
    >>> gen = default_model().generate("Once upon a time", seed=3)
    >>> text = "".join(t.text for t in gen)
    >>> gen.finish_reason
    'stop'
    """

    def __init__(
        self,
        model: MarkovModel,
        rng: random.Random,
        topic: list[str],
        max_tokens: int | None,
        temperature: float,
        reasoning: bool,
        top_logprobs: int = 0,
        length: tuple[int, int] = (30, 120),
    ) -> None:
        self.finish_reason: FinishReason | None = None
        self.topic = topic
        self._model, self._rng, self._limit = model, rng, max_tokens
        self._temp, self._reasoning, self._top = temperature, reasoning, top_logprobs
        self._length = length
        self._it = self._run()

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> Token:
        return next(self._it)

    def _passage(self, lead: list[str], low: int, high: int) -> Iterator[Step]:
        """`lead`, then Markov text ending at a sentence end after `low..high` words."""
        yield from (Step(w) for w in lead)
        length = self._rng.randint(low, high)
        steps = self._model.steps(self._rng, self.topic, self._temp, self._top)
        for n, step in enumerate(steps, start=1):
            yield step
            end = ends_sentence(step.word)
            if (end and n >= length) or n >= length + _OVERRUN:
                return

    def _thinking(self) -> Iterator[Step]:
        about = self.topic[0] if self.topic else "this"
        lead = f"Okay, the user asks about {about}. Let me recall what the stories say.".split()
        yield from self._passage(lead, 12, 40)
        yield from (Step(w) for w in "So I will answer with that.".split())

    def _run(self) -> Iterator[Token]:
        count = 0
        parts: list[tuple[bool, Iterator[Step]]] = []
        if self._reasoning:
            parts.append((True, self._thinking()))
        parts.append((False, self._passage([], *self._length)))
        for is_reasoning, steps in parts:
            previous = ""
            for step in steps:
                if self._limit is not None and count >= self._limit:
                    self.finish_reason = "length"
                    return
                if not previous:
                    sep = ""
                elif ends_sentence(previous) and self._rng.random() < _PARAGRAPH:
                    sep = "\n\n"  # real chat answers come in paragraphs; Markdown shows them
                else:
                    sep = " "
                top = tuple((sep + w, lp) for w, lp in step.top)
                yield Token(sep + step.word, is_reasoning, step.logprob, top)
                previous = step.word
                count += 1
        self.finish_reason = "stop"
