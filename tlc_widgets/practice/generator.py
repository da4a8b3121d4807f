"""A word-level Markov chain: the practice model's "brain" (statistics, not an LLM).

    >>> model = default_model()
    >>> gen = model.generate("Tell me about the White Rabbit", seed=1, max_tokens=8)
    >>> tokens = [t.text for t in gen]
    >>> len(tokens), gen.finish_reason
    (8, 'length')

Each token is one word with its leading space (" upon", " time,"), like an LLM's tokens. The
answer is drawn from a `random.Random` seeded by a stable hash of the prompt (plus `seed` and
`temperature`), so the same prompt always gives the same answer, and it starts from and keeps
returning to words of the last user message, so the answer is *about* the prompt.

Pure: no I/O apart from reading the shipped corpus through `importlib.resources`.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from itertools import pairwise
from typing import Any, NamedTuple

from tlc_widgets.practice.generation import FinishReason, Generation, Step, Token
from tlc_widgets.practice.text import (
    STOP_WORDS,
    Prompt,
    capitalise,
    count_prompt_tokens,
    ends_sentence,
    normal,
    prompt_text,
    stable_seed,
)

__all__ = [
    "FinishReason",
    "Generation",
    "MarkovModel",
    "Prompt",
    "Token",
    "count_prompt_tokens",
    "default_model",
    "prompt_text",
]

_normal = normal  # the old private name, used by tests

# Start a sentence from "the Rabbit", not from "Rabbit".
_LEAD_INS = frozenset("the a an my his her their its this that your our".split())
_MIN_LEN, _MAX_LEN = 30, 120  # natural answer length, in tokens, drawn per prompt
_STEER_BOOST = 4.0  # how much more likely a prompt word is than its corpus count says
_JUMP_TO_TOPIC = 0.35  # chance that a new sentence restarts at a prompt word


def _scaled(step: Step, p: float) -> Step:
    """`step` after a choice of probability `p` (to restart on topic, or not)."""
    if p == 1.0:
        return step
    top = tuple((w, lp + math.log(p)) for w, lp in step.top)
    return Step(step.word, step.logprob + math.log(p), top)


class _Choices(NamedTuple):
    words: tuple[str, ...]
    counts: tuple[int, ...]


def _freeze(table: Mapping[Any, Counter[str]]) -> dict[Any, _Choices]:
    return {k: _Choices(tuple(c), tuple(c.values())) for k, c in table.items()}


def _top(pairs: Sequence[tuple[str, float]], k: int) -> tuple[tuple[str, float], ...]:
    best = heapq.nlargest(k, pairs, key=lambda p: p[1])
    return tuple((w, math.log(p)) for w, p in best)


class MarkovModel:
    """An order-2 word Markov chain (falls back to order 1, then to a fresh sentence).

    >>> m = MarkovModel("The cat sat. The dog sat. The cat ran.")
    >>> sorted(m.vocabulary)
    ['cat', 'dog', 'ran', 'sat', 'the']
    """

    def __init__(self, text: str) -> None:
        words = [w for w in text.replace('"', " ").split() if w]
        if len(words) < 3:
            raise ValueError("a Markov model needs a text of at least three words")
        self._words = words
        order2: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        order1: defaultdict[str, Counter[str]] = defaultdict(Counter)
        positions: defaultdict[str, list[int]] = defaultdict(list)
        for i, word in enumerate(words):
            positions[_normal(word)].append(i)
            if i + 1 < len(words):
                order1[word][words[i + 1]] += 1
            if i + 2 < len(words):
                order2[(word, words[i + 1])][words[i + 2]] += 1
        self._order2 = _freeze(order2)
        self._order1 = _freeze(order1)
        self._positions = dict(positions)
        self._starts = [
            i
            for i in range(1, len(words) - 1)
            if ends_sentence(words[i - 1]) and words[i][:1].isupper()
        ] or [0]
        self._start_counts = Counter(words[i] for i in self._starts)

    @property
    def vocabulary(self) -> frozenset[str]:
        """Normalised words the model knows (lower case, no punctuation)."""
        return frozenset(w for w in self._positions if w)

    def keywords(self, text: str) -> list[str]:
        """Words of `text` worth steering towards: known to the model and not too common.

        >>> default_model().keywords("Tell me about the fox and the rabbit")
        ['fox', 'rabbit']
        """
        found: dict[str, None] = {}
        for raw in text.split():
            word = _normal(raw)
            if len(word) > 2 and word not in STOP_WORDS and word in self._positions:
                found[word] = None
        return list(found)

    def generate(
        self,
        messages_or_prompt: Prompt,
        *,
        seed: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        reasoning: bool = False,
        top_logprobs: int = 0,
    ) -> Generation:
        """Tokens answering the prompt; `finish_reason` is set once the iterator is exhausted.

        `max_tokens` None or ≤ 0 means no limit (LM Studio accepts -1 for that). With
        `reasoning`, a short "thinking" passage (tokens with `reasoning=True`) comes first;
        its tokens count towards `max_tokens`, as they do for real reasoning models.
        `top_logprobs` > 0 fills each token's `top` with that many most likely words.
        """
        whole, last_user = prompt_text(messages_or_prompt)
        rng = random.Random(stable_seed(whole, seed, temperature))
        limit = max_tokens if max_tokens is not None and max_tokens > 0 else None
        # Temperature sharpens (< 1) or flattens (> 1) the corpus counts; 0 is nearly greedy.
        temp = 1.0 if temperature is None else min(max(temperature, 0.1), 2.0)
        topic = self.keywords(last_user)
        return Generation(
            self, rng, topic, limit, temp, reasoning, top_logprobs, (_MIN_LEN, _MAX_LEN)
        )

    # -- used by Generation -------------------------------------------------------------------

    def _start(
        self, rng: random.Random, topic: Sequence[str], on_topic: bool, top_k: int
    ) -> tuple[list[str], Step]:
        """A new sentence's first words, and the first one's step (probability of the draw)."""
        if on_topic and topic:
            keyword = rng.choice(topic)
            i = rng.choice(self._positions[keyword])
            # Take up to two words before it that belong to it: "the White Rabbit".
            for _ in range(2):
                before = self._words[i - 1] if i > 0 else "."
                if ends_sentence(before) or not (
                    normal(before) in _LEAD_INS or before[:1].isupper()
                ):
                    break
                i -= 1
            # Each prompt word is equally likely; lead-ins ("the") are folded into it.
            share = 1.0 / len(topic)
            words = self._words[i : i + 2]
            # The drawn keyword may have taken a lead-in ("the"): name it as it is said.
            top = [(capitalise(words[0] if k == keyword else k), share) for k in topic]
        else:
            i = rng.choice(self._starts)
            share = self._start_counts[self._words[i]] / len(self._starts)
            pairs = [(w, c / len(self._starts)) for w, c in self._start_counts.items()]
            top = pairs if top_k else []
            words = self._words[i : i + 2]
        return words, Step(capitalise(words[0]), math.log(share), _top(top, top_k))

    def _follow(self, w1: str, w2: str, top_k: int) -> Step:
        """The step from `w1` to `w2` as the chain sees it (order-1: a start's second word)."""
        choices = self._order1.get(w1)
        if choices is None or w2 not in choices.words:
            return Step(w2)
        total = sum(choices.counts)
        pairs = [(w, c / total) for w, c in zip(choices.words, choices.counts, strict=True)]
        share = choices.counts[choices.words.index(w2)] / total
        return Step(w2, math.log(share), _top(pairs, top_k) if top_k else ())

    def _next(
        self, rng: random.Random, w1: str, w2: str, topic: frozenset[str], temp: float, top_k: int
    ) -> Step | None:
        choices = self._order2.get((w1, w2)) or self._order1.get(w2)
        if choices is None:
            return None
        weights = [
            count ** (1.0 / temp) * (_STEER_BOOST if normal(w) in topic else 1.0)
            for w, count in zip(choices.words, choices.counts, strict=True)
        ]
        index = rng.choices(range(len(weights)), weights)[0]
        total = sum(weights)
        top = (
            _top([(w, x / total) for w, x in zip(choices.words, weights, strict=True)], top_k)
            if top_k
            else ()
        )
        return Step(choices.words[index], math.log(weights[index] / total), top)

    def steps(
        self, rng: random.Random, topic: Sequence[str], temp: float, top_k: int = 0
    ) -> Iterator[Step]:
        """Endless words with their probabilities; the first sentence starts on topic."""
        topic_set = frozenset(topic)
        restart: bool | None = True  # True: restart on topic, False: anywhere, None: go on
        jumped = 1.0  # the probability of the choice to restart or go on, after a sentence end
        state: list[str] = []
        while True:
            if restart is not None:
                state, first = self._start(rng, topic, restart, top_k)
                yield _scaled(first, jumped)
                # Keep the corpus spelling as the chain's state, but say it capitalised.
                yield from (self._follow(a, b, top_k) for a, b in pairwise(state))
            w1, w2 = state[-2] if len(state) > 1 else "", state[-1]
            jumped = 1.0
            if ends_sentence(w2) and topic:
                if rng.random() < _JUMP_TO_TOPIC:
                    restart, jumped = True, _JUMP_TO_TOPIC  # steer back to the prompt's words
                    continue
                jumped = 1.0 - _JUMP_TO_TOPIC
            step = self._next(rng, w1, w2, topic_set, temp, top_k)
            restart = False if step is None else None  # a dead end: a fresh sentence anywhere
            if step is not None:
                state = [w2, step.word]
                yield _scaled(step, jumped)


def _read_corpus() -> str:
    texts = []
    corpus = resources.files("tlc_widgets.practice").joinpath("corpus")
    for entry in sorted(corpus.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".txt"):
            _header, _, body = entry.read_text(encoding="utf-8").partition("\n")
            texts.append(body)
    return "\n".join(texts)


@cache
def default_model() -> MarkovModel:
    """The model trained on the shipped corpus (trained once per process, in well under 0.3 s)."""
    return MarkovModel(_read_corpus())
