"""Requests this kernel has in flight, cancelled (best effort) when the kernel exits.

    >>> track("http://127.0.0.1:8000", "abc")       # accepted by the server
    >>> in_flight()
    {'abc': 'http://127.0.0.1:8000'}
    >>> untrack("abc")                              # it ended (or follow() cancelled it)

While the kernel runs, a Stop is `follow()`'s business (its cancel rule sends the DELETE).

A restarted or shut-down kernel cannot run async code any more, so the exit hook uses a
plain synchronous `httpx.delete` with a short timeout. The server would notice on its own
(a request nobody listens to is cancelled after `disconnect_grace_s`), but telling it at
once frees the slot for the next person in line.
"""

from __future__ import annotations

import atexit
import os

import httpx

__all__ = ["cancel_all", "in_flight", "track", "untrack"]

#: request id -> queue server URL
_LIVE: dict[str, str] = {}
_hooked = False


def track(url: str, request_id: str) -> None:
    global _hooked
    if not _hooked:
        atexit.register(cancel_all)
        _hooked = True
    _LIVE[request_id] = url


def untrack(request_id: str) -> None:
    _LIVE.pop(request_id, None)


def in_flight() -> dict[str, str]:
    """A copy of what is tracked now (for tests and curious learners)."""
    return dict(_LIVE)


def cancel_all(timeout_s: float = 1.0) -> int:
    """Send a DELETE for every tracked request; returns how many the servers accepted."""
    key = os.environ.get("TLC_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    cancelled = 0
    with httpx.Client(timeout=timeout_s, headers=headers) as http:
        for request_id, url in list(_LIVE.items()):
            try:
                cancelled += http.delete(f"{url}/api/requests/{request_id}").is_success
            except httpx.HTTPError:
                pass  # the server is gone too: nothing left to free
            _LIVE.pop(request_id, None)
    return cancelled
