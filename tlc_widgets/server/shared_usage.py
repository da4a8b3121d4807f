"""Budget counts for the whole class when replicas share it: each adds what it counted, and
all read the sum.

    >>> usage_of({b"ann|p": b"3", b"ann|t": b"120", b"bob|e": b"1"})["ann"]
    Usage(prompts=3, tokens=120, errors=0, role=None)
    >>> fields_of({"ann": Usage(prompts=1, tokens=40)})
    {'ann|p': 1, 'ann|t': 40}

With `--redis`, a student's prompts and reply tokens count against one budget whichever
replica they reach. `Budgets` keeps what this replica counted since its last sync
(`unsent`); once a second this module adds it to the class's hash for the day
(`tlc:{name}:use:<midnight>`, fields `<user>|p`, `|t`, `|e`, by HINCRBY) and, while a
session runs, to the session's too (`…:use:<session start>`), then reads the hash of the
period that counts now — all in one MULTI round trip. The budgets then count the class's
totals plus what is not sent yet, so a student who spreads requests over replicas
overshoots by at most what one second adds. Because the day's hash also holds a session's
requests, every replica has the day's counts at once when a teacher ends the session.
Hashes expire two days after their last write.

At start, once the budgets have read this replica's history, a replica that finds no hash
for the day yet (the first of the class, or a Redis that lost its data) adds the day's
counts from that history; otherwise the hash already holds them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

import anyio
from redis.asyncio import Redis

from .budgets import Budgets, Usage, day_bounds
from .store.errors import StoreUnavailable
from .store.redis_conn import guard

__all__ = ["SYNC_S", "SharedUsage", "fields_of", "usage_of"]

log = logging.getLogger("tlc.budgets")

SYNC_S = 1.0  #: seconds between syncs: the most a student can overshoot by, in time
KEEP_S = 2 * 86_400  #: a period's hash lasts this long after its last write
_FIELDS = (("p", "prompts"), ("t", "tokens"), ("e", "errors"))


def fields_of(counts: Mapping[str, Usage]) -> dict[str, int]:
    """`HINCRBY` fields for `counts` (zeros left out)."""
    out: dict[str, int] = {}
    for user, usage in counts.items():
        for short, name in _FIELDS:
            if value := getattr(usage, name):
                out[f"{user}|{short}"] = value
    return out


def usage_of(raw: Mapping[bytes, bytes]) -> dict[str, Usage]:
    """A period's hash, read back as each user's counts."""
    out: dict[str, Usage] = {}
    for key, value in raw.items():
        user, _, short = key.decode().rpartition("|")
        usage = out.setdefault(user, Usage())
        name = dict(_FIELDS)[short]
        setattr(usage, name, getattr(usage, name) + int(value))
    return out


class SharedUsage:
    """Keeps `budgets` counting the whole class (see the module's text)."""

    def __init__(self, client: Redis, name: str, budgets: Budgets) -> None:
        self.client = client
        self.prefix = f"tlc:{{{name}}}:use:"
        self.budgets = budgets
        budgets.shared = {}  # from now on the budgets count the class's totals

    def _key(self, start: float) -> str:
        return f"{self.prefix}{int(start)}"

    async def run(self) -> None:
        """Sync once a second, for the server's lifetime."""
        seeded = False
        while True:
            await anyio.sleep(SYNC_S)
            if not self.budgets.loaded:
                continue  # the history's counts first: they may be the day's seed
            try:
                if not seeded:
                    await self._seed()
                    seeded = True
                await self.sync()
            except StoreUnavailable as down:  # counts wait here and are added later
                log.warning("budget counts are this replica's only for now: %s", down)

    async def _seed(self) -> None:
        day = self._key(day_bounds(self.budgets.clock())[0])
        with guard(self.client):
            known = await self.client.exists(day)
        if not known:
            self.budgets.add_unsent(self.budgets.here())

    def _counting(self) -> str:
        """The hash of the period that counts now: the session's while one runs."""
        session = self.budgets.session
        start = session["started_at"] if session else day_bounds(self.budgets.clock())[0]
        return self._key(start)

    async def sync(self) -> None:
        """Add what was counted here, read the class's totals for the period that counts."""
        budgets = self.budgets
        sent = {user: replace(usage) for user, usage in budgets.unsent.items()}
        fields, counting = fields_of(sent), self._counting()
        keys = {self._key(day_bounds(budgets.clock())[0]), counting}  # the day holds all
        with guard(self.client):  # on failure `unsent` still holds it: added next time
            async with self.client.pipeline(transaction=True) as pipe:
                for key in keys if fields else ():
                    for field, value in fields.items():
                        pipe.hincrby(key, field, value)
                    pipe.expire(key, KEEP_S)
                pipe.hgetall(counting)
                replies = await pipe.execute()
        budgets.add_unsent(sent, sign=-1)  # in the totals now (counted meanwhile stays)
        if self._counting() == counting:  # not a new period since (midnight, a session)
            budgets.shared = usage_of(replies[-1])
