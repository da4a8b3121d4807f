"""A replica's dispatcher: the upstreams' slots are leases on Redis, shared by every replica.

    >>> from tlc_widgets.server.shared_fill import LineDispatcher
    >>> issubclass(SharedDispatcher, LineDispatcher)  # the line's half is shared_fill.py
    True

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

from ..config import Settings
from ..protocol import Cancelled
from .catalog import Pool
from .clock import call_later
from .dispatcher import OnDelta, OnWire
from .records import Record
from .shared_fill import LineDispatcher, pool_id
from .shared_rates import SharedRates
from .shared_usage import SharedUsage
from .store.base import Lease
from .store.errors import StoreUnavailable
from .store.leases import renewing
from .store.redis_conn import check_redis, guard
from .upstream import StreamResult

__all__ = ["SharedDispatcher", "pool_id"]

log = logging.getLogger("tlc.dispatcher")

#: seconds between looks at the pools while requests wait (leases of a dead replica end)
LOOK_EVERY_S = 1.0


class SharedDispatcher(LineDispatcher):
    """`Dispatcher` whose slots are leases in Redis under `settings.redis_name`."""

    def __init__(self, settings: Settings, *parts: Any) -> None:
        super().__init__(settings, *parts)
        self.channel = f"tlc:{{{settings.redis_name}}}:freed"
        self.steer_channel = f"tlc:{{{settings.redis_name}}}:paused"  # a key and a channel
        self.class_channel = f"tlc:{{{settings.redis_name}}}:class"  # a key and a channel
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

    def share_class(self, change: dict[str, Any]) -> None:
        """A teacher's change (the class's pause, prompts, budgets, session) or a drain
        holds for every replica: its fields go in one hash (for replicas that start later;
        each field is one setting, so changes made at once on two replicas both hold) and
        in a message (for those running now, which apply it: `on_class`)."""
        message = json.dumps({"from": self.shared.logs.replica, "change": change})
        self._tg.start_soon(self._share_class, change, message, name="share the class")

    async def _share_class(self, change: dict[str, Any], message: str) -> None:
        try:
            with guard(self.client):
                async with self.client.pipeline(transaction=True) as pipe:
                    for field, value in change.items():
                        if value is None:
                            pipe.hdel(self.class_channel, field)
                        else:
                            pipe.hset(self.class_channel, field, json.dumps(value))
                    pipe.publish(self.class_channel, message)
                    await pipe.execute()
        except StoreUnavailable as down:
            log.warning("the teacher's change holds on this replica only: %s", down)

    async def _class_changed(self, message: bytes | str) -> None:
        sent = json.loads(message)
        if sent["from"] != self.shared.logs.replica and self.on_class is not None:
            await self.on_class(sent["change"])

    async def open(self) -> None:
        await check_redis(self.client)
        with guard(self.client):  # a class paused before this replica started stays paused
            self._paused = bool(await self.client.exists(self.steer_channel))
            fields: Any = await self.client.hgetall(self.class_channel)  # type: ignore[misc]
        if fields and self.on_class is not None:  # the class as its teacher left it
            await self.on_class({k.decode(): json.loads(v) for k, v in fields.items()})
        self._opened = True
        await self.shared.logs.heartbeat(self.shared.lease_s)  # alive before any request
        self._tg.start_soon(self._listen, name="slots freed elsewhere")
        self._tg.start_soon(self.shared.run, name="replica heartbeat")
        self._tg.start_soon(self.shared.writer.run, name="event log writer")
        self._tg.start_soon(self._leave_forever, name="leave the shared line")
        if self.budgets is not None:  # the class's budget counts, whichever replica counted
            usage = SharedUsage(self.client, self.redis_name, self.budgets)
            self._tg.start_soon(usage.run, name="budget counts")
        if self.rates is not None:  # and its rate windows
            rates = SharedRates(self.client, self.redis_name, self.shared.logs.replica, self.rates)
            self._tg.start_soon(rates.run, name="rate windows")

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
                channels = (self.channel, cancels, self.steer_channel, self.class_channel)
                await pubsub.subscribe(*channels, self.line.channel)
                while True:
                    message = await pubsub.get_message(timeout=LOOK_EVERY_S)
                    channel = "" if message is None else message["channel"].decode()
                    if channel == cancels:
                        self._cancel_asked(json.loads(message["data"]))  # type: ignore[index]
                    elif channel == self.class_channel:
                        await self._class_changed(message["data"])  # type: ignore[index]
                    elif channel == self.steer_channel:
                        self._paused = message["data"] == b"1"  # type: ignore[index]
                        self._on_queue_change()
                    elif len(self.scheduler):  # the line moved elsewhere: places here too
                        self._on_queue_change()
                    self.fill(look=message is None)  # once a second: a dead one's may be next
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except (exceptions.RedisError, OSError):
                    pass
