"""Hold a slot while a stream runs: acquire, renew in the background, release at the end.

    >>> import anyio
    >>> from tlc_widgets.server.store import EmbeddedSlots
    >>> async def demo() -> tuple[int, int]:
    ...     slots = EmbeddedSlots(ttl_s=5)
    ...     async with holding(slots, "box|m", capacity=2) as lease:
    ...         inside = await slots.busy("box|m")
    ...     return inside, await slots.busy("box|m")
    >>> anyio.run(demo)
    (1, 0)

A replica renews every third of the lease's time, so two missed renewals still leave the
lease alive; a replica killed with `kill -9` renews nothing, and its places come back to
everyone when the time runs out. If a renewal finds the lease already gone (this replica
was paused longer than the lease, or Redis lost it), the body is cancelled and `LeaseLost`
raised: another replica may hold that place now, and the upstream must not see one stream
more than its capacity.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from .base import Lease, SlotLeases
from .errors import LeaseLost, StoreUnavailable

__all__ = ["NoFreeSlot", "holding", "renewing"]


class NoFreeSlot(Exception):
    """Every place in the pool is held (another replica took the last one first)."""


@asynccontextmanager
async def holding(slots: SlotLeases, pool: str, capacity: int) -> AsyncIterator[Lease]:
    """Acquire a place in `pool` (or raise `NoFreeSlot`), then hold it as `renewing` does."""
    lease = await slots.acquire(pool, capacity)
    if lease is None:
        raise NoFreeSlot(pool)
    async with renewing(slots, lease):
        yield lease


@asynccontextmanager
async def renewing(slots: SlotLeases, lease: Lease) -> AsyncIterator[Lease]:
    """Hold a lease already taken (by `pop_and_lease`, say): renew it every third of its
    time while the body runs, release it at the end, `LeaseLost` if a renewal finds it gone."""
    lost = False

    async def renew(scope: anyio.CancelScope) -> None:
        nonlocal lost
        while True:
            await anyio.sleep(lease.ttl_s / 3)
            try:
                alive = await slots.renew(lease)
            except StoreUnavailable:
                continue  # Redis may be back before the lease runs out: try again
            if not alive:
                lost = True
                scope.cancel()
                return

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(renew, tg.cancel_scope)
            yield lease
            tg.cancel_scope.cancel()
    finally:
        if not lost:
            with anyio.CancelScope(shield=True):
                try:
                    await slots.release(lease)
                except StoreUnavailable:
                    pass  # the lease runs out on its own
    if lost:
        raise LeaseLost(f"the lease on a slot of {lease.pool} ran out before it was renewed")
