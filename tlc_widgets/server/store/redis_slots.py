"""Slot leases on Redis: never more holders than capacity, counted across every replica.

    >>> import anyio
    >>> async def demo() -> list[bool]:
    ...     slots = RedisSlots(connect("redis://127.0.0.1:6379/0"), name="class-a", ttl_s=10)
    ...     first = await slots.acquire("http://box:1234/v1|qwen", capacity=1)
    ...     second = await slots.acquire("http://box:1234/v1|qwen", capacity=1)
    ...     return [first is not None, second is not None]
    >>> anyio.run(demo)  # doctest: +SKIP
    [True, False]

Each pool (an upstream, or one model on it) is a sorted set of lease ids scored by the
millisecond, on Redis's own clock, at which each lease ends (`lua/slots.lua`). Acquire,
renew, release and count are each one Lua step that first drops the leases that ran out,
then decides: "is there a free place, and take it" can never interleave with another
replica's, so the upstream never sees more than its `parallel`. A deadline per lease in a
sorted set, rather than a key per lease with its own expiry, lets one step count the live
leases of a pool exactly (keyspace expiry is lazy: an expired key may linger, and a key
count would need a scan). The set itself expires when nobody renews it, so pools that are
gone leave nothing behind.
"""

from __future__ import annotations

import os
import uuid

from redis.asyncio import Redis

from .base import Lease
from .redis_conn import connect, guard, script_text

__all__ = ["RedisSlots", "connect"]


class RedisSlots:
    """`SlotLeases` on Redis; `replica` names the holder inside each lease id (for logs)."""

    def __init__(
        self, client: Redis, name: str = "default", ttl_s: float = 10.0, replica: str = ""
    ) -> None:
        self.client = client
        self.prefix = f"tlc:{{{name}}}:lease:"
        self.ttl_s = ttl_s
        self.replica = replica or f"pid{os.getpid()}"
        self._script = client.register_script(script_text("slots.lua"))

    async def _run(self, pool: str, *args: str | int) -> int:
        with guard(self.client):
            return int(await self._script(keys=[self.prefix + pool], args=list(args)))

    def _ttl_ms(self, lease_ttl_s: float) -> int:
        return max(1, round(lease_ttl_s * 1000))

    def new_id(self) -> str:
        return f"{self.replica}-{uuid.uuid4().hex[:12]}"

    async def acquire(self, pool: str, capacity: int) -> Lease | None:
        lease = Lease(pool, self.new_id(), self.ttl_s)
        taken = await self._run(pool, "acquire", capacity, self._ttl_ms(self.ttl_s), lease.id)
        return lease if taken else None

    async def renew(self, lease: Lease) -> bool:
        return bool(await self._run(lease.pool, "renew", self._ttl_ms(lease.ttl_s), lease.id))

    async def release(self, lease: Lease) -> bool:
        return bool(await self._run(lease.pool, "release", lease.id))

    async def busy(self, pool: str) -> int:
        return await self._run(pool, "busy")
