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

import hashlib
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any, Literal, NamedTuple

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

#: A bare prompt string, or OpenAI chat messages (`content` a string or a list of text parts).
Prompt = str | Sequence[Mapping[str, Any]]
FinishReason = Literal["stop", "length"]


class Token(NamedTuple):
    """One generated word with its leading space; `reasoning` marks "thinking" tokens."""

    text: str
    reasoning: bool = False


_SENTENCE_END = re.compile(r"[.!?][)'\"’”]*$")
_WORD_CHARS = re.compile(r"[^a-z0-9']+")
# Words too common to say what a prompt is about.
_STOP_WORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been am i "
    "me my you your he she it we they them his her its our their this that these those what "
    "which who whom how why when where there here do does did not no yes so can could would "
    "should will shall may might must about tell please give some any all one just like into "
    "out up down than then too very also have has had let lets let's say write explain "
    "describe know".split()
)
# Start a sentence from "the Rabbit", not from "Rabbit".
_LEAD_INS = frozenset("the a an my his her their its this that your our".split())
_MIN_LEN, _MAX_LEN = 30, 120  # natural answer length, in tokens, drawn per prompt
_OVERRUN = 60  # tokens past the drawn length we keep looking for a sentence end
_STEER_BOOST = 4.0  # how much more likely a prompt word is than its corpus count says
_JUMP_TO_TOPIC = 0.35  # chance that a new sentence restarts at a prompt word
_PARAGRAPH = 0.15  # chance that a new sentence starts a new paragraph


def _normal(word: str) -> str:
    return _WORD_CHARS.sub("", word.lower()).strip("'")


def _ends_sentence(word: str) -> bool:
    return _SENTENCE_END.search(word) is not None


def _capitalise(word: str) -> str:
    return word[:1].upper() + word[1:]


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def prompt_text(prompt: Prompt) -> tuple[str, str]:
    """`(whole conversation, last user message)` as plain text.

    >>> prompt_text([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
    ('user: Hi', 'Hi')
    """
    if isinstance(prompt, str):
        return prompt, prompt
    lines = [f"{m.get('role', '')}: {_message_text(m.get('content'))}" for m in prompt]
    users = [_message_text(m.get("content")) for m in prompt if m.get("role") == "user"]
    return "\n".join(lines), users[-1] if users else "\n".join(lines)


def count_prompt_tokens(prompt: Prompt) -> int:
    """A plausible prompt token count: words, plus a few per message for the chat template."""
    whole, _ = prompt_text(prompt)
    per_message = 0 if isinstance(prompt, str) else 4 * len(prompt)
    return len(whole.split()) + per_message


def _stable_seed(*parts: object) -> int:
    # Python's hash() of a str changes with every process (PYTHONHASHSEED); blake2b does not.
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class _Choices(NamedTuple):
    words: tuple[str, ...]
    counts: tuple[int, ...]


def _freeze(table: Mapping[Any, Counter[str]]) -> dict[Any, _Choices]:
    return {k: _Choices(tuple(c), tuple(c.values())) for k, c in table.items()}


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
            if _ends_sentence(words[i - 1]) and words[i][:1].isupper()
        ] or [0]

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
            if len(word) > 2 and word not in _STOP_WORDS and word in self._positions:
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
    ) -> Generation:
        """Tokens answering the prompt; `finish_reason` is set once the iterator is exhausted.

        `max_tokens` None or ≤ 0 means no limit (LM Studio accepts -1 for that). With
        `reasoning`, a short "thinking" passage (tokens with `reasoning=True`) comes first;
        its tokens count towards `max_tokens`, as they do for real reasoning models.
        """
        whole, last_user = prompt_text(messages_or_prompt)
        rng = random.Random(_stable_seed(whole, seed, temperature))
        limit = max_tokens if max_tokens is not None and max_tokens > 0 else None
        # Temperature sharpens (< 1) or flattens (> 1) the corpus counts; 0 is nearly greedy.
        temp = 1.0 if temperature is None else min(max(temperature, 0.1), 2.0)
        return Generation(self, rng, self.keywords(last_user), limit, temp, reasoning)

    # -- used by Generation -------------------------------------------------------------------

    def _start(self, rng: random.Random, topic: Sequence[str], on_topic: bool) -> list[str]:
        """The first word(s) of a new sentence: at a prompt word if `on_topic` and there is one."""
        if on_topic and topic:
            i = rng.choice(self._positions[rng.choice(topic)])
            # Take up to two words before it that belong to it: "the White Rabbit".
            for _ in range(2):
                before = self._words[i - 1] if i > 0 else "."
                if _ends_sentence(before) or not (
                    _normal(before) in _LEAD_INS or before[:1].isupper()
                ):
                    break
                i -= 1
        else:
            i = rng.choice(self._starts)
        return self._words[i : i + 2]

    def _next(
        self, rng: random.Random, w1: str, w2: str, topic: frozenset[str], temp: float
    ) -> str | None:
        choices = self._order2.get((w1, w2)) or self._order1.get(w2)
        if choices is None:
            return None
        weights = [
            count ** (1.0 / temp) * (_STEER_BOOST if _normal(w) in topic else 1.0)
            for w, count in zip(choices.words, choices.counts, strict=True)
        ]
        return rng.choices(choices.words, weights)[0]

    def _sentences(
        self, rng: random.Random, topic: Sequence[str], temp: float
    ) -> Iterator[tuple[str, bool]]:
        """Endless words as `(word, ends_sentence)`; the first sentence starts on topic."""
        topic_set = frozenset(topic)
        restart: bool | None = True  # True: restart on topic, False: anywhere, None: go on
        state: list[str] = []
        while True:
            if restart is not None:
                state = self._start(rng, topic, on_topic=restart)
                # Capitalise what we say, but keep the corpus spelling as the chain's state.
                yield _capitalise(state[0]), _ends_sentence(state[0])
                yield from ((w, _ends_sentence(w)) for w in state[1:])
            w1, w2 = state[-2] if len(state) > 1 else "", state[-1]
            if _ends_sentence(w2) and rng.random() < _JUMP_TO_TOPIC:
                restart = True  # steer back to the prompt's words
                continue
            word = self._next(rng, w1, w2, topic_set, temp)
            restart = False if word is None else None  # a dead end: a fresh sentence anywhere
            if word is not None:
                state = [w2, word]
                yield word, _ends_sentence(word)


class Generation:
    """The tokens of one answer, in order; `finish_reason` is "stop" or "length" at the end.

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
    ) -> None:
        self.finish_reason: FinishReason | None = None
        self.topic = topic
        self._model, self._rng, self._limit = model, rng, max_tokens
        self._temp, self._reasoning = temperature, reasoning
        self._it = self._run()

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> Token:
        return next(self._it)

    def _passage(self, lead: list[str], low: int, high: int) -> Iterator[str]:
        """Words: `lead`, then Markov text, ending at a sentence end after `low..high` words."""
        yield from lead
        length = self._rng.randint(low, high)
        for n, (word, end) in enumerate(
            self._model._sentences(self._rng, self.topic, self._temp), start=1
        ):
            yield word
            if (end and n >= length) or n >= length + _OVERRUN:
                return

    def _thinking(self) -> Iterator[str]:
        about = self.topic[0] if self.topic else "this"
        lead = f"Okay, the user asks about {about}. Let me recall what the stories say.".split()
        yield from self._passage(lead, 12, 40)
        yield from "So I will answer with that.".split()

    def _run(self) -> Iterator[Token]:
        count = 0
        parts: list[tuple[bool, Iterator[str]]] = []
        if self._reasoning:
            parts.append((True, self._thinking()))
        parts.append((False, self._passage([], _MIN_LEN, _MAX_LEN)))
        for is_reasoning, words in parts:
            previous = ""
            for word in words:
                if self._limit is not None and count >= self._limit:
                    self.finish_reason = "length"
                    return
                if not previous:
                    sep = ""
                elif _ends_sentence(previous) and self._rng.random() < _PARAGRAPH:
                    sep = "\n\n"  # real chat answers come in paragraphs; Markdown shows them
                else:
                    sep = " "
                yield Token(sep + word, is_reasoning)
                previous = word
                count += 1
        self.finish_reason = "stop"


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
