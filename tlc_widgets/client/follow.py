"""Following a request to its end: the one loop that `QueueClient.chat`, `ChatPanel` and
`%%chat` share.

    >>> reply = await follow(client, prompt="What is a queue?", max_tokens=50)  # doctest: +SKIP
    >>> reply.text                                                          # doctest: +SKIP
    'A queue is a line …'

`follow(client, **request)` submits the request (in one round trip when the server can:
`QueueClient.open`), calls `on_accepted(submitted)` once the server has taken it, then
`on_event(event)` for every event (`Queued` … `Started`, `Delta` …, one terminal event), and
returns the `Reply`. The stream resumes with `Last-Event-ID` when the connection breaks.

**The one cancel rule.**

1. The stream's terminal event decides the outcome: `done` returns the `Reply`; `error`
   raises the `TLCError` of its code; `cancelled` — whoever cancelled: a Stop, a teacher,
   shutdown — raises `RequestCancelled`. A refusal before acceptance raises its `TLCError`;
   a stream that ends without a terminal event raises `RequestFailed` (`internal_error`).
2. Cancelling the task that runs `follow()` cancels the request on the server: the DELETE
   is sent, shielded from the cancellation (bounded by `CANCEL_TIMEOUT_S`), before the
   cancellation goes on; so when the task has ended, the server knows.
3. Cancelled while the submit is still on its way, the task ends at once; the submit goes
   on in the background and whatever the server accepted is cancelled the moment its id is
   known, so no request is left in line with nobody listening.

Callbacks run in the following task; an exception in one ends the follow like a cancel
(rule 2). `follow` runs on asyncio (a notebook kernel's loop, `asyncio.run`, anyio's
asyncio backend): rule 3 needs a task that outlives the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from ..errors import RequestCancelled, RequestFailed, TLCError, error_for
from ..protocol import Cancelled, Delta, Done, ErrorCode, ErrorEvent, Event

__all__ = ["CANCEL_TIMEOUT_S", "Opened", "Reply", "Submitted", "follow"]

#: The longest a cancelled follow waits for the server to confirm the DELETE.
CANCEL_TIMEOUT_S = 5.0

_background: set[asyncio.Task[None]] = set()  # referenced so none is collected mid-way


@dataclass(frozen=True)
class Submitted:
    """The server's answer to a submit: the request's id and the place it took in line.

    >>> Submitted.from_json({"id": "r1", "position": 2, "waiting": 3, "eta_s": None,
    ...                      "model": "m", "user": "ada"}).position
    2
    """

    id: str
    position: int
    waiting: int
    eta_s: float | None
    model: str

    @classmethod
    def from_json(cls, data: Any) -> Submitted:
        """From the 202 body or the `accepted` event; `RequestFailed` if it is not one."""
        try:
            eta = data["eta_s"]
            return cls(
                id=str(data["id"]),
                position=int(data["position"]),
                waiting=int(data["waiting"]),
                eta_s=None if eta is None else float(eta),
                model=str(data["model"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RequestFailed(
                f"The queue server's answer to a submit is not one this client can read: "
                f"{str(data)[:80]}",
                code=ErrorCode.INTERNAL_ERROR,
            ) from exc


@dataclass
class Opened:
    """A request the server accepted, and its events from the first on. Close it with
    `aclose()` (or `contextlib.aclosing`) if you stop reading before the end."""

    submitted: Submitted
    events: AsyncGenerator[Event, None]
    #: Releases the connection the events come on, also when `events` never started.
    release: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)

    async def aclose(self) -> None:
        await self.events.aclose()
        if self.release is not None:
            await self.release()


@dataclass(frozen=True)
class Reply:
    """How a request ended well: its id, the text, the reasoning, and the `Done` event."""

    id: str
    text: str
    reasoning: str
    done: Done


class Opener(Protocol):
    """What `follow` needs of a client (`QueueClient`; a stand-in in tests)."""

    @property
    def open(self) -> Callable[..., Awaitable[Opened]]: ...

    async def cancel(self, request_id: str) -> bool: ...


async def follow(
    client: Opener,
    *,
    on_accepted: Callable[[Submitted], object] | None = None,
    on_event: Callable[[Event], object] | None = None,
    **request: Any,
) -> Reply:
    """Submit `request` (the fields of `QueueClient.submit`) and follow it to its end,
    under the cancel rule of the module docstring."""
    opened = await _open(client, request)
    request_id = opened.submitted.id
    content: list[str] = []
    reasoning: list[str] = []
    try:
        async with contextlib.aclosing(opened):
            if on_accepted is not None:
                on_accepted(opened.submitted)
            async for event in opened.events:
                if isinstance(event, Delta):
                    content.append(event.content or "")
                    reasoning.append(event.reasoning or "")
                if on_event is not None:
                    on_event(event)
                if isinstance(event, Done):
                    return Reply(request_id, "".join(content), "".join(reasoning), event)
                if isinstance(event, ErrorEvent):
                    raise error_for(event.code, event.message)
                if isinstance(event, Cancelled):
                    raise RequestCancelled(
                        f"The request was cancelled (by {event.by}).", code="cancelled"
                    )
        raise RequestFailed("The reply ended without a final event.", code=ErrorCode.INTERNAL_ERROR)
    except TLCError:
        raise
    except BaseException:
        # Cancelled (or a callback failed): tell the server, shielded so that the
        # cancellation does not cancel the DELETE too, and bounded.
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + CANCEL_TIMEOUT_S):
            await _cancel(client, request_id)
        raise


async def _open(client: Opener, request: dict[str, Any]) -> Opened:
    post = asyncio.ensure_future(client.open(**request))
    try:
        return await asyncio.shield(post)
    except asyncio.CancelledError:
        post.add_done_callback(lambda done: _cancel_when_accepted(client, done))
        raise


def _cancel_when_accepted(client: Opener, post: asyncio.Future[Opened]) -> None:
    """Rule 3: the submit we stopped waiting for has an answer; cancel what it created."""
    if post.cancelled() or post.exception() is not None:
        return  # refused, or never sent: nothing to cancel
    opened = post.result()

    async def cancel() -> None:
        await opened.aclose()
        await _cancel(client, opened.submitted.id)

    task = asyncio.get_running_loop().create_task(cancel())
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _cancel(client: Opener, request_id: str) -> None:
    with contextlib.suppress(TLCError):
        await client.cancel(request_id)  # it may have ended meanwhile, or the server is gone
