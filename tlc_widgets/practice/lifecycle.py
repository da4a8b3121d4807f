"""Model lifecycle like LM Studio 0.4: not loaded until asked, a load that takes time, TTL.

    >>> from tlc_widgets.practice.slots import Slots
    >>> life = Lifecycle(["practice-fast"], Slots(["practice-fast"], 4), loaded_at_start=[])
    >>> life.is_loaded("practice-fast")
    False

One instance per model, its id the model's key (as LM Studio names a first instance). A load
reports progress 0..1 in steps over the load time; every request that asks for a model while
it loads waits for that same load (one load, seen by everyone). Loading again with another
`parallel` replaces the instance and resizes the model's slots. An instance with a TTL unloads
once it has been idle that long — checked whenever the server is asked something (`sweep`).
A load fault fails the load: "out_of_memory" soon after it starts, "timeout" at its end.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio

from tlc_widgets.practice.slots import Slots

__all__ = ["CONTEXT_LENGTH", "Instance", "Lifecycle", "LoadFailed", "Loading"]

CONTEXT_LENGTH = 8192
_STEPS = 10  # progress reports per load
_TICK_S = 0.05  # how often a load looks at its (live) load time
_OOM_AT = 0.3  # an out-of-memory load fails at this progress


class LoadFailed(Exception):
    """A load that failed; `code` names why, the message says it to a student."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _failure(kind: str, model: str, seconds: float) -> LoadFailed:
    """The error of a failed load, named for the student."""
    if kind == "out_of_memory":
        return LoadFailed(
            "insufficient_memory",
            f'Failed to load model "{model}": not enough memory. Unload another model, or '
            "choose a smaller one. (practice fault: load_failure)",
        )
    return LoadFailed(
        "load_timeout",
        f'Failed to load model "{model}": loading took longer than {seconds:g} s and was '
        "given up. (practice fault: load_failure)",
    )


@dataclass
class Instance:
    """One loaded model: its id, slots, context, TTL and when it was last used."""

    id: str
    model: str
    parallel: int
    context_length: int = CONTEXT_LENGTH
    ttl_s: float | None = None
    last_used: float = field(default_factory=time.monotonic)
    load_time_s: float = 0.0

    def as_listed(self) -> dict[str, Any]:
        """The entry of `loaded_instances` in `/api/v1/models`."""
        config = {"context_length": self.context_length, "parallel": self.parallel}
        return {"id": self.id, "config": config}


@dataclass
class Loading:
    """A load under way: its progress, and events for those who watch or wait."""

    model: str
    progress: float = 0.0
    error: LoadFailed | None = None
    #: Requests waiting for this load to end.
    waiting: int = 0
    done: anyio.Event = field(default_factory=anyio.Event)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def report(self, progress: float) -> None:
        self.progress = progress
        self.changed.set()
        self.changed = anyio.Event()

    async def watch(self) -> AsyncIterator[float]:
        """Each progress value as it is reached (the current one first), until the end."""
        while True:
            changed = self.changed
            yield self.progress
            if self.done.is_set():
                return
            with anyio.move_on_after(1.0):  # a load that ended between two checks
                await changed.wait()


class Lifecycle:
    """Which models are loaded, loading or not; loads, unloads and TTLs."""

    def __init__(
        self,
        models: Iterable[str],
        slots: Slots,
        loaded_at_start: Iterable[str] | None = None,
        default_ttl_s: float | None = None,
    ) -> None:
        models = list(models)
        self.slots = slots
        self.default_ttl_s = default_ttl_s
        self.instances: dict[str, Instance] = {}
        self.loading: dict[str, Loading] = {}
        #: Load times seen per model, so a catalogue can say "loads in about N s".
        self.last_load_s: dict[str, float] = {}
        #: Loads started per model (each shared by everyone who waited for it).
        self.loads: dict[str, int] = dict.fromkeys(models, 0)
        for model in models if loaded_at_start is None else loaded_at_start:
            if model not in models:
                raise ValueError(f"loaded_at_start names {model!r}, not one of {models}")
            self.instances[model] = Instance(model, model, slots.parallel[model])

    def is_loaded(self, model: str) -> bool:
        return model in self.instances

    def listed(self, model: str) -> list[dict[str, Any]]:
        """`loaded_instances` of `model` for `/api/v1/models`."""
        instance = self.instances.get(model)
        return [instance.as_listed()] if instance else []

    def as_dict(self) -> dict[str, Any]:
        """Practice only: per model, loaded or loading, progress, loads and last load time."""
        return {
            model: {
                "loaded": model in self.instances,
                "loading": model in self.loading,
                "progress": self.loading[model].progress if model in self.loading else None,
                "waiting": self.loading[model].waiting if model in self.loading else 0,
                "loads": count,
                "last_load_s": self.last_load_s.get(model),
            }
            for model, count in self.loads.items()
        }

    def touch(self, model: str, ttl_s: float | None = None) -> None:
        """`model` was used now; a request's `ttl` replaces the instance's."""
        instance = self.instances.get(model)
        if instance is not None:
            instance.last_used = time.monotonic()
            if ttl_s is not None:
                instance.ttl_s = ttl_s

    def sweep(self) -> list[str]:
        """Unload instances idle for longer than their TTL; their ids."""
        now, gone = time.monotonic(), []
        for model, instance in list(self.instances.items()):
            if instance.ttl_s is None or not self.slots.idle(model):
                continue
            if now - instance.last_used >= instance.ttl_s:
                del self.instances[model]
                gone.append(instance.id)
        return gone

    def unload(self, instance_id: str) -> Instance | None:
        """Unload an instance (answers under way finish); None if there is none."""
        for model, instance in list(self.instances.items()):
            if instance.id == instance_id:
                return self.instances.pop(model)
        return None

    def begin(self, model: str) -> tuple[Loading, bool]:
        """The load of `model` under way, or a new one (True: the caller must `run` it)."""
        loading = self.loading.get(model)
        if loading is not None:
            return loading, False
        loading = self.loading[model] = Loading(model)
        self.loads[model] += 1
        return loading, True

    async def load(
        self,
        model: str,
        *,
        seconds: float | Callable[[], float],
        failure: str | None = None,
        parallel: int | None = None,
        context_length: int | None = None,
        ttl_s: float | None = None,
    ) -> Instance:
        """Load `model` (or join its load under way); `LoadFailed` if the load fails.

        The load runs shielded: a client that leaves does not stop it for the others.
        """
        loading, new = self.begin(model)
        loading.waiting += 1
        try:
            if new:
                with anyio.CancelScope(shield=True):
                    await self.run(loading, seconds, failure, parallel, context_length, ttl_s)
            else:
                await loading.done.wait()
        finally:
            loading.waiting -= 1
        if loading.error is not None:
            # A fresh exception per waiter: one shared object would collect all their tracebacks.
            raise LoadFailed(loading.error.code, str(loading.error))
        return self.instances[model]

    async def run(
        self,
        loading: Loading,
        seconds: float | Callable[[], float],
        failure: str | None,
        parallel: int | None,
        context_length: int | None,
        ttl_s: float | None,
    ) -> None:
        """Carry out a load begun with `begin` (shield it: others wait for it too)."""
        model, started = loading.model, anyio.current_time()
        live = seconds if callable(seconds) else lambda: seconds
        try:
            self.instances.pop(model, None)  # a reload replaces the instance
            progress, reported = 0.0, 0
            while progress < 1.0:
                # The load time is read at every tick, so a lesson can speed up a slow load.
                total = max(live(), 0.0)
                tick = min(_TICK_S, total * (1.0 - progress))
                await anyio.sleep(tick)
                progress = min(1.0, progress + tick / total) if total > 0 else 1.0
                if failure == "out_of_memory" and progress >= _OOM_AT:
                    raise _failure(failure, model, live())
                if failure == "timeout" and progress >= 1.0:
                    raise _failure(failure, model, live())
                if int(progress * _STEPS) > reported:  # report each tenth once
                    reported = int(progress * _STEPS)
                    loading.report(reported / _STEPS)
            took = anyio.current_time() - started
            slots = parallel or self.slots.parallel[model]
            self.slots.resize(model, slots)
            self.instances[model] = Instance(
                model, model, slots, context_length or CONTEXT_LENGTH, ttl_s, load_time_s=took
            )
            self.last_load_s[model] = took
        except LoadFailed as exc:
            loading.error = exc
        finally:
            del self.loading[model]
            loading.done.set()
            loading.report(loading.progress)
