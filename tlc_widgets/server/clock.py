"""Timers and wake-ups for the core: anyio everywhere, and one place for what anyio lacks.

    >>> import anyio
    >>> async def demo() -> list[str]:
    ...     seen, signal = [], Signal()
    ...     call_later(0.01, signal.fire)         # a timer: no task, no sleep
    ...     await signal.wait()                   # wakes when fired
    ...     seen.append("woken")
    ...     return seen
    >>> anyio.run(demo)
    ['woken']

The core's concurrency is anyio's: task groups, cancel scopes, sleeps. Two things it does
not offer are needed on hot paths, and both are here so no other module reaches past it:

- **Timers.** A deadline per waiting request (queue timeout, disconnect grace, retention)
  as a sleeping task would cost a task each, thousands in a class; the event loop's own
  timer costs one heap entry. `call_later` is that timer.
- **A broadcast wake-up.** `Signal.fire()` wakes everyone waiting now and nobody later —
  the record's "a new event is there" — and creates its event only when someone waits, so
  a token that nobody is waiting for costs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

import anyio

__all__ = ["Signal", "Timer", "call_later", "wait_future"]

T = TypeVar("T")

#: A pending `call_later`; `.cancel()` it when it is no longer needed.
Timer = asyncio.TimerHandle


def call_later(delay_s: float, callback: Callable[[], object]) -> Timer:
    """Run `callback` on the event loop after `delay_s` (a timer, not a task)."""
    return asyncio.get_running_loop().call_later(delay_s, callback)


async def wait_future(future: Future[T]) -> T:
    """Await a `concurrent.futures.Future` that a worker thread completes (history's writer)."""
    return await asyncio.wrap_future(future)


class Signal:
    """Wake every current waiter at once; later waiters wait for the next `fire()`."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    async def wait(self) -> None:
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    def fire(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()
