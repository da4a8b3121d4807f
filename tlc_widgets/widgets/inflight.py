"""Requests this kernel has in flight: cancelled on Stop, and best-effort when the kernel exits.

    >>> track("http://127.0.0.1:8000", "abc")       # after a submit
    >>> await cancel(client, "abc")                 # Stop: DELETE it, forget it
    >>> untrack("abc")                              # or: it ended by itself

A restarted or shut-down kernel cannot run async code any more, so the exit hook uses a
plain synchronous `httpx.delete` with a short timeout. The server would notice on its own
(a request nobody listens to is cancelled after `disconnect_grace_s`), but telling it at
once frees the slot for the next person in line.
"""

from __future__ import annotations

import asyncio
import atexit
import os

import httpx

from ..client import QueueClient, Submitted, TLCError

__all__ = ["cancel", "cancel_all", "cancel_when_accepted", "in_flight", "track", "untrack"]

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


async def cancel(client: QueueClient, request_id: str) -> None:
    """Cancel a request on the server, so its slot or its place in line frees at once."""
    try:
        await client.cancel(request_id)
    except TLCError:
        pass  # it had ended, or the server is gone: either way nothing is held
    finally:
        untrack(request_id)


async def cancel_when_accepted(client: QueueClient, post: asyncio.Future[Submitted]) -> None:
    """Stopped while the POST was on its way: the server may still accept it. Wait for the
    answer, then cancel what it created."""
    try:
        submitted = await post
    except TLCError:
        return  # refused: nothing to cancel
    track(client.url, submitted.id)
    await cancel(client, submitted.id)


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
