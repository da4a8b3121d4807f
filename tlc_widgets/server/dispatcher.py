"""The dispatcher: the only owner of running work and of the upstreams' slots.

    >>> dispatcher = Dispatcher(upstreams, scheduler, stats, task_group)   # doctest: +SKIP
    >>> dispatcher.fill()      # start every waiting request that has a free slot, now

There is no dispatch loop to wake and nothing polls. `fill()` is a plain function, called
when a request arrives and in the `finally` of every finished stream, so a freed slot is
refilled in the same event-loop step that freed it.

A slot is a place in a pool. An upstream that reports `parallel` per model gets a pool per
model (LM Studio 0.4+); one that does not gets a single pool of `--slots` for everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..protocol import ERRORS, Cancelled, Delta, Done, ErrorCode, ErrorEvent
from .records import Record, RecordStore
from .scheduler import FairScheduler
from .stats import Stats
from .upstream import Upstream, UpstreamFailure

__all__ = ["Dispatcher", "Pool"]

log = logging.getLogger("tlc.dispatcher")


@dataclass(slots=True)
class Pool:
    upstream: Upstream
    model: str | None  #: None: the whole upstream shares this pool
    capacity: int
    busy: int = 0

    @property
    def free(self) -> bool:
        return self.busy < self.capacity


class Dispatcher:
    def __init__(
        self,
        upstreams: list[Upstream],
        scheduler: FairScheduler,
        store: RecordStore,
        stats: Stats,
        task_group: TaskGroup,
        on_queue_change: Callable[[], None],
    ) -> None:
        self.upstreams = upstreams
        self.scheduler = scheduler
        self.store = store
        self.stats = stats
        self._tg = task_group
        self._on_queue_change = on_queue_change
        self._pools: dict[tuple[str, str | None], Pool] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}  # request id -> its running stream
        self.closing = False  #: set at shutdown: start nothing new
        self.paused = False  #: an admin paused the queue: accept requests, start none
        self.dispatched = 0  #: requests started so far
        #: called when an upstream stops answering (the service re-checks at once)
        self.on_upstream_down: Callable[[], None] = lambda: None

    # ------------------------------------------------------------------ slots

    def pool_for(self, upstream: Upstream, model: str) -> Pool:
        own = upstream.per_model_slots or upstream.is_embedding(model)  # embeddings: own pool
        key = (upstream.base_url, model if own else None)
        pool = self._pools.get(key)
        capacity = upstream.slots_for(model)
        if pool is None:
            pool = self._pools[key] = Pool(upstream, key[1], capacity)
        pool.capacity = capacity  # follows the upstream when its reported `parallel` changes
        return pool

    def pools(self) -> list[Pool]:
        return list(self._pools.values())

    def slots_for(self, model: str) -> int:
        return sum(u.slots_for(model) for u in self.upstreams if model in u.models) or 1

    def free_pool(self, model: str) -> Pool | None:
        """The least busy pool with a free slot on an upstream that has `model`."""
        best: Pool | None = None
        for upstream in self.upstreams:
            if upstream.reachable and model in upstream.models:
                pool = self.pool_for(upstream, model)
                if pool.free and (best is None or pool.busy < best.busy):
                    best = pool
        return best

    @property
    def running(self) -> int:
        return len(self._scopes)

    # ------------------------------------------------------------------ running

    def fill(self) -> None:
        """Start waiting requests while some have a free slot. Cheap when nothing fits."""
        started = False
        while len(self.scheduler) and not self.closing and not self.paused:
            entry = self.scheduler.pop_next(lambda model: self.free_pool(model) is not None)
            if entry is None:
                break
            record = self.store.get(entry.id)
            if record is None or record.status.terminal:
                continue
            pool = self.free_pool(entry.model)
            assert pool is not None  # pop_next only returns what a free pool accepts
            pool.busy += 1
            self.dispatched += 1
            record.dispatch_no = self.dispatched
            record.start(pool.upstream.base_url)
            self.stats.observe_wait(record.started - record.created if record.started else 0.0)
            self._scopes[record.id] = anyio.CancelScope()
            self._tg.start_soon(self._run, record, pool, name=f"request {record.id}")
            started = True
        if started:
            self._on_queue_change()

    def cancel_running(self, record: Record) -> None:
        """Close a running request's upstream stream now (its record has already ended)."""
        scope = self._scopes.get(record.id)
        if scope is not None:
            scope.cancel()

    def cancel_all(self) -> None:
        for scope in self._scopes.values():
            scope.cancel()

    async def _run(self, record: Record, pool: Pool) -> None:
        scope = self._scopes[record.id]
        body = record.upstream_body()
        count = self.stats.observe_tokens

        # A cancel lands at this task's next await, but lines already read from one chunk
        # are handed on before it: tokens after the record ended are dropped, not an error.
        def on_delta(delta: Delta) -> None:
            count(record.model)
            if not record.status.terminal:
                record.add_delta(delta)

        def on_wire(event: str, chunk: dict[str, Any], raw: str) -> None:
            if not record.status.terminal:
                record.add_wire(event, chunk, raw)

        try:
            with scope:
                endpoint = record.call.endpoint
                result = await pool.upstream.stream(endpoint, body, on_delta, on_wire)
                record.usage = result.usage
                record.finish(Done(result.finish_reason, result.usage))
        except UpstreamFailure as failure:
            if failure.code is ErrorCode.UPSTREAM_UNAVAILABLE:
                pool.upstream.reachable = False  # stop sending it work until a refresh says so
                self.on_upstream_down()
            record.finish(error_event(failure.code, failure.detail))
        except Exception:
            log.exception("request %s failed inside the queue server", record.id)
            record.finish(error_event(ErrorCode.INTERNAL_ERROR))
        finally:
            # Whatever happened, the request has ended and its slot is free: refill it now.
            record.finish(Cancelled(by="shutdown"))  # no-op unless nothing else ended it
            del self._scopes[record.id]
            pool.busy -= 1
            if record.started is not None and record.finished is not None:
                if isinstance(record.outcome, Done):
                    self.stats.observe_service(record.model, record.finished - record.started)
                if record.first_token is not None:
                    self.stats.ttft.observe(record.first_token - record.started)
            self.fill()


def error_event(code: ErrorCode, detail: str = "") -> ErrorEvent:
    sentence = ERRORS[code][1]
    return ErrorEvent(code=code.value, message=f"{sentence} ({detail})" if detail else sentence)
