"""Plain-text helpers of the practice model: words, sentence ends, prompts and stable seeds.

    >>> normal("Rabbit's,"), ends_sentence("time."), capitalise("once")
    ("rabbit's", True, 'Once')

Pure functions, shared by the Markov chain, its generations, tool calls and embeddings.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "STOP_WORDS",
    "Prompt",
    "capitalise",
    "count_prompt_tokens",
    "ends_sentence",
    "message_text",
    "normal",
    "prompt_text",
    "stable_seed",
]

#: A bare prompt string, or OpenAI chat messages (`content` a string or a list of text parts).
Prompt = str | Sequence[Mapping[str, Any]]

_SENTENCE_END = re.compile(r"[.!?][)'\"’”]*$")
_WORD_CHARS = re.compile(r"[^a-z0-9']+")
#: Words too common to say what a prompt is about.
STOP_WORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been am i "
    "me my you your he she it we they them his her its our their this that these those what "
    "which who whom how why when where there here do does did not no yes so can could would "
    "should will shall may might must about tell please give some any all one just like into "
    "out up down than then too very also have has had let lets let's say write explain "
    "describe know".split()
)


def normal(word: str) -> str:
    """Lower case, letters, digits and apostrophes only."""
    return _WORD_CHARS.sub("", word.lower()).strip("'")


def ends_sentence(word: str) -> bool:
    """Does `word` end a sentence (".", "!" or "?", maybe before a closing quote)?"""
    return _SENTENCE_END.search(word) is not None


def capitalise(word: str) -> str:
    """The first letter in upper case, the rest unchanged."""
    return word[:1].upper() + word[1:]


def message_text(content: Any) -> str:
    """The text of a message's `content`: a string, or the `text` of its parts.

    >>> message_text([{"type": "text", "text": "Hi"}, {"type": "image_url"}])
    'Hi '
    """
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
    lines = [f"{m.get('role', '')}: {message_text(m.get('content'))}" for m in prompt]
    users = [message_text(m.get("content")) for m in prompt if m.get("role") == "user"]
    return "\n".join(lines), users[-1] if users else "\n".join(lines)


def count_prompt_tokens(prompt: Prompt) -> int:
    """A plausible prompt token count: words, plus a few per message for the chat template.

    >>> count_prompt_tokens("one two three")
    3
    """
    whole, _ = prompt_text(prompt)
    per_message = 0 if isinstance(prompt, str) else 4 * len(prompt)
    return len(whole.split()) + per_message


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from `parts`, the same in every process.

    >>> stable_seed("a", 1) == stable_seed("a", 1) != stable_seed("a", 2)
    True
    """
    # Python's hash() of a str changes with every process (PYTHONHASHSEED); blake2b does not.
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
