"""The two interfaces every store implements, and the lease they hand out.

>>> Lease("http://box/v1|qwen", "r1-3f2a", ttl_s=10.0).pool
'http://box/v1|qwen'
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..scheduler import Entry

__all__ = ["FairQueue", "Lease", "SlotLeases"]


@dataclass(frozen=True, slots=True)
class Lease:
    pool: str  #: which pool: an upstream, or one model on it
    id: str  #: unique across replicas: who holds the place
    ttl_s: float  #: the lease ends this long after its last renewal


class FairQueue(Protocol):
    """Who starts next: the `FairScheduler` rule, wherever the waiting requests live."""

    async def push(self, entry: Entry) -> None: ...

    async def remove(self, request_id: str) -> bool:
        """Take a waiting request out; False if it was not waiting."""
        ...

    async def pop_next(
        self,
        eligible: Collection[str] | None = None,
        running: Mapping[str, int] | None = None,
        strict: bool = False,
    ) -> Entry | None:
        """The next request to start among those whose model is in `eligible` (models with
        a free slot; None: every model), with per-user caps checked against `running`."""
        ...

    async def pop_and_lease(
        self,
        slots: SlotLeases,
        pools: Mapping[str, Sequence[tuple[str, int]]],
        running: Mapping[str, int] | None = None,
        strict: bool = False,
    ) -> tuple[Entry, Lease] | None:
        """Start the next request as one step: `pools` gives each model's pools as
        (pool, capacity); a model is eligible when one has a free place, and the request
        gets a lease on the least busy of them."""
        ...

    async def order(self, model: str | None = None) -> list[Entry]:
        """Every waiting entry (for `model`, if given) in the order they would start."""
        ...

    async def waiting_for(self, user: str) -> int: ...

    async def size(self) -> int: ...

    async def contains(self, request_id: str) -> bool: ...


class SlotLeases(Protocol):
    """Places in a pool (one upstream, or one model on it), each held by a lease that ends
    when released or, if its holder stops renewing it, when its time runs out."""

    ttl_s: float

    async def acquire(self, pool: str, capacity: int) -> Lease | None:
        """A lease on a free place in `pool`, or None when `capacity` are held."""
        ...

    async def renew(self, lease: Lease) -> bool:
        """Push the lease's end `ttl_s` ahead; False if it had already ended."""
        ...

    async def release(self, lease: Lease) -> bool:
        """Give the place back; False if the lease had already ended."""
        ...

    async def busy(self, pool: str) -> int:
        """Leases held in `pool` now (those that ran out do not count)."""
        ...
