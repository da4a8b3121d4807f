"""The fair queue on Redis: several replicas share one order, decided atomically in Lua.

    >>> import anyio
    >>> async def demo() -> list[str]:
    ...     queue = RedisQueue(connect("redis://127.0.0.1:6379/0"), name="class-a")
    ...     for i in range(2):
    ...         await queue.push(Entry(f"h{i}", user="heavy", model="m"))
    ...     await queue.push(Entry("l0", user="light", model="m"))
    ...     return [e.id for e in await queue.order()]
    >>> anyio.run(demo)  # doctest: +SKIP
    ['h0', 'l0', 'h1']

The rule is `FairScheduler`'s, step for step (the property tests run both and compare every
decision): the highest priority class first; within it, the user served least recently
(a global dispatch counter in Redis numbers the starts; never served ranks first, by
arrival); that user's oldest request (FIFO); a user at their cap is passed over while
someone else can use the slot. Each step (push, remove, pop, order) is one Lua script
(`lua/queue.lua`), so two replicas popping at once never start the same request, and a
step that fails halfway changes nothing.

Why these Redis types:
- a **list per (class, user)**: FIFO within a user is RPUSH / LPOP; the rare cancel of a
  waiting request is LREM, linear in that one user's few requests;
- a **sorted set of users per class**, scored by rank (last start, or arrival minus 2^52 for
  users never served), so the next user is the lowest score and the first user whose head
  can start is found by walking it in order, 64 at a time;
- a **sorted set `served`** (user → last start): forgetting users idle for `FORGET_EVERY`
  starts is one range query, as in the embedded scheduler;
- **hashes** for each entry's fields and arrival number, and for each user's waiting count
  (`waiting_for` in O(1) for the per-user limit).
Every key of one queue starts with `tlc:{name}:`; the braces are a cluster hash tag, so a
queue's keys stay on one node and its Lua can touch them all.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ..scheduler import FORGET_EVERY, Entry
from .base import Lease, SlotLeases
from .redis_conn import connect, guard, script_text
from .redis_slots import RedisSlots

__all__ = ["Claim", "RedisQueue", "connect"]


@dataclass(frozen=True, slots=True)
class Claim:
    """What `RedisQueue.claim` found: this replica's start, or whose turn it is."""

    entry: Entry  #: only the id when another replica holds it
    lease: Lease | None  #: the place taken for it, when it is this replica's
    owner: str | None = None  #: the live replica that must start it, when not this one
    ticket: bytes | None = None  #: a dead replica's request, adopted: how to run it (ticket.py)


class RedisQueue:
    """`FairQueue` on Redis; `name` separates queues that share one Redis. A replica passes
    its `replica` name: its entries carry it, and `claim` starts only its own."""

    def __init__(self, client: Redis, name: str = "default", replica: str | None = None) -> None:
        self.client = client
        self.name = name
        self.replica = replica
        self.prefix = f"tlc:{{{name}}}:"
        self._script = client.register_script(script_text("queue.lua"))

    async def _run(self, step: str, *args: str) -> Any:
        with guard(self.client):
            return await self._script(keys=[self.prefix + "e"], args=[step, FORGET_EVERY, *args])

    async def push(self, entry: Entry, ticket: str = "", keep_s: float = 0) -> None:
        """Join the line; a replica also leaves the request's `ticket`, kept `keep_s` (while
        it may wait), for a survivor to run it if this replica dies (`ticket.py`)."""
        keep = str(max(1, round(keep_s * 1000)))
        added = await self._run("push", *self._push_args(entry), ticket, keep)
        if not added:
            raise ValueError(f"request {entry.id!r} is already waiting")

    def _push_args(self, entry: Entry) -> tuple[str, str, str, str]:
        fields: dict[str, Any] = {"u": entry.user, "m": entry.model, "p": entry.priority}
        fields["c"] = entry.cap
        if self.replica is not None:
            fields["o"] = self.replica
        encoded = json.dumps(fields, separators=(",", ":"))
        return entry.id, encoded, entry.user, str(entry.priority)

    async def remove(self, request_id: str) -> bool:
        return bool(await self._run("remove", request_id))

    async def pop_next(
        self,
        eligible: Collection[str] | None = None,
        running: Mapping[str, int] | None = None,
        strict: bool = False,
    ) -> Entry | None:
        models = "*" if eligible is None else json.dumps(sorted(eligible))
        counts = "" if running is None else json.dumps({u: n for u, n in running.items() if n})
        row = await self._run("pop", models, counts, "1" if strict else "0")
        return None if row is None else _entries(row)[0]

    async def pop_and_lease(
        self,
        slots: SlotLeases,
        pools: Mapping[str, Sequence[tuple[str, int]]],
        running: Mapping[str, int] | None = None,
        strict: bool = False,
    ) -> tuple[Entry, Lease] | None:
        """`pop_next` and a lease on the least busy free pool of its model, in one round
        trip: no other replica can take that place in between. `slots` must be the
        `RedisSlots` of the same name (its lease time and replica name are used)."""
        if not isinstance(slots, RedisSlots) or slots.prefix != self.prefix + "lease:":
            raise TypeError("pop_and_lease needs the RedisSlots of this queue's name")
        lease_id = slots.new_id()
        counts = "" if running is None else json.dumps({u: n for u, n in running.items() if n})
        ttl_ms = str(max(1, round(slots.ttl_s * 1000)))
        wanted = json.dumps({m: [list(c) for c in choices] for m, choices in pools.items()})
        reply = await self._run(
            "pop_and_lease", wanted, counts, "1" if strict else "0", ttl_ms, lease_id
        )
        if reply is None:
            return None
        rows, pool = json.loads(reply)
        return _entry(rows[0]), Lease(pool, lease_id, slots.ttl_s)

    async def claim(
        self, slots: SlotLeases, pools: Mapping[str, Sequence[tuple[str, int]]], strict: bool
    ) -> Claim | None:
        """The next start in a line several replicas share, as one step: None when nothing
        waiting fits a free place; else `Claim(entry, lease)` when the next one is this
        replica's (popped, its place leased), `Claim(entry, None, owner)` when another
        live replica holds it (nothing changes: that replica must take it), or
        `Claim(entry, lease, ticket=…)` when its replica died: adopted, to be run here.
        Per-user caps count every replica's running requests (lease ids end in `|<user>`)."""
        args = self._claim_args(slots, pools, strict)
        return self._claimed(await self._run("claim", *args), slots)

    async def push_and_claim(
        self,
        entry: Entry,
        ticket: str,
        keep_s: float,
        slots: SlotLeases,
        pools: Mapping[str, Sequence[tuple[str, int]]],
        strict: bool,
    ) -> Claim | None:
        """`push` (a request already waiting stays as it is), then `claim`, as one step: a
        request that arrives at a free place is started without a second round trip."""
        keep = str(max(1, round(keep_s * 1000)))
        args = (*self._push_args(entry), ticket, keep, *self._claim_args(slots, pools, strict))
        return self._claimed(await self._run("push_claim", *args), slots)

    def _claim_args(
        self, slots: SlotLeases, pools: Mapping[str, Sequence[tuple[str, int]]], strict: bool
    ) -> tuple[str, ...]:
        if not isinstance(slots, RedisSlots) or slots.prefix != self.prefix + "lease:":
            raise TypeError("claim needs the RedisSlots of this queue's name")
        if self.replica is None:
            raise TypeError("claim needs the queue's replica name")
        ttl_ms = str(max(1, round(slots.ttl_s * 1000)))
        wanted = json.dumps({m: [list(c) for c in choices] for m, choices in pools.items()})
        return wanted, "1" if strict else "0", ttl_ms, slots.new_id(), self.replica

    @staticmethod
    def _claimed(reply: bytes | None, slots: SlotLeases) -> Claim | None:
        if reply is None:
            return None
        got = json.loads(reply)
        if got[0] == "other":
            return Claim(Entry(got[2], "", ""), None, got[1])
        ticket = json.dumps(got[4]).encode() if len(got) > 4 else None
        return Claim(_entry(got[1][0]), Lease(got[2], got[3], slots.ttl_s), ticket=ticket)

    async def order(self, model: str | None = None) -> list[Entry]:
        return _entries(await self._run("order", model or ""))

    async def waiting_for(self, user: str) -> int:
        with guard(self.client):
            count = await self.client.hget(self.prefix + "waiting", user)  # type: ignore[misc]
        return int(count or 0)

    async def size(self) -> int:
        with guard(self.client):
            return int(await self.client.hlen(self.prefix + "e"))  # type: ignore[misc]

    async def contains(self, request_id: str) -> bool:
        with guard(self.client):
            return bool(await self.client.hexists(self.prefix + "e", request_id))  # type: ignore[misc]

    async def clear(self) -> None:
        """Forget this queue entirely (tests, and an admin's reset)."""
        with guard(self.client):
            keys = [k async for k in self.client.scan_iter(match=self.prefix + "*", count=500)]
            if keys:
                await self.client.delete(*keys)


def _entry(row: list[Any]) -> Entry:
    request_id, fields, seq = row
    entry = Entry(request_id, fields["u"], fields["m"], fields["p"], fields["c"])
    entry.seq = seq
    return entry


def _entries(reply: bytes) -> list[Entry]:
    """Entries from a script's reply: a JSON list of [id, fields, arrival number]."""
    return [_entry(row) for row in json.loads(reply)]
