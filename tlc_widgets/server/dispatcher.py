"""The dispatcher: the only owner of running work and of the upstreams' slots.

    >>> dispatcher = Dispatcher(catalog, scheduler, store, stats, tg, on_change)  # doctest: +SKIP
    >>> dispatcher.fill()  # start every waiting request that has a free slot  # doctest: +SKIP

There is no dispatch loop to wake and nothing polls. `fill()` is a plain function, called
when a request arrives and in the `finally` of every finished stream, so a freed slot is
refilled in the same event-loop step that freed it.

Which pool has a free slot for a model is the catalog's to say (`catalog.py`); the
dispatcher only takes a slot, runs the stream, and gives the slot back.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ..config import Settings
from ..protocol import ERRORS, Cancelled, Delta, Done, ErrorCode, ErrorEvent
from .catalog import Catalog, Pool
from .identity import Role
from .record_store import RecordStore
from .records import Record
from .scheduler import Entry, FairScheduler
from .stats import Stats
from .store.base import Lease
from .store.errors import LeaseLost
from .upstream import StreamResult, UpstreamFailure

if TYPE_CHECKING:
    from .budgets import Budgets
    from .limits import RateLimiter
    from .replica import Replica

__all__ = ["Dispatcher", "error_event"]

log = logging.getLogger("tlc.dispatcher")

OnDelta = Callable[[Delta], None]
OnWire = Callable[[str, dict[str, Any], str], None]


class Dispatcher:
    def __init__(
        self,
        catalog: Catalog,
        scheduler: FairScheduler,
        store: RecordStore,
        stats: Stats,
        task_group: TaskGroup,
        on_queue_change: Callable[[], None],
    ) -> None:
        self.catalog = catalog
        self.scheduler = scheduler
        self.store = store
        self.stats = stats
        self._tg = task_group
        self._on_queue_change = on_queue_change
        self._scopes: dict[str, anyio.CancelScope] = {}  # request id -> its running stream
        self._running_by_user: Counter[str] = Counter()  # for the per-user running cap
        self.closing = False  #: set at shutdown: start nothing new
        self.paused = False  #: an admin paused the queue: accept requests, start none
        self.strict = False  #: per-user running caps hold even when a slot would idle
        self.max_reply_bytes = 4 * 2**20  #: a reply that grows past this ends, named
        self.dispatched = 0  #: requests started so far
        #: called when an upstream stops answering (the service re-checks at once)
        self.on_upstream_down: Callable[[], None] = lambda: None
        #: with --redis: the shared event logs (any replica's requests), else None
        self.replica: Replica | None = None
        #: with --redis: a request of a replica that died, adopted here (the service takes it in)
        self.on_adopt: Callable[[Record, Role], None] = lambda record, role: None
        #: with --redis: the class's budgets, counted for the whole class (shared_usage.py)
        self.budgets: Budgets | None = None
        #: with --redis: the per-user rate windows, fed with the other replicas' counts
        self.rates: RateLimiter | None = None
        #: with --redis: a teacher's change or a drain made on another replica (to apply)
        self.on_class: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        #: with --redis: the whole line, every replica's waiting requests in order
        self.line_order: Callable[[], Awaitable[list[Entry]]] | None = None

    @classmethod
    def for_settings(cls, settings: Settings, *parts: Any) -> Dispatcher:
        """This process's own slots, or, with `redis_url`, slots shared with other replicas
        (`shared_slots.py`; imported only then: redis is an optional package)."""
        if settings.redis_url is None:
            return cls(*parts)
        from .shared_slots import SharedDispatcher

        return SharedDispatcher(settings, *parts)

    @property
    def running(self) -> int:
        return len(self._scopes)

    # ------------------------------------------------------------------ running

    def fill(self) -> None:
        """Start waiting requests while some have a free slot. Cheap when nothing fits."""
        started = False
        free_pool = self.catalog.free_pool
        while len(self.scheduler) and not self.closing and not self.paused:
            if all(free_pool(model) is None for model in self.scheduler.models()):
                break  # no slot for anyone waiting: no need to walk the line
            entry = self.scheduler.pop_next(
                lambda model: free_pool(model) is not None, self._running_by_user.get, self.strict
            )
            if entry is None:
                break
            record = self.store.get(entry.id)
            if record is None or record.status.terminal:
                continue
            pool = free_pool(entry.model)
            assert pool is not None  # pop_next only returns what a free pool accepts
            self._launch(record, pool)
            started = True
        if started:
            self._on_queue_change()

    def _launch(self, record: Record, pool: Pool, lease: Lease | None = None) -> None:
        """Count the slot taken and start the request's stream in its own task."""
        pool.busy += 1
        self._running_by_user[record.user] += 1
        self.dispatched += 1
        record.dispatch_no = self.dispatched
        record.start(pool.upstream.base_url)
        self.stats.observe_wait(record.started - record.created if record.started else 0.0)
        self._scopes[record.id] = anyio.CancelScope()
        self._tg.start_soon(self._run, record, pool, lease, name=f"request {record.id}")

    def waiting(self) -> int:
        """Requests waiting (a replica: in the whole line, as last seen), for the queue cap."""
        return len(self.scheduler)

    def waiting_for(self, user: str) -> int:
        """`user`'s waiting requests (a replica: in the whole line), for the per-user cap."""
        return self.scheduler.waiting_for(user)

    async def open(self) -> None:
        """Connect to shared state before the first request; one process has none."""

    async def accepted(self, record: Record, role: Role) -> None:
        """A request joined the line (a replica shares it here: its log, its ticket)."""

    def share_class(self, steering: dict[str, Any]) -> None:
        """A teacher's change (or a drain): one process has nobody to tell."""

    def abandoned(self, record: Record, cancel: Callable[[], object]) -> None:
        """Every stream of `record` here closed and none came back in the grace time."""
        cancel()

    async def _stream(
        self, record: Record, pool: Pool, lease: Lease | None, on_delta: OnDelta, on_wire: OnWire
    ) -> StreamResult:
        """The upstream call itself (a replica holds its slot's lease around it)."""
        body = record.upstream_body()
        return await pool.upstream.stream(record.call.endpoint, body, on_delta, on_wire)

    def cancel_running(self, record: Record) -> None:
        """Close a running request's upstream stream now (its record has already ended)."""
        scope = self._scopes.get(record.id)
        if scope is not None:
            scope.cancel()

    async def _run(self, record: Record, pool: Pool, lease: Lease | None = None) -> None:
        scope = self._scopes[record.id]
        count = self.stats.observe_tokens

        # A cancel lands at this task's next await, but lines already read from one chunk
        # are handed on before it: tokens after the record ended are dropped, not an error.
        def on_delta(delta: Delta) -> None:
            count(record.model)
            if not record.status.terminal:
                record.add_delta(delta)
                if record.size > self.max_reply_bytes:  # one huge token, or a runaway reply
                    limit = f"The limit is {self.max_reply_bytes:,} bytes."
                    record.finish(error_event(ErrorCode.REPLY_TOO_LARGE, limit))
                    scope.cancel()  # and stop reading it

        def on_wire(event: str, chunk: dict[str, Any], raw: str) -> None:
            if not record.status.terminal:
                record.add_wire(event, chunk, raw)

        released = False

        def release() -> None:
            # The slot first, the paperwork after: the next request's task is scheduled
            # before this one's `done` writers, its history row and its position updates.
            nonlocal released
            if not released:
                released = True
                del self._scopes[record.id]
                pool.busy -= 1
                self._running_by_user[record.user] -= 1
                if not self._running_by_user[record.user]:
                    del self._running_by_user[record.user]  # nothing kept for idle users
                self.fill()

        try:
            with scope:  # a Stop cancels it: nothing below runs, `finally` frees the slot
                result = await self._stream(record, pool, lease, on_delta, on_wire)
                release()
                record.usage = result.usage
                record.finish(Done(result.finish_reason, result.usage))
        except UpstreamFailure as failure:
            if failure.code is ErrorCode.UPSTREAM_UNAVAILABLE:
                pool.upstream.reachable = False  # stop sending it work until a refresh says so
                self.on_upstream_down()
            release()
            record.finish(error_event(failure.code, failure.detail))
        except LeaseLost as lost:  # another replica may hold this slot now: stop, say why
            release()
            record.finish(error_event(ErrorCode.SLOT_LOST, str(lost)))
        except Exception:
            log.exception("request %s failed inside the queue server", record.id)
            release()
            record.finish(error_event(ErrorCode.INTERNAL_ERROR))
        finally:
            # Whatever happened, the request has ended and its slot is free.
            release()
            record.finish(Cancelled(by="shutdown"))  # no-op unless nothing else ended it
            if record.started is not None and record.finished is not None:
                if isinstance(record.outcome, Done):
                    self.stats.observe_service(record.model, record.finished - record.started)
                if record.first_token is not None:
                    self.stats.ttft.observe(record.first_token - record.started)


def error_event(code: ErrorCode, detail: str = "") -> ErrorEvent:
    sentence = ERRORS[code][1]
    return ErrorEvent(code=code.value, message=f"{sentence} ({detail})" if detail else sentence)
