"""A replica's dispatcher: the upstreams' slots are leases on Redis, shared by every replica.

    >>> from tlc_widgets.server.upstream import Timeouts, Upstream
    >>> box = Upstream("http://127.0.0.1:1234/v1", default_slots=2, timeouts=Timeouts())
    >>> pool_id(Pool(box, "qwen", capacity=4)), pool_id(Pool(box, None, capacity=2))
    ('http://127.0.0.1:1234/v1|qwen', 'http://127.0.0.1:1234/v1')

With `--redis URL`, several `tlc serve` processes in front of the same upstreams share one
fair line and count their running requests in one place: a request starts when its
replica *claims* it (`shared_line.py`: it is next in the shared order, and a place in its
pool is leased in the same Lua step); its replica renews the lease while the reply streams
(`store/leases.renewing`) and releases it at the end, so the upstream never sees more than
its `parallel` however many replicas there are. A replica killed with `kill -9` renews
nothing: its places come back when its leases run out.

Each replica also keeps its own waiting requests in the embedded `FairScheduler` (their
bodies, for its routes and its class view); the event logs are `replica.py`'s; what else
it shares: pause/resume, cancels (docs/scale-out.md). `fill()` stays a plain function; it
starts one task that claims while the next request is this replica's. A replica hears of a
place freed elsewhere, or that its request is next, by pub/sub, and looks once a second
anyway (a killed replica says nothing; its leases just run out).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
from redis import exceptions
from redis.asyncio.client import Pipeline

from ..config import Settings
from ..protocol import Cancelled
from .catalog import Pool
from .clock import call_later
from .dispatcher import Dispatcher, OnDelta, OnWire
from .records import Record
from .replica import Replica
from .scheduler import Entry
from .shared_line import SharedLine
from .store.base import Lease
from .store.errors import StoreUnavailable
from .store.leases import renewing
from .store.redis_conn import check_redis, connect, guard
from .upstream import StreamResult

__all__ = ["SharedDispatcher", "pool_id"]

log = logging.getLogger("tlc.dispatcher")

#: seconds between looks at the pools while requests wait (leases of a dead replica end)
LOOK_EVERY_S = 1.0


def pool_id(pool: Pool) -> str:
    """The pool's name in Redis: the upstream's URL, and the model if it has its own pool."""
    base = pool.upstream.base_url
    return base if pool.model is None else f"{base}|{pool.model}"


class SharedDispatcher(Dispatcher):
    """`Dispatcher` whose slots are leases in Redis under `settings.redis_name`."""

    def __init__(self, settings: Settings, *parts: Any) -> None:
        super().__init__(*parts)
        assert settings.redis_url is not None
        self.client = connect(settings.redis_url.get_secret_value())
        self.channel = f"tlc:{{{settings.redis_name}}}:freed"
        self.replica = self.shared = Replica(self.client, settings, self._tg)
        name, me = settings.redis_name, self.shared.logs.replica
        self.line = SharedLine(self.client, name, me, settings.lease_s)
        self.slots = self.line.slots
        self.line_order = self._line_order
        self.scheduler.on_remove = self._left
        self._claimed = ""  # the request a claim just took: not to be taken out twice
        self._rejoin = False  # Redis was away: put what waits here back in the line
        self.steer_channel = f"tlc:{{{settings.redis_name}}}:paused"  # a key and a channel
        self._wanted = False  # a fill was asked for since the filler last looked
        self._filling = False  # the filler task runs
        self._opened = False
        self.grace_s = settings.disconnect_grace_s
        self._checks: set[asyncio.Task[None]] = set()  # abandoned? checks under way

    @property  # type: ignore[override]
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        """An admin's pause or resume on any replica holds for every replica of the class
        (a key, for replicas that start later, and a message, for those running now)."""
        self._paused = value
        if getattr(self, "_opened", False):  # not for the base class's first `paused = False`
            self._tg.start_soon(self._share_pause, value, name="share a pause")

    async def _share_pause(self, value: bool) -> None:
        try:
            with guard(self.client):
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.set(self.steer_channel, 1) if value else pipe.delete(self.steer_channel)
                    pipe.publish(self.steer_channel, "1" if value else "0")
                    await pipe.execute()
        except StoreUnavailable as down:
            log.warning("the pause holds on this replica only: %s", down)

    async def open(self) -> None:
        await check_redis(self.client)
        with guard(self.client):  # a class paused before this replica started stays paused
            self._paused = bool(await self.client.exists(self.steer_channel))
        self._opened = True
        await self.shared.logs.heartbeat(self.shared.lease_s)  # alive before any request
        self._tg.start_soon(self._listen, name="slots freed elsewhere")
        self._tg.start_soon(self.shared.run, name="replica heartbeat")
        self._tg.start_soon(self.shared.writer.run, name="event log writer")

    async def accepted(self, record: Record) -> None:
        """Known to every replica (its log, its place in the shared line) before its 202.
        With Redis down it waits here, and joins the line once Redis answers again."""
        entry = self.scheduler.get(record.id)
        if entry is None:  # ended already
            await self.shared.follow(record)
            return

        async def join(pipe: Pipeline) -> None:  # one round trip with the log's first note
            await self.line.queue.push_into(pipe, entry)

        if not await self.shared.follow(record, join):
            self._rejoin = True
        self.fill()

    async def _join_again(self) -> None:
        """After Redis was away (a restart may have emptied it): every request waiting
        here that the shared line does not hold joins it again, in this replica's order."""
        for entry in list(self.scheduler.order()):
            if not await self.line.queue.contains(entry.id):
                await self.line.join(entry)
        self._rejoin = False

    async def _line_order(self) -> list[Entry]:
        """The whole line for positions; this replica's part while Redis is away."""
        try:
            return await self.line.order()
        except StoreUnavailable:
            self._rejoin = True
            return list(self.scheduler.order())

    def _left(self, entry: Entry) -> None:
        """A waiting request ended here (cancelled, timed out…): out of the shared line too."""
        if entry.id != self._claimed and self._opened:
            self._tg.start_soon(self.line.leave, entry.id, name="leave the shared line")

    def abandoned(self, record: Record, cancel: Callable[[], object]) -> None:
        """Its client may read it on another replica now (it moved): cancel only if none
        does, else look again after another grace time. (Called from a timer, outside any
        task, where anyio cannot start one: an asyncio task.)"""

        async def unless_watched() -> None:
            try:
                watched = await self.shared.logs.watched(record.id)
            except StoreUnavailable:
                watched = False  # as without Redis: nobody here reads it
            if not watched:
                cancel()
            elif not record.status.terminal:
                call_later(self.grace_s, again)

        def again() -> None:
            if record.listeners == 0:
                self.abandoned(record, cancel)

        task = asyncio.get_running_loop().create_task(unless_watched())
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    def fill(self) -> None:
        """Start waiting requests while places are free (in one task; calls coalesce)."""
        self._wanted = True
        if not self._filling and len(self.scheduler) and not self.closing and not self.paused:
            self._filling = True
            self._tg.start_soon(self._fill_while_wanted, name="fill")

    async def _fill_while_wanted(self) -> None:
        try:
            while self._wanted:
                self._wanted = False
                await self._fill_once()
        except StoreUnavailable as down:  # the next look (a second) tries again
            log.warning("cannot start waiting requests: %s", down)
            self._rejoin = True
        finally:
            self._filling = False

    async def _fill_once(self) -> None:
        """Claim places while the shared line's next request is ours (`shared_line.py`)."""
        started = False
        if self._rejoin:
            await self._join_again()
        while len(self.scheduler) and not self.closing and not self.paused:
            pools, wanted = self._pools()
            got = await self.line.claim(wanted, self.strict)
            if got is None:
                break  # nothing fits a free place, or another replica's request is next
            request_id, lease = got
            record, pool = self.store.get(request_id), pools.get(lease.pool)
            self._claimed = request_id
            if self.scheduler.remove(request_id) and record and pool and not record.status.terminal:
                self._launch(record, pool, lease)
                started = True
            else:  # ended while the claim was under way: the place goes back
                await self.slots.release(lease)
        if started:
            self._on_queue_change()

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

    async def _stream(
        self, record: Record, pool: Pool, lease: Lease | None, on_delta: OnDelta, on_wire: OnWire
    ) -> StreamResult:
        assert lease is not None  # `_fill_once` starts nothing without one
        try:
            async with renewing(self.slots, lease):  # LeaseLost: the stream ends, named
                return await super()._stream(record, pool, lease, on_delta, on_wire)
        finally:
            self._tg.start_soon(self._announce, lease.pool, name="announce a freed slot")

    async def _announce(self, pool: str) -> None:
        try:
            with guard(self.client):
                await self.client.publish(self.channel, pool)
        except StoreUnavailable:
            pass  # the others look once a second anyway

    async def _listen(self) -> None:
        """Fill at each place another replica frees, and once a second while requests wait;
        cancel what another replica's clients cancel."""
        try:
            while True:
                try:
                    await self._listen_once()
                except StoreUnavailable as down:
                    log.warning("not hearing about freed slots: %s", down)
                    self._rejoin = True
                    await anyio.sleep(LOOK_EVERY_S)
                    self.fill()
        finally:  # the stop: this replica's last endings to the log, then no more Redis
            await self.shared.writer.flush()
            await self.line.goodbye(self.shared.logs.alive_key)
            with anyio.CancelScope(shield=True):
                await self.client.aclose()

    def _cancel_asked(self, asked: dict[str, str]) -> None:
        """Another replica's client cancels a request: if it is ours, the same steps as
        `QueueService.cancel` (its ending then reaches the log, and that client)."""
        record = self.store.get(asked["id"])
        if record is None or not record.finish(Cancelled(by=asked["by"])):
            return
        if self.scheduler.remove(record.id):
            self._on_queue_change()
        self.cancel_running(record)

    async def _listen_once(self) -> None:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            cancels = self.shared.logs.cancel_channel
            with guard(self.client):
                await pubsub.subscribe(self.channel, cancels, self.steer_channel, self.line.channel)
                while True:
                    message = await pubsub.get_message(timeout=LOOK_EVERY_S)
                    channel = "" if message is None else message["channel"].decode()
                    if channel == cancels:
                        self._cancel_asked(json.loads(message["data"]))  # type: ignore[index]
                    elif channel == self.steer_channel:
                        self._paused = message["data"] == b"1"  # type: ignore[index]
                        self._on_queue_change()
                    elif len(self.scheduler):  # the line moved elsewhere: places here too
                        self._on_queue_change()
                    self.fill()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except (exceptions.RedisError, OSError):
                    pass
