"""Slots: how many answers each practice model writes at once, who waits, and the counts.

    >>> slots = Slots(["practice-fast"], parallel=2)
    >>> lease = await slots.acquire("practice-fast")        # doctest: +SKIP
    >>> slots.stats.as_dict()["active"]                      # doctest: +SKIP
    1

Like LM Studio 0.4's "Max Concurrent Predictions": `parallel` slots per model, further
requests wait first come, first served (anyio's Semaphore wakes waiters in FIFO order).
Counters are plain ints changed only here, on one event loop, so they are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio

__all__ = ["Counters", "Lease", "Slots", "Stats"]


@dataclass
class Counters:
    """Slot use of one model, or of the whole server."""

    active: int = 0  #: generating now (holding a slot)
    peak_active: int = 0  #: most `active` at once since start or the last reset
    waiting: int = 0  #: waiting for a slot
    served: int = 0  #: answers the server ended (normally, or by a fault)
    disconnects: int = 0  #: answers the client ended first (while waiting or reading)
    requests: int = 0  #: requests == active + waiting + served + disconnects


@dataclass
class Stats:
    """Counters for the whole server and per model; `GET /practice/stats` shows `as_dict()`."""

    total: Counters = field(default_factory=Counters)
    per_model: dict[str, Counters] = field(default_factory=dict)

    def _both(self, model: str) -> tuple[Counters, Counters]:
        return self.total, self.per_model.setdefault(model, Counters())

    def arrived(self, model: str) -> None:
        for c in self._both(model):
            c.requests += 1
            c.waiting += 1

    def started(self, model: str) -> None:
        for c in self._both(model):
            c.waiting -= 1
            c.active += 1
            c.peak_active = max(c.peak_active, c.active)

    def gave_up_waiting(self, model: str) -> None:
        for c in self._both(model):
            c.waiting -= 1
            c.disconnects += 1

    def ended(self, model: str, by_server: bool) -> None:
        for c in self._both(model):
            c.active -= 1
            if by_server:
                c.served += 1
            else:
                c.disconnects += 1

    def reset(self) -> None:
        """Forget history; what is running or waiting now stays counted."""
        for c in (self.total, *self.per_model.values()):
            c.served = c.disconnects = 0
            c.peak_active = c.active
            c.requests = c.active + c.waiting

    def as_dict(self) -> dict[str, Any]:
        return asdict(self.total) | {
            "per_model": {name: asdict(c) for name, c in self.per_model.items()}
        }


@dataclass
class Lease:
    """One held slot. `release()` frees it exactly once and records who ended the answer."""

    slots: Slots
    model: str
    #: The semaphore the slot came from: a reload with another `parallel` makes a new one.
    semaphore: anyio.Semaphore
    #: Set by the code that writes the answer when *it* ends it (done, or a fault fired).
    ended_by_server: bool = False
    _released: bool = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.semaphore.release()
            self.slots.stats.ended(self.model, self.ended_by_server)
            if self.slots.on_release is not None:
                self.slots.on_release(self.model)


class Slots:
    """`parallel` slots for each model, and the statistics of their use."""

    def __init__(self, models: Iterable[str], parallel: int) -> None:
        self.stats = Stats()
        self._semaphores = {m: anyio.Semaphore(parallel) for m in models}
        #: Called with the model's name whenever an answer frees its slot.
        self.on_release: Callable[[str], None] | None = None
        #: Slots per model now (what `/api/v1/models` reports as `parallel`).
        self.parallel = dict.fromkeys(self._semaphores, parallel)
        for m in self._semaphores:
            self.stats.per_model[m] = Counters()

    def resize(self, model: str, parallel: int) -> None:
        """New requests for `model` get `parallel` slots (a reload with another `parallel`).

        Answers running now finish in their old slots, and requests already waiting keep
        waiting for those; the new count applies to requests that arrive from now on.
        """
        if self.parallel[model] != parallel:
            self.parallel[model] = parallel
            self._semaphores[model] = anyio.Semaphore(parallel)

    def idle(self, model: str) -> bool:
        """Nobody is being answered by, or waiting for, `model`."""
        c = self.stats.per_model[model]
        return c.active == 0 and c.waiting == 0

    async def acquire(self, model: str) -> Lease:
        """Wait for a free slot of `model` (FIFO). Cancelling the wait counts a disconnect."""
        self.stats.arrived(model)
        semaphore = self._semaphores[model]
        try:
            await semaphore.acquire()
        except BaseException:
            # anyio's Semaphore hands a slot granted at the moment of cancelling back itself.
            self.stats.gave_up_waiting(model)
            raise
        self.stats.started(model)
        return Lease(self, model, semaphore)
