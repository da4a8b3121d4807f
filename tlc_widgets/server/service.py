"""The queue as a whole: admission, cancellation, listeners, snapshots. Routes call this.

    >>> async with QueueService.running(settings) as queue:      # doctest: +SKIP
    ...     record = await queue.submit(RequestBody(prompt="Hi"), user="ada")
    ...     queue.cancel(record, by="client")

It wires the parts together — records, the fair scheduler, the dispatcher and its slots,
the position publisher (`positions.py`), history, rate limits — and owns their background
tasks for the length of the app's lifespan.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ..config import Settings
from ..protocol import Cancelled, ErrorCode, ErrorEvent, RequestBody, Status
from .admission import resolve_model, urls, validate
from .api_error import ApiError
from .auth import Role
from .dispatcher import Dispatcher, error_event
from .history import History
from .limits import RateLimiter, estimate_tokens
from .logline import log_change
from .positions import Positions
from .records import CHAT, Call, Record, RecordStore
from .scheduler import Entry, FairScheduler
from .stats import Stats
from .upstream import Timeouts, Upstream

__all__ = ["ApiError", "QueueService"]


class QueueService:
    def __init__(
        self, settings: Settings, task_group: anyio.abc.TaskGroup, keys_on: bool = False
    ) -> None:
        self.settings = settings
        self.history = History(settings.history_path, settings.history_flush_s)
        self.rates = RateLimiter.from_settings(settings, keys_on)
        self.draining = False  #: an admin drains the queue: accept nothing new
        self.store = RecordStore(settings.retain_s)
        self.scheduler = FairScheduler()
        self.stats = Stats()
        timeouts = Timeouts(
            settings.connect_timeout_s, settings.first_token_timeout_s, settings.stall_timeout_s
        )
        self.upstreams = [
            Upstream(url, default_slots=settings.slots, timeouts=timeouts)
            for url in settings.upstreams
        ]
        self.dispatcher = Dispatcher(
            self.upstreams, self.scheduler, self.store, self.stats, task_group, self.mark_dirty
        )
        self.dispatcher.on_upstream_down = self._upstream_down
        self.positions = Positions(
            self.scheduler,
            self.store,
            self.dispatcher,
            self.stats,
            settings.position_interval_s,
            self._notify,
        )
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
            await service.history.open()
            tg.start_soon(service.history.flush_forever, name="history flush")
            await service.refresh_upstreams()
            tg.start_soon(service.positions.run, name="positions")
            tg.start_soon(service._refresh_forever, name="upstream refresh")
            tg.start_soon(service._keep_alive, name="keep-alive")
            try:
                yield service
            finally:
                service.dispatcher.closing = True
                for record in service.store.values():
                    record.finish(Cancelled(by="shutdown"))
                tg.cancel_scope.cancel()
        for upstream in service.upstreams:
            await upstream.aclose()
        await service.history.close()  # after the shutdown cancels above, so they are saved

    # ------------------------------------------------------------------ upstreams

    async def refresh_upstreams(self) -> None:
        async with anyio.create_task_group() as tg:
            for upstream in self.upstreams:
                tg.start_soon(upstream.refresh)
        self._fail_stranded()
        self.dispatcher.fill()

    def _upstream_down(self) -> None:
        self._tg.start_soon(self.refresh_upstreams, name="upstream re-check")

    def _fail_stranded(self) -> None:
        """Waiting requests whose model no answering upstream offers fail now, with
        `upstream_unavailable`, instead of waiting out the queue timeout in silence."""
        offered = set(self.models())
        stranded = [e for e in self.scheduler.order() if e.model not in offered]
        for entry in stranded:
            record = self.store.get(entry.id)
            self.scheduler.remove(entry.id)
            if record is not None:
                record.finish(error_event(ErrorCode.UPSTREAM_UNAVAILABLE, urls(self.upstreams)))
        if stranded:
            self.mark_dirty()

    async def _keep_alive(self) -> None:
        """Every `ping_interval_s`, wake every live request's streams: an idle one sends a
        `: ping` so proxies and browsers keep the connection open."""
        while True:
            await anyio.sleep(self.settings.ping_interval_s)
            for record in self.store.values():
                if not record.status.terminal:
                    record.nudge()

    async def _refresh_forever(self) -> None:
        while True:
            await anyio.sleep(self.settings.refresh_s)
            await self.refresh_upstreams()

    def models(self) -> list[str]:
        seen: dict[str, None] = {}
        for upstream in self.upstreams:
            if upstream.reachable:
                seen.update(dict.fromkeys(upstream.models))
        allowed = self.settings.allowed_models
        return [m for m in seen if m in allowed] if allowed else list(seen)

    # ------------------------------------------------------------------ admission

    async def submit(
        self, body: RequestBody, user: str, role: Role = Role.ADMIN, call: Call = CHAT
    ) -> Record:
        """Accept a request into the queue, or raise `ApiError` saying why not.

        `call` is what the OpenAI door adds: another endpoint, the client's own fields."""
        s = self.settings
        if self.draining:
            raise ApiError(ErrorCode.DRAINING)
        messages, chars = validate(body, s)
        model = await resolve_model(self, body.model)
        if len(self.scheduler) >= s.max_queue:
            raise ApiError(ErrorCode.QUEUE_FULL, retry_after=self.retry_after(model))
        if self.scheduler.waiting_for(user) >= s.max_per_user:
            raise ApiError(
                ErrorCode.TOO_MANY_REQUESTS,
                f"The limit is {s.max_per_user} waiting requests per user.",
                retry_after=self.retry_after(model),
            )
        self.rates.admit(user, role, estimate_tokens(chars))  # last check: it counts the request
        params: dict[str, Any] = {}
        if body.temperature is not None:
            params["temperature"] = body.temperature
        if body.max_tokens is not None:
            params["max_tokens"] = body.max_tokens
        record = Record.new(
            user=user,
            model=model,
            messages=messages,
            params=params,
            priority=body.priority,
            on_change=self._on_record_change,
            call=call,
        )
        self.store.add(record)
        self.scheduler.push(Entry(record.id, user, model, body.priority))
        self._on_record_change(record)
        record.emit(self.positions.of(record))
        record.timeout = asyncio.get_running_loop().call_later(
            s.queue_timeout_s, self._expire, record
        )
        self.dispatcher.fill()
        self.mark_dirty()
        return record

    def retry_after(self, model: str) -> int:
        """Seconds until a place frees up, roughly: one mean service time, at least 1."""
        mean = self.stats.mean_service_s(model)
        return max(1, math.ceil(mean)) if mean else 5

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

    def _on_record_change(self, record: Record) -> None:
        """One structured log line and a history save per state change; timers, retention
        and the user's token count on the way out."""
        self.history.record_changed(record)
        log_change(record)
        if record.status is not Status.QUEUED and record.timeout is not None:
            record.timeout.cancel()
            record.timeout = None
        if record.status.terminal:
            self.stats.served += record.status is Status.DONE
            self.stats.requests.labels(record.status.value).inc()
            if isinstance(record.outcome, ErrorEvent):
                self.stats.errors.labels(record.outcome.code).inc()
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

    # ------------------------------------------------------------------ listeners

    @asynccontextmanager
    async def listening(self, record: Record) -> AsyncIterator[None]:
        """Count an open event stream. When the last one closes on a live request, wait
        `disconnect_grace_s` for a reconnect (`Last-Event-ID`), then cancel it: a closed tab
        or a dead kernel must not keep a slot or a place in line."""
        record.listeners += 1
        try:
            yield
        finally:
            record.listeners -= 1
            if record.listeners == 0 and not record.status.terminal:
                asyncio.get_running_loop().call_later(
                    self.settings.disconnect_grace_s, self._cancel_if_abandoned, record
                )

    def _cancel_if_abandoned(self, record: Record) -> None:
        if record.listeners == 0:
            self.cancel(record, by="disconnect")

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> dict[str, Any]:
        """What `/api/queue` answers: the whole queue in one small JSON object."""
        upstreams = []
        for upstream in self.upstreams:
            pools = [p for p in self.dispatcher.pools() if p.upstream is upstream]
            upstreams.append(
                {
                    "url": upstream.base_url,
                    "reachable": upstream.reachable,
                    "models": sorted(upstream.models),
                    "slots": (
                        {m: upstream.slots_for(m) for m in upstream.models}
                        if upstream.per_model_slots
                        else upstream.default_slots
                    ),
                    "busy": sum(p.busy for p in pools),
                }
            )
        return {
            "waiting": len(self.scheduler),
            "running": self.dispatcher.running,
            "paused": self.dispatcher.paused,
            "draining": self.draining,
            "upstreams": upstreams,
            "served": self.stats.served,
            "mean_wait_s": self.stats.mean_wait_s(),
            "tokens_per_s": self.stats.tokens_per_s(),
        }
