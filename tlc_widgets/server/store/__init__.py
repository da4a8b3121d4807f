"""Shared state behind small interfaces: the fair queue and the slot leases, embedded or on Redis.

    >>> import anyio
    >>> from tlc_widgets.server.scheduler import Entry
    >>> async def demo() -> list[str]:
    ...     queue, slots = EmbeddedQueue(), EmbeddedSlots(ttl_s=5)
    ...     await queue.push(Entry("r1", user="ann", model="m"))
    ...     lease = await slots.acquire("http://box/v1|m", capacity=1)
    ...     entry = await queue.pop_next({"m"})
    ...     return [entry.id if entry else "-", "leased" if lease else "full"]
    >>> anyio.run(demo)
    ['r1', 'leased']

One `tlc serve` keeps both in its own memory (`EmbeddedQueue` wraps the pure
`FairScheduler`; `EmbeddedSlots` counts leases in a dict). Several replicas share them on
Redis (`redis_queue.RedisQueue`, `redis_slots.RedisSlots`): the same decisions, made by the
same rule, in Lua that runs atomically inside Redis. The interfaces are async because Redis
is a network away; the embedded twins simply never wait.

The errors, drawn as a tree:

    StoreError
     ├── StoreUnavailable   Redis did not answer (down, restarting, unreachable): a 503
     └── LeaseLost          a slot's lease expired before it was renewed: stop that stream
"""

from __future__ import annotations

from .base import FairQueue, Lease, SlotLeases
from .embedded import EmbeddedQueue, EmbeddedSlots
from .errors import LeaseLost, StoreError, StoreUnavailable
from .leases import NoFreeSlot, holding, renewing

__all__ = [
    "EmbeddedQueue",
    "EmbeddedSlots",
    "FairQueue",
    "Lease",
    "LeaseLost",
    "NoFreeSlot",
    "SlotLeases",
    "StoreError",
    "StoreUnavailable",
    "holding",
    "renewing",
]
