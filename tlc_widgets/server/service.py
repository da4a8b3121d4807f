"""The queue as a whole, and its verbs: submit, cancel, pause, resume, drain, shut down.

    >>> import anyio
    >>> from tlc_widgets.config import Settings
    >>> async def demo() -> dict[str, object]:
    ...     settings = Settings(_env_file=None, upstreams=["http://127.0.0.1:9/v1"])
    ...     async with QueueService.running(settings.model_copy(update={"history_path": ""})) as q:
    ...         q.pause()
    ...         return q.state()
    >>> anyio.run(demo)
    {'waiting': 0, 'running': 0, 'paused': True, 'draining': False}

Routes call only these verbs. It wires the parts (records, scheduler, catalog, dispatcher,
positions, history, limits) and owns their background tasks for the app's lifespan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import anyio

from ..config import Settings
from ..protocol import (
    STOPPING_QUEUED,
    STOPPING_RUNNING,
    Cancelled,
    ErrorCode,
    Event,
    RequestBody,
    Status,
)
from .admission import validate
from .api_error import ApiError
from .auth import Role
from .catalog import Catalog
from .classroom import Classroom
from .clock import call_later
from .dispatcher import Dispatcher, error_event
from .history import History
from .limits import RateLimiter, check_user, estimate_tokens
from .logline import log_change
from .model_loads import ModelLoads
from .positions import Positions
from .record_store import RecordStore
from .records import CHAT, Call, Record
from .scheduler import Entry, FairScheduler
from .stats import Stats

__all__ = ["ApiError", "QueueService"]


class QueueService:
    def __init__(
        self, settings: Settings, task_group: anyio.abc.TaskGroup, keys_on: bool = False
    ) -> None:
        self.settings = settings
        self.history = History.from_settings(settings)
        self.keys_on = keys_on
        self.classroom = Classroom(settings, keys_on, self._notify, self._share_steering)
        self.rates = RateLimiter.from_settings(settings, keys_on)
        self.draining = False  #: an admin drains the queue: accept nothing new
        self.closing = False  #: the server is stopping: accept nothing, start nothing
        self.store = RecordStore(settings.retain_s, settings.retain_bytes)
        self.streams: Counter[str] = Counter()  #: open event streams per user (caps)
        self.scheduler = FairScheduler()
        self.stats = Stats()
        self.catalog = Catalog.from_settings(settings)
        wiring = (self.catalog, self.scheduler, self.store, self.stats, task_group)
        d = self.dispatcher = Dispatcher.for_settings(settings, *wiring, self.mark_dirty)
        d.strict, d.max_reply_bytes = settings.running_cap_strict, settings.max_reply_bytes
        d.on_upstream_down = self._upstream_down
        d.on_adopt, d.on_class = self._adopted, self._steered_elsewhere  # with --redis
        d.budgets, d.rates = self.classroom.budgets, self.rates  # --redis: the whole class's
        parts = (self.scheduler, self.store, self.catalog, self.stats)
        line = self.dispatcher.line_order  # with --redis: every replica's requests
        self.positions = Positions(*parts, settings.position_interval_s, self._notify, line)
        steps = (task_group, self.dispatcher.fill, self.mark_dirty)
        self.loads = ModelLoads(self.catalog, self.scheduler, self.store, *steps)
        self.presets = settings.presets()
        self._changed = anyio.Event()  # replaced on every change; monitors wait on it
        self._tg = task_group

    @classmethod
    @asynccontextmanager
    async def running(
        cls, settings: Settings, keys_on: bool = False
    ) -> AsyncIterator[QueueService]:
        """The service with its background tasks, for the length of an app's lifespan."""
        async with anyio.create_task_group() as tg:
            service = cls(settings, tg, keys_on)
            await service.dispatcher.open()  # with --redis: Redis answers, or no start
            await service.history.open()
            await service.classroom.recount(service.history)  # today's counts survive a restart
            tg.start_soon(service.history.flush_forever, name="history flush")
            await service.refresh_upstreams()
            tg.start_soon(service.positions.run, name="positions")
            tg.start_soon(service._refresh_forever, name="upstream refresh")
            tg.start_soon(service.store.nudge_forever, settings.ping_interval_s, name="pings")
            try:
                yield service
            finally:
                service.end_all()  # normally done already, by `shut_down` at SIGTERM
                tg.cancel_scope.cancel()
        await service.catalog.aclose()
        await service.history.close()  # after the shutdown cancels above, so they are saved

    # ------------------------------------------------------------------ stopping

    async def shut_down(self, grace_s: float) -> None:
        """The first step of a shutdown (SIGTERM, Ctrl-C), before any connection is cut:
        admit nothing more, end what waits at once (it may be sent again), give running
        replies `grace_s` to finish, then end them. Every open stream so gets its one
        terminal event and closes by itself; history saves each ending."""
        self.closing = self.dispatcher.closing = True
        self._end_waiting(lambda entry: True, Cancelled(by="shutdown", message=STOPPING_QUEUED))
        with anyio.move_on_after(grace_s):
            while self.dispatcher.running:
                await self.change_event.wait()
        self.end_all()

    def end_all(self) -> None:
        """End every live request now (their streams are cut by the stop)."""
        self.closing = self.dispatcher.closing = True
        for record in self.store.values():
            if record.finish(Cancelled(by="shutdown", message=STOPPING_RUNNING)):
                self.scheduler.remove(record.id)
                self.dispatcher.cancel_running(record)

    # ------------------------------------------------------------------ upstreams

    async def refresh_upstreams(self) -> None:
        await self.catalog.refresh()
        self._fail_stranded()
        self.loads.ensure_all()
        self.loads.keep_warm(self.settings.warm_models, self.settings.warm_hours)
        self.dispatcher.fill()

    def _upstream_down(self) -> None:
        self._tg.start_soon(self.refresh_upstreams, name="upstream re-check")

    def _fail_stranded(self) -> None:
        """Waiting requests for a model no upstream offers fail now, not at their timeout."""
        offered = set(self.catalog.models())
        failure = error_event(ErrorCode.UPSTREAM_UNAVAILABLE, self.catalog.tried())
        self._end_waiting(lambda entry: entry.model not in offered, failure)

    def _end_waiting(self, which: Callable[[Entry], bool], ending: Event) -> None:
        """Take the waiting requests `which` picks out of the line and end them with `ending`."""
        chosen = [e for e in self.scheduler.order() if which(e)]
        for entry in chosen:
            record = self.store.get(entry.id)
            self.scheduler.remove(entry.id)
            if record is not None:
                record.finish(ending)
        if chosen:
            self.mark_dirty()

    async def _refresh_forever(self) -> None:  # LM Studio loads, unloads, comes and goes
        while True:
            await anyio.sleep(self.settings.refresh_s)
            await self.refresh_upstreams()

    # ------------------------------------------------------------------ admission

    async def submit(
        self, body: RequestBody, *, user: str, role: Role, call: Call = CHAT
    ) -> Record:
        """Accept a request, or raise `ApiError` saying why not. `user` and `role` come from
        the caller's identity (no defaults: no one is taken for someone else); `call` is the
        OpenAI door's (another endpoint, the client's own fields)."""
        s = self.settings
        check_user(user)  # whichever door it came through: no control characters in a name
        if self.closing:
            raise ApiError(ErrorCode.SHUTTING_DOWN)
        if self.draining:
            raise ApiError(ErrorCode.DRAINING)
        messages, chars = validate(body, s)
        model = await self.catalog.resolve(body.model)
        if self.dispatcher.waiting() >= s.max_queue:
            raise ApiError(ErrorCode.QUEUE_FULL, retry_after=self.stats.retry_after(model))
        if self.dispatcher.waiting_for(user) >= s.max_per_user:
            raise ApiError(
                ErrorCode.TOO_MANY_REQUESTS,
                f"The limit is {s.max_per_user} waiting requests per user.",
                retry_after=self.stats.retry_after(model),
            )
        # No await from here on: the budget checked is the budget counted (no two slip past).
        self.classroom.admit(user, role)  # a paused class (423) or a spent budget (429)
        self.rates.admit(user, role, estimate_tokens(chars))  # last check: it counts the request
        prompted = self.classroom.with_prompt(messages, model, role)  # students cannot drop it
        if prompted is not messages and "messages" in call.extra:  # the door's own body too
            call = replace(call, extra={**call.extra, "messages": prompted})
        messages = prompted
        given = {"temperature": body.temperature, "max_tokens": body.max_tokens}
        params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        what = {"model": model, "messages": messages, "params": params, "call": call}
        record = Record.new(user=user, priority=body.priority, **what)
        record.on_change = self.classroom.accepted(record, role, self._on_record_change)
        self.store.add(record)
        # Without keys everyone is the local admin, yet the users are a class: cap like students.
        student = role is Role.STUDENT or not self.keys_on
        cap = s.running_per_student if student else s.running_per_teacher
        self.scheduler.push(Entry(record.id, user, model, body.priority, cap))
        self._on_record_change(record)
        record.emit(self.positions.of(record))
        record.timeout = call_later(s.queue_timeout_s, lambda: self._expire(record))
        self.loads.ensure(model)  # loaded nowhere yet: one load, for everyone who waits
        self.loads.greet(record)
        await self.dispatcher.accepted(record, role)  # --redis: known to every replica first
        self.dispatcher.fill()  # after: a replica's claim finds it in the shared line
        self.mark_dirty()
        return record

    # ------------------------------------------------------------------ ending

    def cancel(self, record: Record, by: str) -> bool:
        """Stop a request: a queued one leaves the queue, a running one's stream closes now."""
        if not record.finish(Cancelled(by=by)):
            return False
        if self.scheduler.remove(record.id):
            self.mark_dirty()
        self.dispatcher.cancel_running(record)
        return True

    def _expire(self, record: Record) -> None:
        if record.status is Status.QUEUED and self.scheduler.remove(record.id):
            record.finish(error_event(ErrorCode.QUEUE_TIMEOUT))
            self.mark_dirty()

    def _adopted(self, record: Record, role: Role) -> None:
        """With --redis: a request whose replica died runs here now (counted, kept, saved)."""
        record.on_change = self.classroom.accepted(record, role, self._on_record_change)
        self.store.add(record)

    def _on_record_change(self, record: Record) -> None:
        """One structured log line and a history save per state change; timers, retention
        and the user's token count on the way out."""
        self.history.record_changed(record)
        log_change(record)
        if record.status is not Status.QUEUED and record.timeout is not None:
            record.timeout.cancel()
            record.timeout = None
        if record.status.terminal:
            self.stats.observe_end(record.status.value, record.outcome)
            self.store.forget_later(record)
            self.rates.spend(record.user, record.tokens)
        self._notify()

    # ------------------------------------------------------------------ changes

    def mark_dirty(self) -> None:
        self.positions.mark_dirty()

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    @property
    def change_event(self) -> anyio.Event:
        """Set at the next change of any request (monitors' snapshot streams wait on it)."""
        return self._changed

    # ------------------------------------------------------------------ steering

    def state(self) -> dict[str, Any]:
        """Paused, draining, waiting, running: what the admin verbs answer."""
        d, waiting, draining = self.dispatcher, len(self.scheduler), self.draining
        return {"waiting": waiting, "running": d.running, "paused": d.paused, "draining": draining}

    def pause(self) -> None:
        """Accept requests but start none until `resume`; running ones go on."""
        self.dispatcher.paused = True
        self.mark_dirty()

    def drain(self) -> None:
        """Accept nothing new (503 `draining`); let what waits and runs finish."""
        self.draining = True
        self._share_steering({"draining": True})
        self.mark_dirty()

    def resume(self) -> None:
        """End a pause or a drain; waiting requests start at once where slots are free."""
        self.dispatcher.paused = False
        self.draining = False
        self._share_steering({"draining": False})
        self.dispatcher.fill()
        self.mark_dirty()

    def _share_steering(self, change: dict[str, Any]) -> None:
        """With --redis, every replica of the class takes a teacher's change, and a drain."""
        self.dispatcher.share_class(change)

    async def _steered_elsewhere(self, change: dict[str, Any]) -> None:
        self.draining = bool(change.pop("draining", self.draining))
        await self.classroom.steer(change, self.history)
