"""`TokenCache`: what the Hub said about a token, kept for a short while, bounded in size.

    >>> cache: TokenCache[str] = TokenCache(fresh_s=60, stale_s=3600, size=2)
    >>> cache.put("token-a", "alice", now=0.0)
    >>> cache.fresh("token-a", now=30.0), cache.fresh("token-a", now=90.0)
    ('alice', None)
    >>> cache.stale("token-a", now=90.0)  # the Hub is down: an identity seen lately still counts
    'alice'

A fresh entry answers without asking the Hub (one lookup per token per `fresh_s`, so the queue
stays fast); a stale one only while the Hub cannot be reached. Tokens are kept by their
SHA-256, never in clear, and the least recently used entry goes first when the cache is full.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["TokenCache"]

T = TypeVar("T")


class TokenCache(Generic[T]):
    """A bounded LRU map from a token's digest to (value, when it was fetched)."""

    def __init__(self, fresh_s: float, stale_s: float, size: int) -> None:
        self.fresh_s, self.stale_s, self.size = fresh_s, max(stale_s, fresh_s), size
        self._entries: OrderedDict[bytes, tuple[T, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, token: str, value: T, *, now: float) -> None:
        key = _digest(token)
        self._entries[key] = (value, now)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def fresh(self, token: str, *, now: float) -> T | None:
        """The value if it was fetched less than `fresh_s` ago."""
        return self._younger_than(token, self.fresh_s, now)

    def stale(self, token: str, *, now: float) -> T | None:
        """The value if it was fetched less than `stale_s` ago (for when the Hub is down)."""
        return self._younger_than(token, self.stale_s, now)

    def forget(self, token: str) -> None:
        self._entries.pop(_digest(token), None)

    def _younger_than(self, token: str, age_s: float, now: float) -> T | None:
        key = _digest(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, fetched = entry
        if now - fetched >= age_s:
            if now - fetched >= self.stale_s:
                del self._entries[key]  # too old to help even when the Hub is down
            return None
        self._entries.move_to_end(key)
        return value


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()
