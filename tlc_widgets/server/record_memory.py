"""What a record keeps in memory, in bytes, as `TLC_RETAIN_BYTES` budgets it.

    >>> held_by(b"") > 0 and held_by("x" * 1000) >= 1000
    True
    >>> pieces = ["Hel", "lo"]
    >>> compact(pieces) < 0, pieces
    (True, ['Hello'])

A record's events are kept encoded (bytes) and its reply as strings, one object per token:
CPython spends 33 bytes of header on each `bytes` and 49 on each `str`, plus a list slot.
For a reply of short tokens that is more than the text itself, so counting only the text
(`Record.size`) let finished requests hold 3–10 times their budget (docs/reliability.md).
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["CHUNK_BASE", "RECORD_BASE", "compact", "held_by", "prompt_held"]

#: What a record holds before its first event (the dataclass, its lists and dicts, its
#: signal), and what one parsed upstream chunk (a dict of dicts) costs beyond its JSON:
#: both measured with tracemalloc on CPython 3.11.
RECORD_BASE, CHUNK_BASE = 3_300, 1_400
_SLOT = 8  #: one more item in a list: its pointer
_MESSAGE = 250  #: one message's dict and its keys


def held_by(item: str | bytes) -> int:
    """Bytes one string or frame kept in a list costs: the object and its pointer."""
    return sys.getsizeof(item) + _SLOT


def prompt_held(messages: list[dict[str, Any]]) -> int:
    """A conversation's weight: its text as it travels, plus each message's dict.

    >>> prompt_held([{"role": "user", "content": "Hi"}])
    285
    """
    return len(json.dumps(messages, default=str)) + _MESSAGE * len(messages)


def compact(pieces: list[str]) -> int:
    """Join a reply's pieces into one string, in place (the frames keep the pieces for
    replay); return how many bytes that saved (≤ 0: a change to `held`)."""
    if len(pieces) < 2:
        return 0
    whole = "".join(pieces)
    change = held_by(whole) - sum(held_by(p) for p in pieces)
    pieces[:] = [whole]
    return change
