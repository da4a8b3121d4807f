"""The embedded store: one process's memory behind the async interfaces of `base.py`.

    >>> import anyio
    >>> async def demo() -> list[str]:
    ...     queue = EmbeddedQueue()
    ...     for i in range(2):
    ...         await queue.push(Entry(f"h{i}", user="heavy", model="m"))
    ...     await queue.push(Entry("l0", user="light", model="m"))
    ...     return [e.id for e in await queue.order()]
    >>> anyio.run(demo)
    ['h0', 'l0', 'h1']

`EmbeddedQueue` adds nothing to the decisions: it hands each call to the pure
`FairScheduler`, so the scheduler stays the one place the rule is written in Python, and
the Redis queue is tested against it. `EmbeddedSlots` is the lease table of a single
process: places expire on the monotonic clock, as on Redis, though one process that dies
takes its leases with it anyway.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Collection, Mapping, Sequence

from ..scheduler import Entry, FairScheduler
from .base import Lease, SlotLeases

__all__ = ["EmbeddedQueue", "EmbeddedSlots"]


class EmbeddedQueue:
    """`FairQueue` over a `FairScheduler` held in this process."""

    def __init__(self, scheduler: FairScheduler | None = None) -> None:
        self.scheduler = scheduler if scheduler is not None else FairScheduler()

    async def push(self, entry: Entry) -> None:
        if entry.id in self.scheduler:
            raise ValueError(f"request {entry.id!r} is already waiting")
        self.scheduler.push(entry)

    async def remove(self, request_id: str) -> bool:
        return self.scheduler.remove(request_id)

    async def pop_next(
        self,
        eligible: Collection[str] | None = None,
        running: Mapping[str, int] | None = None,
        strict: bool = False,
    ) -> Entry | None:
        accepts: Callable[[str], bool] = (
            (lambda model: True) if eligible is None else eligible.__contains__
        )
        return self.scheduler.pop_next(accepts, None if running is None else running.get, strict)

    async def pop_and_lease(
        self,
        slots: SlotLeases,
        pools: Mapping[str, Sequence[tuple[str, int]]],
        running: Mapping[str, int] | None = None,
        strict: bool = False,
    ) -> tuple[Entry, Lease] | None:
        """`pop_next` among models with a free pool, and a lease on the least busy one.
        Atomic here because nothing in between awaits anything that suspends."""
        free: dict[str, tuple[str, int]] = {}
        for model, choices in pools.items():
            least: int | None = None
            for pool, capacity in choices:
                busy = await slots.busy(pool)
                if busy < capacity and (least is None or busy < least):
                    free[model], least = (pool, capacity), busy
        entry = await self.pop_next(free, running, strict)
        if entry is None:
            return None
        lease = await slots.acquire(*free[entry.model])
        assert lease is not None  # it was free a moment ago, and nothing ran in between
        return entry, lease

    async def order(self, model: str | None = None) -> list[Entry]:
        return [e for e in self.scheduler.order() if model is None or e.model == model]

    async def waiting_for(self, user: str) -> int:
        return self.scheduler.waiting_for(user)

    async def size(self) -> int:
        return len(self.scheduler)

    async def contains(self, request_id: str) -> bool:
        return request_id in self.scheduler


class EmbeddedSlots:
    """`SlotLeases` in a dict: pool -> lease id -> when it ends (monotonic seconds)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._pools: dict[str, dict[str, float]] = {}
        self._ids = itertools.count(1)

    def _live(self, pool: str) -> dict[str, float]:
        now = self._clock()
        leases = self._pools.setdefault(pool, {})
        for lease_id in [i for i, end in leases.items() if end <= now]:
            del leases[lease_id]  # ran out: its holder stopped renewing
        return leases

    async def acquire(self, pool: str, capacity: int) -> Lease | None:
        leases = self._live(pool)
        if len(leases) >= capacity:
            return None
        lease = Lease(pool, f"local-{next(self._ids)}", self.ttl_s)
        leases[lease.id] = self._clock() + self.ttl_s
        return lease

    async def renew(self, lease: Lease) -> bool:
        leases = self._live(lease.pool)
        if lease.id not in leases:
            return False
        leases[lease.id] = self._clock() + lease.ttl_s
        return True

    async def release(self, lease: Lease) -> bool:
        return self._live(lease.pool).pop(lease.id, None) is not None

    async def busy(self, pool: str) -> int:
        return len(self._live(pool))
