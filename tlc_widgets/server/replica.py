"""A replica's part in the shared event logs: write its own, read anyone's, end the dead's.

    >>> replica_name().startswith("pid")
    True

With `--redis`, each request's events are also written to a Redis stream
(`store/redis_events.py`) by the replica that holds it, a few frames per round trip, in
order, however slowly Redis answers. So `GET /api/requests/{id}/events` works on every
replica, `Last-Event-ID` resumes on any of them, and a client whose replica died can
reconnect to another and read the end of its request there: every replica says it is alive
every third of the lease time, and each looks once per lease time for requests of replicas
that stopped saying so, and ends them with one `replica_lost` error (at most one replica
succeeds for each, in one Lua step).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from redis.asyncio import Redis

from ..config import Settings
from ..protocol import ErrorCode, event_data
from ..sse import dumps
from .dispatcher import error_event
from .log_writer import LogWriter
from .records import Record
from .shared_view import TERMINAL, view_of
from .store.errors import StoreUnavailable
from .store.redis_events import EventLogs

__all__ = ["Replica", "replica_name"]

log = logging.getLogger("tlc.replica")

CANCEL_WAIT_S = 3.0  #: how long a cancel on another replica waits for the holder's ending


def replica_name() -> str:
    """This process's name in Redis: unique even for two replicas with one pid (containers)."""
    return f"pid{os.getpid()}-{secrets.token_hex(4)}"


class Replica:
    def __init__(self, client: Redis, settings: Settings, task_group: TaskGroup) -> None:
        self.logs = EventLogs(client, settings.redis_name, replica_name())
        self.keep_s = settings.retain_s
        self.lease_s = settings.lease_s
        self.ping_s = settings.ping_interval_s
        self.writer = LogWriter(self.logs, self.keep_s, task_group)
        #: told when this replica finds it was silent long enough to be taken for dead
        self.on_lapse: Callable[[], None] = lambda: None
        lost = error_event(ErrorCode.REPLICA_LOST)
        self._lost = dumps(event_data(lost))

    async def follow(self, record: Record) -> None:
        """Note `record` in Redis (before its 202 answer: a client that moves to another
        replica finds it there, and a survivor ends it if this replica dies), then write
        its events to its shared log, from now until its terminal one."""
        try:
            await self.logs.open(record.id, record.user, self.keep_s, record.model)
            opened = True
        except StoreUnavailable as down:  # it runs here all the same; the log tries again
            log.warning("request %s not in the shared log yet: %s", record.id, down)
            opened = False
        self.writer.follow(record, opened)

    async def frames(self, request_id: str, after: int) -> AsyncIterator[bytes]:
        """A request's frames from the shared log (any replica's request)."""
        async for chunk in self.logs.frames(request_id, after, self.ping_s):
            yield chunk

    async def owner(self, request_id: str) -> str | None:
        """The user whose request this is, if any replica holds it (or held it lately)."""
        who = await self.logs.owner(request_id)
        return None if who is None else who["user"]

    async def view(self, request_id: str) -> dict[str, Any] | None:
        """`GET /api/requests/{id}`'s fields for another replica's request, from its log."""
        who = await self.logs.owner(request_id)
        if who is None:
            return None
        return view_of(request_id, who, await self.logs.logged(request_id))

    async def cancel(self, request_id: str, by: str) -> tuple[dict[str, Any], bool]:
        """Cancel another replica's request: ask its replica, wait (a few seconds at most)
        for the ending in the log; (its view then, whether this call cancelled it)."""
        before = await self.view(request_id)
        assert before is not None  # the route checked it exists
        if before["status"] in TERMINAL:
            return before, False
        await self.logs.ask_cancel(request_id, by)
        with anyio.move_on_after(CANCEL_WAIT_S):
            async for _ in self.logs.frames(request_id, 0, self.ping_s):
                pass  # until the terminal frame
        after = await self.view(request_id)
        assert after is not None
        ours = (after["outcome"] or {}).get("by") == by and after["status"] == "cancelled"
        return after, ours

    async def run(self) -> None:
        """Say this replica is alive; end the requests of replicas that are not."""
        beats = 0
        while True:
            try:
                if not await self.logs.heartbeat(self.lease_s) and beats:
                    log.warning("this replica was silent longer than its lease time")
                    self.on_lapse()
                if beats % 3 == 0:
                    ended = await self.logs.end_orphans(self._lost, self.keep_s)
                    if ended:
                        log.warning("ended %d requests of a replica that stopped", len(ended))
            except StoreUnavailable as down:
                log.warning("cannot say this replica is alive: %s", down)
            beats += 1
            await anyio.sleep(self.lease_s / 3)
