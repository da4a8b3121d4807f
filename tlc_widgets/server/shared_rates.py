"""Rate windows for the whole class when replicas share it: each tells the others what it
admitted, once a second.

    >>> counts_from({b"r": b"pid1-ab", b"c": b'{"ann": [2, 300]}'}, me="pid2-cd")
    {'ann': [2, 300]}
    >>> counts_from({b"r": b"pid1-ab", b"c": b'{"ann": [2, 300]}'}, me="pid1-ab")
    {}

With `--redis`, a student's requests and tokens per minute count whichever replica takes
them. Once a second each replica appends what it admitted and spent since the last time
(per user: requests, tokens) to the class's stream `tlc:{name}:rates`, and reads what the
others appended since it last looked: those go into its own sliding windows as if they
happened at that moment (`RateLimiter.add_elsewhere`). So a student who spreads requests
over replicas gets at most about a second's worth more than the limit. The stream keeps
two minutes (trimmed by id as it is written); a replica that starts reads the last
minute's, as if it had just happened.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import anyio
from redis.asyncio import Redis

from .limits import RateLimiter
from .store.errors import StoreUnavailable
from .store.redis_conn import guard

__all__ = ["SharedRates", "counts_from"]

log = logging.getLogger("tlc.limits")

SYNC_S = 1.0  #: seconds between syncs: about the most a student can overshoot by
KEEP_MS = 120_000  #: the stream keeps two minutes: longer than any window


def counts_from(fields: Mapping[bytes, bytes], me: str) -> dict[str, list[int]]:
    """One stream entry's counts, unless this replica wrote it."""
    if fields[b"r"].decode() == me:
        return {}
    return {user: [int(n), int(t)] for user, (n, t) in json.loads(fields[b"c"]).items()}


class SharedRates:
    """Keeps `rates` counting the whole class (see the module's text)."""

    def __init__(self, client: Redis, name: str, replica: str, rates: RateLimiter) -> None:
        self.client = client
        self.key = f"tlc:{{{name}}}:rates"
        self.replica = replica
        self.rates = rates
        rates.unsent = {}  # from now on the limiter notes what to tell the others
        # The others' last minute counts here too (as of now: on the safe side).
        self._last = f"{int(time.time() * 1000) - 60_000}-0"

    async def run(self) -> None:
        """Sync once a second, for the server's lifetime."""
        while True:
            await anyio.sleep(SYNC_S)
            try:
                await self.sync()
            except StoreUnavailable as down:  # counts wait here and are told later
                log.warning("rate windows are this replica's only for now: %s", down)

    async def sync(self) -> None:
        """Tell what was counted here; add what the others counted since the last look."""
        rates = self.rates
        assert rates.unsent is not None
        sent, rates.unsent = rates.unsent, {}
        oldest = f"{int(time.time() * 1000) - KEEP_MS}-0"
        try:
            with guard(self.client):
                async with self.client.pipeline(transaction=False) as pipe:
                    if sent:
                        fields = {"r": self.replica, "c": json.dumps(sent)}
                        pipe.xadd(self.key, fields, minid=oldest, approximate=True)  # type: ignore[arg-type]
                        pipe.pexpire(self.key, KEEP_MS)
                    pipe.xread({self.key: self._last}, count=10_000)
                    replies: Any = await pipe.execute()
        except StoreUnavailable:
            for user, (n, t) in sent.items():  # not lost: told at the next sync
                counts = rates.unsent.setdefault(user, [0, 0])
                counts[0] += n
                counts[1] += t
            raise
        for _, entries in replies[-1] or ():
            for entry_id, fields in entries:
                self._last = entry_id.decode()
                for user, (n, t) in counts_from(fields, self.replica).items():
                    rates.add_elsewhere(user, n, t)
