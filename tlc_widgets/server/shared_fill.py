"""A replica starts requests from the shared line: its own when they are next, and a dead
replica's, adopted.

    >>> from tlc_widgets.server.upstream import Timeouts, Upstream
    >>> box = Upstream("http://127.0.0.1:1234/v1", default_slots=2, timeouts=Timeouts())
    >>> pool_id(Pool(box, "qwen", capacity=4)), pool_id(Pool(box, None, capacity=2))
    ('http://127.0.0.1:1234/v1|qwen', 'http://127.0.0.1:1234/v1')

The half of `SharedDispatcher` (`shared_slots.py`) that deals with the line
(`shared_line.py`): each request accepted here joins it with its ticket (`ticket.py`) in
the same round trip as its log's first note; `fill()` stays a plain function that starts
one task, which claims while the next request fits a free place. A claim that returns this
replica's request starts it; one that returns a dead replica's adopts it: the record is
rebuilt from its ticket and its logged frames, the service takes it in (`on_adopt`: the
classroom's counts, history), and it starts here. A request that ended while waiting
leaves the line (`FairScheduler.on_remove`). After Redis was away, what waits here joins
the line again.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import anyio

from ..config import Settings
from .catalog import Pool
from .disowned import follow_chunk
from .dispatcher import Dispatcher
from .identity import Role
from .records import Record
from .replica import Replica
from .scheduler import Entry
from .shared_line import SharedLine
from .store.base import Lease
from .store.errors import StoreUnavailable
from .store.redis_conn import connect
from .ticket import from_ticket, ticket

__all__ = ["LineDispatcher", "pool_id"]

log = logging.getLogger("tlc.dispatcher")

#: the whole line, as last read, counts for the caps this long (positions read it at least
#: once a second while requests wait here); older, each replica's own count is the cap's
SEEN_FRESH_S = 2.0


def pool_id(pool: Pool) -> str:
    """The pool's name in Redis: the upstream's URL, and the model if it has its own pool."""
    base = pool.upstream.base_url
    return base if pool.model is None else f"{base}|{pool.model}"


class LineDispatcher(Dispatcher):
    """`Dispatcher` that starts requests when the line shared under `redis_name` says so."""

    def __init__(self, settings: Settings, *parts: Any) -> None:
        super().__init__(*parts)
        assert settings.redis_url is not None
        self.client = connect(settings.redis_url.get_secret_value())
        self.replica = self.shared = Replica(self.client, settings, self._tg)
        self.redis_name = settings.redis_name
        name, me = settings.redis_name, self.shared.logs.replica
        self.line = SharedLine(self.client, name, me, settings.lease_s)
        self.shared.on_lapse = self._lapsed
        self.slots = self.line.slots
        self.line_order = self._line_order
        self.scheduler.on_remove = self._left
        self.ticket_s = settings.queue_timeout_s  # a ticket lasts as long as a request waits
        self._roles: dict[str, Role] = {}  # waiting here: each one's role, for its ticket
        self._claimed = ""  # the request a claim just took: not to be taken out twice
        self._rejoin = False  # Redis was away: put what waits here back in the line
        self._leaving: list[str] = []  # ended while waiting: to take out of the shared line
        self._leave_now = anyio.Event()
        #: (when, size, per user) of the whole line as positions last read it
        self._seen: tuple[float, int, Counter[str]] = (-SEEN_FRESH_S, 0, Counter())
        self._wanted = False  # a fill was asked for since the filler last looked
        self._filling = False  # the filler task runs
        self._opened = False

    async def accepted(self, record: Record, role: Role) -> None:
        """Known to every replica (its log, its place in the shared line, two round trips
        at once) before its 202. With Redis down it waits here, and joins the line once
        Redis answers again."""
        entry = self.scheduler.get(record.id)
        async with anyio.create_task_group() as tg:
            if entry is not None:  # else it has ended already
                self._roles[record.id] = role
                tg.start_soon(self._join, entry, ticket(record, role))
            await self.shared.follow(record)

    async def _join(self, entry: Entry, text: str) -> None:
        """Join the line and, at a free place, start at once (one round trip)."""
        try:
            if self.closing or self.paused:
                await self.line.join(entry, text, self.ticket_s)
                return
            pools, wanted = self._pools()
            got = await self.line.join_and_claim(entry, text, self.ticket_s, wanted, self.strict)
            if got is not None and await self._start_claimed(got, pools):
                self._on_queue_change()
        except StoreUnavailable as down:
            log.warning("request %s waits to join the shared line: %s", entry.id, down)
            self._rejoin = True

    async def _join_again(self) -> None:
        """After Redis was away (a restart may have emptied it) or this replica was taken
        for dead: each request waiting here that the shared line does not hold joins it
        again, in this replica's order — unless its log names another replica (adopted)
        or none while it has ended (a survivor ended it): then it is theirs (`disowned.py`)."""
        logs, self._rejoin = self.shared.logs, False  # a join failing below sets it again
        for entry in list(self.scheduler.order()):
            record = self.store.get(entry.id)
            if record is None or await self.line.queue.contains(entry.id):
                continue
            holder = await logs.holder(entry.id)
            if holder == logs.replica or (holder is None and not await logs.final(entry.id)):
                role = self._roles.get(entry.id, Role.STUDENT)
                await self.line.join(entry, ticket(record, role), self.ticket_s)
            else:
                self._disown(record)

    def _lapsed(self) -> None:
        """This replica was silent long enough to be taken for dead: look at its line."""
        self._rejoin = True
        self.fill(look=True)

    def _disown(self, record: Record) -> None:
        """Another replica runs `record` now: leave it, and tell its clients here what the
        shared log says (nothing counted twice: its counts are the adopter's)."""
        self._claimed = record.id
        self.scheduler.remove(record.id)
        self._roles.pop(record.id, None)
        self.shared.writer.forget(record.id)
        forget = self.store.forget_later
        record.on_change = lambda changed: forget(changed) if changed.status.terminal else None
        self._tg.start_soon(self._follow_log, record, name=f"follow {record.id}")

    async def _follow_log(self, record: Record) -> None:
        async for chunk in self.shared.frames(record.id, 0):
            if follow_chunk(record, chunk):
                return

    async def _line_order(self) -> list[Entry]:
        """The whole line for positions; this replica's part while Redis is away. Its size
        and each user's share are kept for the caps (`waiting`, `waiting_for`)."""
        try:
            order = await self.line.order()
        except StoreUnavailable:
            self._rejoin = True
            return list(self.scheduler.order())
        self._seen = (anyio.current_time(), len(order), Counter(e.user for e in order))
        return order

    def waiting(self) -> int:
        seen_at, size, _ = self._seen  # the line as positions last read it, if lately
        fresh = anyio.current_time() - seen_at <= SEEN_FRESH_S
        return max(len(self.scheduler), size if fresh else 0)

    def waiting_for(self, user: str) -> int:
        seen_at, _, users = self._seen
        fresh = anyio.current_time() - seen_at <= SEEN_FRESH_S
        return max(self.scheduler.waiting_for(user), users[user] if fresh else 0)

    def _left(self, entry: Entry) -> None:
        """A waiting request ended here (cancelled, timed out…): out of the shared line too.
        (Called from a route, a task, or a timer outside any task: the leaving is queued.)"""
        self._roles.pop(entry.id, None)
        if entry.id != self._claimed and self._opened:
            self._leaving.append(entry.id)
            self._leave_now.set()

    async def _leave_forever(self) -> None:
        """Take the requests that ended while waiting out of the shared line, in order."""
        while True:
            await self._leave_now.wait()
            self._leave_now = anyio.Event()
            leaving, self._leaving = self._leaving, []
            for request_id in leaving:
                await self.line.leave(request_id)

    def fill(self, look: bool = False) -> None:
        """Start waiting requests while places are free (in one task; calls coalesce).
        `look`: claim even with nothing waiting here (a dead replica's may be next)."""
        self._wanted = True
        wanted = look or len(self.scheduler)
        if not self._filling and wanted and not self.closing and not self.paused:
            self._filling = True
            self._tg.start_soon(self._fill_while_wanted, look, name="fill")

    async def _fill_while_wanted(self, look: bool) -> None:
        try:
            while self._wanted:
                self._wanted = False
                await self._fill_once(look)
        except StoreUnavailable as down:  # the next look (a second) tries again
            log.warning("cannot start waiting requests: %s", down)
            self._rejoin = True
        except Exception:  # a bug here must not end every request this replica holds
            log.exception("starting waiting requests failed; the next look tries again")
            self._rejoin = True
        finally:
            self._filling = False

    async def _fill_once(self, look: bool) -> None:
        """Claim places while the shared line's next request is ours or a dead replica's."""
        started = False
        if self._rejoin:
            await self._join_again()
        while (look or len(self.scheduler)) and not self.closing and not self.paused:
            pools, wanted = self._pools()
            got = await self.line.claim(wanted, self.strict)
            if got is None:
                break  # nothing fits a free place, or another replica's request is next
            started = await self._start_claimed(got, pools) or started
        if started:
            self._on_queue_change()

    async def _start_claimed(
        self, got: tuple[str, Lease, bytes | None], pools: dict[str, Pool]
    ) -> bool:
        """Start what a claim took (this replica's request, or a dead one's, adopted);
        False when it ended while the claim was under way: its place goes back."""
        request_id, lease, adopted = got
        pool = pools.get(lease.pool)
        if adopted is not None:
            record: Record | None = await self._adopt(request_id, adopted)
        else:
            record, self._claimed = self.store.get(request_id), request_id
            if not self.scheduler.remove(request_id):
                record = None
        if record is None or pool is None or record.status.terminal:
            await self.slots.release(lease)
            return False
        self._roles.pop(request_id, None)
        self._launch(record, pool, lease)
        return True

    async def _adopt(self, request_id: str, text: bytes) -> Record:
        """A dead replica's waiting request, run here: rebuilt from its ticket, its logged
        frames first (event ids go on), taken in by the service, its log written from here."""
        frames = await self.shared.logs.logged(request_id)
        record, role = from_ticket(request_id, text, frames)
        self.on_adopt(record, role)
        self.shared.writer.follow(record, opened=True, written=len(frames))
        log.warning("request %s of a replica that stopped runs here now", request_id)
        return record

    def _pools(self) -> tuple[dict[str, Pool], dict[str, list[tuple[str, int]]]]:
        """The pools by id (the names leases use), and where each model may start now:
        every model, not only those waiting here, since the line is every replica's."""
        pools: dict[str, Pool] = {}
        wanted: dict[str, list[tuple[str, int]]] = {}
        for model in self.catalog.models():
            for upstream in self.catalog.ready_on(model):
                pool = self.catalog.pool_for(upstream, model)
                pools[pool_id(pool)] = pool
                wanted.setdefault(model, []).append((pool_id(pool), pool.capacity))
        return pools, wanted
