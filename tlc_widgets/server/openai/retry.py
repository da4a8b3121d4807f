"""A retry of the same request keeps its place: it finds the record of the first try.

    >>> retries = Retries()
    >>> retries.key_of({"x-stainless-retry-count": "1"}, "ada", b'{"messages": []}')[:4]
    'ada:'
    >>> retries.key_of({}, "ada", b"{}") is None
    True

What the clients really send (checked in the openai package, 3.x): the SDK keeps one
idempotency key across the retries of a call but does not send it (its `_idempotency_header`
is unset for OpenAI); every attempt carries `x-stainless-retry-count: N` (0 first) and
`x-stainless-read-timeout`. So a retry is recognised by its caller and its exact body bytes,
which the SDK replays unchanged; a client that sends `Idempotency-Key` is keyed by that.

A retry finds the first try's record while it waits, runs, or has finished well, and
follows it: a non-streaming wait longer than the SDK's read timeout (600 s) is picked up
again where it was, not re-queued at the back. A record that failed with a transient error
is not reused (the retry is a new request); one that was cancelled or timed out in the queue
answers the same "no" again.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Mapping

from ...protocol import ErrorCode, ErrorEvent
from ..records import Record
from ..service import QueueService

__all__ = ["Retries", "retries_of"]

_KEEP = 4096  #: keys remembered at most; the oldest go first


class Retries:
    """Keys of recent door requests → their record ids."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}

    def key_of(self, headers: Mapping[str, str], owner: str, body: bytes) -> str | None:
        """The retry key of a request, or None when its client cannot retry it by itself."""
        explicit = headers.get("idempotency-key")
        if explicit:
            return f"{owner}:key:{explicit}"
        if "x-stainless-retry-count" in headers:
            return f"{owner}:{hashlib.sha256(body).hexdigest()}"
        return None

    @staticmethod
    def is_retry(headers: Mapping[str, str]) -> bool:
        return bool(headers.get("idempotency-key")) or headers.get(
            "x-stainless-retry-count", "0"
        ) not in ("", "0")

    def find(self, service: QueueService, key: str) -> Record | None:
        """The first try's record, if a retry should follow it."""
        record_id = self._ids.get(key)
        record = service.store.get(record_id) if record_id else None
        if record is None:
            return None
        outcome = record.outcome
        if isinstance(outcome, ErrorEvent) and outcome.code != ErrorCode.QUEUE_TIMEOUT:
            return None  # a transient failure: the retry is a fresh try
        return record

    def remember(self, key: str, record: Record) -> None:
        self._ids.pop(key, None)
        self._ids[key] = record.id
        if len(self._ids) > _KEEP:
            del self._ids[next(iter(self._ids))]


_BY_SERVICE: weakref.WeakKeyDictionary[QueueService, Retries] = weakref.WeakKeyDictionary()


def retries_of(service: QueueService) -> Retries:
    """The retry keys of one running service (one per app)."""
    retries = _BY_SERVICE.get(service)
    if retries is None:
        retries = _BY_SERVICE[service] = Retries()
    return retries
