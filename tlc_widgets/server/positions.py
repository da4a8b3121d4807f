"""Places in line: computed for everyone at once, published only where they changed.

    >>> from tlc_widgets.server.scheduler import Entry, FairScheduler
    >>> line = FairScheduler()
    >>> for rid, user in [("a1", "ann"), ("a2", "ann"), ("b1", "bob")]:
    ...     line.push(Entry(rid, user, "m"))
    >>> [e.id for e in line.order()]  # positions are this order, counted per model
    ['a1', 'b1', 'a2']

Positions are computed once per queue change, for everyone at once (O(n log users)), and a
`queued` event is appended only to records whose position, queue length or ETA moved. The
publisher does this at most once per `interval_s`, so a thousand waiting clients cost
O(waiting) per interval however fast the queue moves; the latest positions are always
delivered, because a change during the pause marks the queue dirty again. A position is
counted among the requests for the same model: a request for an idle model is next in line
even behind a long queue for another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel

from ..protocol import Queued, Status
from .catalog import Catalog
from .record_store import RecordStore
from .records import Record
from .scheduler import Entry, FairScheduler
from .stats import Stats, eta_from

__all__ = ["Positions"]


class Positions:
    def __init__(
        self,
        scheduler: FairScheduler,
        store: RecordStore,
        catalog: Catalog,
        stats: Stats,
        interval_s: float,
        on_change: Callable[[], None],
        order: Callable[[], Awaitable[list[Entry]]] | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._store = store
        self._catalog = catalog
        self._stats = stats
        self._interval_s = interval_s
        self._on_change = on_change
        #: the whole line when several replicas share it (`SharedDispatcher.line_order`)
        self._order = order
        self._dirty = anyio.Event()

    def mark_dirty(self) -> None:
        self._dirty.set()
        self._on_change()

    def of(self, record: Record) -> Queued:
        """The place of one waiting record (stops simulating once it is found)."""
        same_model = (e for e in self._scheduler.order() if e.model == record.model)
        for position, entry in enumerate(same_model, start=1):
            if entry.id == record.id:
                return self._queued(record.model, position)
        raise KeyError(record.id)

    async def run(self) -> None:
        """The publisher task: wake on a change, publish, then rest out the interval."""
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            started = anyio.current_time()
            await self.publish_in_slices()
            self._stats.queue_length.set(len(self._scheduler))
            # The interval runs from the start of a publish, so positions stay fresh.
            await anyio.sleep(max(0.0, started + self._interval_s - anyio.current_time()))

    async def publish_in_slices(self, size: int = 64) -> int:
        """Append a `queued` event to every waiting record whose figures changed, yielding
        to the loop every `size` events: each event wakes a client's writer, and a slot
        freed meanwhile must not wait behind a thousand of them."""
        sent = 0
        per_model: dict[str, int] = {}
        line = list(self._scheduler.order()) if self._order is None else await self._order()
        waiting = len(line)
        # Slots and mean service time per model, once per publish, not once per client.
        figures: dict[str, tuple[int, float | None]] = {}
        for entry in line:
            position = per_model[entry.model] = per_model.get(entry.model, 0) + 1
            record = self._store.get(entry.id)
            if record is None or record.status is not Status.QUEUED:
                continue  # started or ended since the order was taken
            if entry.model not in figures:
                figures[entry.model] = (
                    self._catalog.slots_for(entry.model),
                    self._stats.mean_service_s(entry.model),
                )
            slots, mean = figures[entry.model]
            queued = Queued(position, waiting, eta_from(mean, position, slots))
            if queued != record.last_queued:
                record.emit(queued)
                sent += 1
                if sent % size == 0:
                    await anyio.lowlevel.checkpoint()
        return sent

    def _queued(self, model: str, position: int) -> Queued:
        slots = self._catalog.slots_for(model)
        eta = self._stats.eta_s(model, position, slots)
        return Queued(position=position, waiting=len(self._scheduler), eta_s=eta)
