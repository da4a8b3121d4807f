"""The catalog: which upstream serves which model, and each model's pool of slots.

    >>> from tlc_widgets.server.upstream import ModelInfo
    >>> box = Upstream("http://127.0.0.1:1234/v1", default_slots=2, timeouts=Timeouts())
    >>> box.reachable, box.models = True, {"qwen": ModelInfo(parallel=4)}
    >>> box.per_model_slots = True
    >>> catalog = Catalog([box])
    >>> catalog.models(), catalog.slots_for("qwen")
    (['qwen'], 4)
    >>> pool = catalog.free_pool("qwen")
    >>> pool.capacity, pool.busy
    (4, 0)

The one place that knows upstreams, their models and the slots each model may use.
Admission asks it which model a request gets (`resolve`), the dispatcher asks it for a free
slot (`free_pool`), positions and ETAs ask for a model's slots, and the model list, the
queue snapshot and the health routes read it. A slot is a place in a pool: an upstream
that reports `parallel` per model (LM Studio 0.4+) gets a pool per model; one that does
not gets a single pool of `--slots` for everything it serves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from ..config import Settings
from ..protocol import ErrorCode
from .api_error import ApiError
from .upstream import Timeouts, Upstream
from .upstream_keys import upstream_headers

__all__ = ["Catalog", "Pool"]


@dataclass(slots=True)
class Pool:
    upstream: Upstream
    model: str | None  #: None: the whole upstream shares this pool
    capacity: int
    busy: int = 0

    @property
    def free(self) -> bool:
        return self.busy < self.capacity


class Catalog:
    def __init__(
        self,
        upstreams: Sequence[Upstream],
        *,
        default_model: str | None = None,
        allowed: Sequence[str] = (),
    ) -> None:
        self.upstreams = list(upstreams)
        self.default_model = default_model
        self.allowed = list(allowed)
        self._pools: dict[tuple[str, str | None], Pool] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        """The upstreams of `settings` (none asked yet: `refresh()` does that)."""
        s = settings
        timeouts = Timeouts(s.connect_timeout_s, s.first_token_timeout_s, s.stall_timeout_s)
        upstreams = [
            Upstream(u, default_slots=s.slots, timeouts=timeouts, headers=upstream_headers(s, u))
            for u in s.upstreams
        ]
        return cls(upstreams, default_model=s.default_model, allowed=s.allowed_models or ())

    # ------------------------------------------------------------------ discovery

    async def refresh(self) -> None:
        """Re-read every upstream's model list, all at once."""
        async with anyio.create_task_group() as tg:
            for upstream in self.upstreams:
                tg.start_soon(upstream.refresh)

    @property
    def any_reachable(self) -> bool:
        return any(u.reachable for u in self.upstreams)

    def tried(self) -> str:
        """The upstreams' addresses, for an error that says where we looked."""
        return "Tried: " + ", ".join(u.base_url for u in self.upstreams) + "."

    def models(self) -> list[str]:
        """Every model an answering upstream offers (and this server allows), in order."""
        seen: dict[str, None] = {}
        for upstream in self.upstreams:
            if upstream.reachable:
                seen.update(dict.fromkeys(upstream.models))
        return [m for m in seen if m in self.allowed] if self.allowed else list(seen)

    def serving(self, model: str) -> list[Upstream]:
        """The answering upstreams that offer `model`."""
        return [u for u in self.upstreams if u.reachable and model in u.models]

    async def resolve(self, requested: str | None) -> str:
        """The model a request will use: the one it names, else the default, else the first
        listed. Re-reads the upstreams once before saying a model or an upstream is missing."""
        if not self.any_reachable:
            await self.refresh()  # it may have come back since the last look
            if not self.any_reachable:
                raise ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, self.tried())
        model = requested or self.default_model
        if model is not None and self.allowed and model not in self.allowed:
            raise ApiError(
                ErrorCode.MODEL_NOT_FOUND,
                f"Asked for {model!r}; this server allows only: {', '.join(self.allowed)}.",
                param="model",
            )
        if model is None:
            available = self.models()
            if not available:
                raise ApiError(ErrorCode.MODEL_NOT_LOADED, "The upstream lists no models.")
            return available[0]
        if model not in self.models():
            await self.refresh()
            if model not in self.models():
                choices = ", ".join(self.models()) or "none"
                raise ApiError(
                    ErrorCode.MODEL_NOT_FOUND,
                    f"Asked for {model!r}; available: {choices}.",
                    param="model",
                )
        return model

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

    def pools(self, upstream: Upstream | None = None) -> list[Pool]:
        return [p for p in self._pools.values() if upstream is None or p.upstream is upstream]

    def slots_for(self, model: str) -> int:
        """Slots for `model` across the upstreams that offer it (at least 1, for the ETA)."""
        return sum(u.slots_for(model) for u in self.upstreams if model in u.models) or 1

    def loaded_on(self, model: str) -> list[Upstream]:
        """The answering upstreams that have `model` loaded now."""
        return [u for u in self.serving(model) if u.models[model].loaded]

    def ready_on(self, model: str) -> list[Upstream]:
        """Where a request for `model` may go now: upstreams that have it loaded, and those
        that load on their own (no LM Studio loading endpoint to ask first)."""
        return [u for u in self.serving(model) if u.models[model].loaded or not u.loads_on_demand]

    def load_target(self, model: str) -> Upstream | None:
        """Where to load `model` when no upstream has it loaded: the least busy that offers it."""
        offering = self.serving(model)
        return min(offering, key=lambda u: sum(p.busy for p in self.pools(u)), default=None)

    def free_pool(self, model: str) -> Pool | None:
        """The least busy pool with a free slot on an upstream that has `model` loaded: a
        machine that would have to load it first gets no request until it is loaded."""
        best: Pool | None = None
        for upstream in self.ready_on(model):
            pool = self.pool_for(upstream, model)
            if pool.free and (best is None or pool.busy < best.busy):
                best = pool
        return best

    # ------------------------------------------------------------------ reading

    def upstream_rows(self) -> list[dict[str, Any]]:
        """Each upstream: address, whether it answers, its models, slots and busy slots."""
        return [
            {
                "url": u.base_url,
                "reachable": u.reachable,
                "models": sorted(u.models),
                "slots": (
                    {m: u.slots_for(m) for m in u.models} if u.per_model_slots else u.default_slots
                ),
                "busy": sum(p.busy for p in self.pools(u)),
            }
            for u in self.upstreams
        ]

    async def aclose(self) -> None:
        for upstream in self.upstreams:
            await upstream.aclose()
