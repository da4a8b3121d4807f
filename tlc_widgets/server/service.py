"""The queue as a whole: admission, cancellation, positions, snapshots. Routes call this.

    >>> async with QueueService.running(settings) as queue:      # doctest: +SKIP
    ...     record = await queue.submit(RequestBody(prompt="Hi"), user="ada")
    ...     queue.cancel(record, by="client")

Positions are computed once per queue change, for everyone at once (O(n log users)), and a
`queued` event is appended only to records whose position, queue length or ETA moved. A
publisher task does this at most once per `position_interval_s`, so a thousand waiting
clients cost O(waiting) per interval however fast the queue moves; the latest positions are
always delivered, because a change during the pause marks the queue dirty again.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ..config import Settings
from ..protocol import Cancelled, ErrorCode, ErrorEvent, Queued, RequestBody, Status
from .api_error import ApiError
from .dispatcher import Dispatcher, error_event
from .records import Record, RecordStore
from .scheduler import Entry, FairScheduler
from .stats import Stats
from .upstream import Timeouts, Upstream

__all__ = ["ApiError", "QueueService"]

log = logging.getLogger("tlc.requests")


class QueueService:
    def __init__(self, settings: Settings, task_group: anyio.abc.TaskGroup) -> None:
        self.settings = settings
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
        self.presets = settings.presets()
        self._dirty = anyio.Event()
        self._changed = anyio.Event()  # replaced on every change; monitors wait on it
        self._tg = task_group

    @classmethod
    @asynccontextmanager
    async def running(cls, settings: Settings) -> AsyncIterator[QueueService]:
        """The service with its background tasks, for the length of an app's lifespan."""
        async with anyio.create_task_group() as tg:
            service = cls(settings, tg)
            await service.refresh_upstreams()
            tg.start_soon(service._publish_positions, name="positions")
            tg.start_soon(service._refresh_forever, name="upstream refresh")
            try:
                yield service
            finally:
                service.dispatcher.closing = True
                for record in service.store.values():
                    record.finish(Cancelled(by="shutdown"))
                tg.cancel_scope.cancel()
        for upstream in service.upstreams:
            await upstream.aclose()

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
                record.finish(error_event(ErrorCode.UPSTREAM_UNAVAILABLE, _urls(self.upstreams)))
        if stranded:
            self.mark_dirty()

    async def _refresh_forever(self) -> None:
        while True:
            await anyio.sleep(self.settings.refresh_s)
            await self.refresh_upstreams()

    def models(self) -> list[str]:
        seen: dict[str, None] = {}
        for upstream in self.upstreams:
            if upstream.reachable:
                seen.update(dict.fromkeys(upstream.models))
        return list(seen)

    # ------------------------------------------------------------------ admission

    async def submit(self, body: RequestBody, user: str) -> Record:
        """Accept a request into the queue, or raise `ApiError` saying why not."""
        s = self.settings
        messages = [m.model_dump(exclude_none=True) for m in body.chat_messages()]
        if sum(len(m.text()) for m in body.chat_messages()) > s.max_prompt_chars:
            raise ApiError(
                ErrorCode.PROMPT_TOO_LONG,
                f"The limit is {s.max_prompt_chars} characters.",
                param="messages",
            )
        if body.max_tokens is not None and body.max_tokens > s.max_tokens_cap:
            raise ApiError(
                ErrorCode.MAX_TOKENS_TOO_LARGE,
                f"The limit is {s.max_tokens_cap}.",
                param="max_tokens",
            )
        model = await self._resolve_model(body.model)
        if len(self.scheduler) >= s.max_queue:
            raise ApiError(ErrorCode.QUEUE_FULL, retry_after=self.retry_after(model))
        if self.scheduler.waiting_for(user) >= s.max_per_user:
            raise ApiError(
                ErrorCode.TOO_MANY_REQUESTS,
                f"The limit is {s.max_per_user} waiting requests per user.",
                retry_after=self.retry_after(model),
            )
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
        )
        self.store.add(record)
        self.scheduler.push(Entry(record.id, user, model, body.priority))
        self._on_record_change(record)
        record.emit(self._position_of(record))
        record.timeout = asyncio.get_running_loop().call_later(
            s.queue_timeout_s, self._expire, record
        )
        self.dispatcher.fill()
        self.mark_dirty()
        return record

    async def _resolve_model(self, requested: str | None) -> str:
        if not any(u.reachable for u in self.upstreams):
            await self.refresh_upstreams()  # it may have come back since the last look
            if not any(u.reachable for u in self.upstreams):
                raise ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, _urls(self.upstreams))
        model = requested or self.settings.default_model
        available = self.models()
        if model is None:
            if not available:
                raise ApiError(ErrorCode.MODEL_NOT_LOADED, "The upstream lists no models.")
            return available[0]
        if model not in available:
            await self.refresh_upstreams()
            if model not in self.models():
                choices = ", ".join(self.models()) or "none"
                raise ApiError(
                    ErrorCode.MODEL_NOT_FOUND,
                    f"Asked for {model!r}; available: {choices}.",
                    param="model",
                )
        return model

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
        """One structured log line per state change; timers and retention on the way out."""
        timings = record.timings()
        log.info(
            "request id=%s state=%s user=%s model=%s upstream=%s waited=%s ttft=%s tokens=%d "
            "tok_s=%s outcome=%s",
            record.id,
            record.status.value,
            record.user,
            record.model,
            record.upstream,
            timings["waited_s"],
            timings["ttft_s"],
            record.tokens,
            timings["tokens_per_s"],
            _outcome(record),
        )
        if record.status is not Status.QUEUED and record.timeout is not None:
            record.timeout.cancel()
            record.timeout = None
        if record.status.terminal:
            self.stats.served += record.status is Status.DONE
            self.stats.requests.labels(record.status.value).inc()
            if isinstance(record.outcome, ErrorEvent):
                self.stats.errors.labels(record.outcome.code).inc()
            self.store.forget_later(record)
        self._notify()

    # ------------------------------------------------------------------ positions

    def mark_dirty(self) -> None:
        self._dirty.set()
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _position_of(self, record: Record) -> Queued:
        for position, other in enumerate(
            (e for e in self.scheduler.order() if e.model == record.model), start=1
        ):
            if other.id == record.id:
                return self._queued(record.model, position)
        raise KeyError(record.id)

    def _queued(self, model: str, position: int) -> Queued:
        slots = self.dispatcher.slots_for(model)
        eta = self.stats.eta_s(model, position, slots)
        return Queued(position=position, waiting=len(self.scheduler), eta_s=eta)

    def publish_positions(self) -> int:
        """Append a `queued` event to every waiting record whose figures changed."""
        sent = 0
        per_model: dict[str, int] = {}
        for entry in self.scheduler.order():
            position = per_model[entry.model] = per_model.get(entry.model, 0) + 1
            record = self.store.get(entry.id)
            if record is None or record.status is not Status.QUEUED:
                continue
            queued = self._queued(entry.model, position)
            if queued != record.last_queued:
                record.emit(queued)
                sent += 1
        return sent

    async def _publish_positions(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            self.publish_positions()
            self.stats.queue_length.set(len(self.scheduler))
            self.stats.running.set(self.dispatcher.running)
            await anyio.sleep(self.settings.position_interval_s)

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
            "upstreams": upstreams,
            "served": self.stats.served,
            "mean_wait_s": self.stats.mean_wait_s(),
            "tokens_per_s": self.stats.tokens_per_s(),
        }


def _outcome(record: Record) -> str:
    match record.outcome:
        case None:
            return "-"
        case ErrorEvent(code=code):
            return code
        case Cancelled(by=by):
            return f"cancelled-by-{by}"
        case outcome:
            return str(getattr(outcome, "finish_reason", "done"))


def _urls(upstreams: list[Upstream]) -> str:
    return "Tried: " + ", ".join(u.base_url for u in upstreams) + "."
