"""Models that load on first use: one load, its progress shown to everyone who waits.

    >>> from tlc_widgets.server.scheduler import Entry, FairScheduler
    >>> line = FairScheduler()
    >>> line.push(Entry("r1", "ann", "qwen3-8b")); line.push(Entry("r2", "bob", "gemma"))
    >>> sorted(waiting_models(line))
    ['gemma', 'qwen3-8b']

When a request waits for a model that no answering upstream has loaded, `ModelLoads`
starts one load (`loading.Loader`) on the least busy upstream that offers it — never one
per request. Each progress report becomes a `loading` event on every request waiting for
that model (at most one per whole percent, so a thousand waiting clients are not flooded);
when the load ends the upstream is re-read (its slots may have changed) and the waiting
requests start in their fair order. A failed load ends every request that waited for it
with the same named error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time

from anyio.abc import TaskGroup

from ..protocol import Loading, Status
from .catalog import Catalog
from .dispatcher import error_event
from .loading import CannotLoad, Loader, LoadFailure
from .record_store import RecordStore
from .records import Record
from .scheduler import FairScheduler
from .upstream import Upstream

__all__ = ["ModelLoads", "waiting_models"]


def within(hours: str | None, now: time) -> bool:
    """Whether `now` falls in `hours` ('08:00-16:00'; across midnight too; None: always).

    >>> within("08:00-16:00", time(9, 30)), within("22:00-06:00", time(23)), within(None, time())
    (True, True, True)
    >>> within("08:00-16:00", time(16, 1))
    False
    """
    if hours is None:
        return True
    start, end = (time.fromisoformat(part.zfill(5)) for part in hours.split("-"))
    return start <= now <= end if start <= end else (now >= start or now <= end)


def waiting_models(scheduler: FairScheduler) -> set[str]:
    return scheduler.models()


class ModelLoads:
    def __init__(
        self,
        catalog: Catalog,
        scheduler: FairScheduler,
        store: RecordStore,
        task_group: TaskGroup,
        on_loaded: Callable[[], None],
        on_change: Callable[[], None],
    ) -> None:
        self.catalog = catalog
        self.scheduler = scheduler
        self.store = store
        self.loader = Loader()
        self._tg = task_group
        self._on_loaded = on_loaded
        self._on_change = on_change  #: monitors see a load's progress, and its failure
        self._progress: dict[str, float] = {}  # model -> the progress of its load now
        #: model -> why its last load failed (until a load succeeds), for admins and `tlc models`
        self.failures: dict[str, str] = {}

    def ensure_all(self) -> None:
        """Start a load for every waited-for model that is loaded nowhere (after a refresh:
        LM Studio may have unloaded an idle model when its TTL ran out)."""
        for model in waiting_models(self.scheduler):
            self.ensure(model)

    def keep_warm(self, models: list[str], hours: str | None) -> None:
        """Load the models a teacher wants ready (`warm_models`) during class hours; LM
        Studio's TTL unloads them after hours, once nobody asks."""
        if within(hours, datetime.now().time()):
            for model in models:
                self.ensure(model)

    def ensure(self, model: str, ttl_s: int | None = None) -> bool:
        """Start loading `model` unless it is loaded, or loading, somewhere. True if started."""
        if self.catalog.ready_on(model) or model in self.loader.loading_models():
            return False
        target = self.catalog.load_target(model)
        if target is None:
            return False
        self._tg.start_soon(self._load, target, model, ttl_s, name=f"load {model}")
        return True

    def greet(self, record: Record) -> None:
        """A request that arrives during its model's load hears the progress so far."""
        fraction = self._progress.get(record.model)
        if fraction is not None and record.status is Status.QUEUED:
            record.emit(Loading(record.model, fraction, self.loader.load_times.get(record.model)))

    async def _load(self, upstream: Upstream, model: str, ttl_s: int | None) -> None:
        last = -1

        def progress(fraction: float) -> None:
            nonlocal last
            percent = round(fraction * 100)
            if percent > last:  # one event per whole percent, not per report
                last = percent
                self._tell_waiting(model, fraction)

        self._tell_waiting(model, 0.0)
        try:
            await self.loader.load(upstream, model, progress, ttl_s)
        except CannotLoad:
            upstream.loads_on_demand = False  # not LM Studio 0.4: it loads (or refuses) itself
            self._on_loaded()
            return
        except LoadFailure as failure:
            self.failures[model] = f"{failure.code.value}: {failure.detail}"
            self._fail_waiting(model, failure)
            return
        finally:
            self._progress.pop(model, None)
        self.failures.pop(model, None)
        await upstream.refresh()  # the loaded instance, and its `parallel`
        self._on_loaded()

    def loading(self) -> dict[str, float]:
        """Every model loading now, with its progress (0 … 1)."""
        return dict(self._progress)

    def progress_of(self, model: str) -> float | None:
        """How far the load of `model` is (0 … 1), or None when it is not loading."""
        return self._progress.get(model)

    async def unload(self, model: str) -> int:
        """Unload `model` everywhere it is loaded; how many instances went."""
        done = 0
        for upstream in self.catalog.loaded_on(model):
            done += await self.loader.unload(upstream, model)
            await upstream.refresh()
        return done

    def _waiting(self, model: str) -> list[str]:
        return [e.id for e in self.scheduler.order() if e.model == model]

    def _tell_waiting(self, model: str, fraction: float) -> None:
        self._progress[model] = round(fraction, 3)
        self._on_change()
        event = Loading(model, round(fraction, 3), self.loader.load_times.get(model))
        for request_id in self._waiting(model):
            record = self.store.get(request_id)
            if record is not None and record.status is Status.QUEUED:
                record.emit(event)

    def _fail_waiting(self, model: str, failure: LoadFailure) -> None:
        ending = error_event(failure.code, failure.detail)
        for request_id in self._waiting(model):
            record = self.store.get(request_id)
            self.scheduler.remove(request_id)
            if record is not None:
                record.finish(ending)
        self._on_change()
