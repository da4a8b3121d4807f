"""The waiting line several replicas share: one fair order on Redis, each request started
by the replica that holds its client.

    >>> from tlc_widgets.server.store.redis_queue import connect
    >>> line = SharedLine(connect("redis://127.0.0.1:9/0"), "class-a", "pid1-ab", 10.0)
    >>> line.channel
    'tlc:{class-a}:fill:pid1-ab'

With `--redis`, a replica keeps its waiting requests where they are (their bodies, their
clients' streams: the fast path) and also puts each one's place in the shared fair queue
(`store/redis_queue.py`): one order for the whole class — the highest priority first, then
the user served least recently *on any replica*, then that user's oldest request. When a
place is free, a replica *claims* (one Lua step, `RedisQueue.claim`):

- the next request is its own: it is popped and its place leased in the same step, and the
  replica starts it;
- it is another live replica's: nothing changes, and that replica is told on its own
  channel (`tlc:{name}:fill:<replica>`) to claim it — it does within a round trip or two;
- its replica stopped saying it is alive (killed): it is *adopted* — started here, from
  the ticket its replica wrote beside its place (`ticket.py`), its event log carried on
  (the client reconnects to any replica with `Last-Event-ID` and reads on). A ticket that
  ran out (its queue timeout) drops it instead, and a survivor ends it (`replica_lost`).
  A replica that stops cleanly ends its own waiting requests and says goodbye, so its line
  is not waited for.

Per-user running caps count every replica's running requests (each lease names its user),
so every replica decides alike and no two tell each other to go first forever.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence

import anyio
from redis.asyncio import Redis

from .scheduler import Entry
from .store.base import Lease
from .store.errors import StoreUnavailable
from .store.redis_conn import guard
from .store.redis_queue import Claim, RedisQueue
from .store.redis_slots import RedisSlots

__all__ = ["SharedLine"]

log = logging.getLogger("tlc.dispatcher")

#: a replica is told again about the same request only after this long (it may have missed
#: it; and two replicas that disagree about a model's upstreams must not ping-pong)
TELL_AGAIN_S = 0.25


class SharedLine:
    """This replica's view of the shared line: join, leave, claim, and the whole order."""

    def __init__(self, client: Redis, name: str, replica: str, lease_s: float) -> None:
        self.client = client
        self.queue = RedisQueue(client, name, replica)
        self.slots = RedisSlots(client, name, ttl_s=lease_s)
        self.channel = f"tlc:{{{name}}}:fill:{replica}"
        self._prefix = f"tlc:{{{name}}}:fill:"
        self._told: dict[str, float] = {}  # request id -> when its replica was last told

    async def join(self, entry: Entry, ticket: str, keep_s: float) -> None:
        """Put a request waiting here in the shared order, with its ticket (`ticket.py`);
        one already there stays where it is (joining twice is joining once)."""
        with contextlib.suppress(ValueError):
            await self.queue.push(entry, ticket, keep_s)

    async def leave(self, request_id: str) -> None:
        """Take a request that ended while waiting out of the shared order."""
        try:
            await self.queue.remove(request_id)
        except StoreUnavailable as down:  # its replica pops it later, finds it ended, skips
            log.warning("request %s stays in the shared line for now: %s", request_id, down)

    async def join_and_claim(
        self,
        entry: Entry,
        ticket: str,
        keep_s: float,
        pools: Mapping[str, Sequence[tuple[str, int]]],
        strict: bool,
    ) -> tuple[str, Lease, bytes | None] | None:
        """`join`, then `claim`, in one round trip: what a request that just arrived does."""
        got = await self.queue.push_and_claim(entry, ticket, keep_s, self.slots, pools, strict)
        return await self._taken(got)

    async def claim(
        self, pools: Mapping[str, Sequence[tuple[str, int]]], strict: bool
    ) -> tuple[str, Lease, bytes | None] | None:
        """(request id, its place, None) when the next request is ours, (…, its ticket)
        when it was a dead replica's (adopted); None when nothing fits or another
        replica's is next (which is then told)."""
        return await self._taken(await self.queue.claim(self.slots, pools, strict))

    async def _taken(self, got: Claim | None) -> tuple[str, Lease, bytes | None] | None:
        if got is None:
            return None
        if got.lease is not None:
            return got.entry.id, got.lease, got.ticket
        assert got.owner is not None
        await self._tell(got.owner, got.entry.id)
        return None

    async def _tell(self, replica: str, request_id: str) -> None:
        now = time.monotonic()
        if now - self._told.get(request_id, -TELL_AGAIN_S) < TELL_AGAIN_S:
            return
        if len(self._told) > 1024:  # remembered only long enough to not repeat at once
            self._told = {k: t for k, t in self._told.items() if now - t < TELL_AGAIN_S}
        self._told[request_id] = now
        with guard(self.client):
            await self.client.publish(self._prefix + replica, request_id)

    async def order(self) -> list[Entry]:
        """Every replica's waiting requests, in the order they will start."""
        return await self.queue.order()

    async def goodbye(self, alive_key: str) -> None:
        """A clean stop: this replica's entries stop holding the line at once (claims drop
        them as a dead replica's) instead of after its lease time."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            try:
                with guard(self.client):
                    await self.client.delete(alive_key)
            except StoreUnavailable:
                pass  # then its alive key runs out by itself
