"""Loading a model on an upstream once, with progress, for everyone who waits for it.

    >>> failure_for("Not enough memory to load the model").code
    <ErrorCode.MODEL_LOAD_FAILED: 'model_load_failed'>
    >>> failure_for("Model 'nope' not found").code
    <ErrorCode.MODEL_NOT_FOUND: 'model_not_found'>

LM Studio 0.4 loads a model on first use (JIT) and reports the load's progress only on its
native chat endpoint: `POST /api/v1/chat` streams `model_load.start`, `model_load.progress
{progress 0..1}`, `model_load.end {load_time_seconds}` before the reply. That endpoint takes
no assistant messages, so conversations still go through `/v1/chat/completions`; here it is
used only to load: a one-word input, a one-token answer, and the stream is closed as soon
as the load has ended. (`POST /api/v1/models/load` loads too, but reports no progress.)

One `Loader` per service keeps at most one load per (upstream, model) in flight: a class of
thirty asking for an unloaded model at the same moment causes one load, and all thirty see
its progress (the service turns each report into a `loading` event for every request that
waits for that model). A failure is one named error, sent to every request that waited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import httpx

from ..protocol import ErrorCode
from ..sse import aiter_events
from .upstream import Upstream

__all__ = ["CannotLoad", "LoadFailure", "LoadResult", "Loader", "failure_for"]

log = logging.getLogger("tlc.loading")

#: The longest a load may take before it counts as failed (`model_load_timeout`).
LOAD_TIMEOUT_S = 600.0


class LoadFailure(Exception):
    """A model could not be loaded; `code` says why in one word, `detail` what LM Studio said."""

    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class CannotLoad(Exception):
    """The upstream has no LM Studio loading endpoint (another OpenAI-compatible server):
    its requests go straight to it, and it loads (or fails) as it does."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    model: str
    upstream: str
    load_time_s: float  #: 0 when the model turned out to be loaded already


def failure_for(message: str) -> LoadFailure:
    """The named failure for an LM Studio error message about a load."""
    lowered = message.lower()
    if "no models loaded" in lowered or "jit" in lowered:
        return LoadFailure(ErrorCode.MODEL_NOT_LOADED, message)  # LM Studio with JIT off
    if "memory" in lowered or "insufficient" in lowered or "resources" in lowered:
        return LoadFailure(ErrorCode.MODEL_LOAD_FAILED, message)
    if "not found" in lowered or "no model" in lowered or "unknown model" in lowered:
        return LoadFailure(ErrorCode.MODEL_NOT_FOUND, message)
    if "timed out" in lowered or "timeout" in lowered:
        return LoadFailure(ErrorCode.MODEL_LOAD_TIMEOUT, message)
    return LoadFailure(ErrorCode.MODEL_LOAD_FAILED, message)


class Loader:
    """Loads models on upstreams, one load per (upstream, model) at a time."""

    def __init__(self, timeout_s: float = LOAD_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._loading: set[tuple[str, str]] = set()
        #: model -> seconds its last load took, for "loads on first use, about N s"
        self.load_times: dict[str, float] = {}

    def is_loading(self, upstream: Upstream, model: str) -> bool:
        return (upstream.base_url, model) in self._loading

    def loading_models(self) -> set[str]:
        return {model for _, model in self._loading}

    async def load(
        self,
        upstream: Upstream,
        model: str,
        on_progress: Callable[[float], None],
        ttl_s: int | None = None,
    ) -> LoadResult:
        """Load `model` on `upstream`, reporting progress (0..1); `LoadFailure` if it fails."""
        key = (upstream.base_url, model)
        self._loading.add(key)
        try:
            with anyio.fail_after(self.timeout_s):
                seconds = await self._load(upstream, model, on_progress, ttl_s)
        except TimeoutError as exc:
            raise LoadFailure(
                ErrorCode.MODEL_LOAD_TIMEOUT, f"No load after {self.timeout_s:.0f} s."
            ) from exc
        except httpx.HTTPError as exc:
            raise LoadFailure(ErrorCode.UPSTREAM_UNAVAILABLE, str(exc)) from exc
        finally:
            self._loading.discard(key)
        if seconds:
            self.load_times[model] = seconds
        log.info("model %s loaded on %s in %.1f s", model, upstream.base_url, seconds)
        return LoadResult(model, upstream.base_url, seconds)

    async def unload(self, upstream: Upstream, model: str) -> int:
        """Unload every instance of `model` on `upstream`; how many were unloaded."""
        info = upstream.models.get(model)
        done = 0
        for instance in info.instances if info else ():
            url = upstream.root + "/api/v1/models/unload"
            response = await upstream.client.post(url, json={"instance_id": instance})
            if response.status_code != 200:
                raise failure_for(_message(response.text))
            done += 1
        return done

    async def _load(
        self,
        upstream: Upstream,
        model: str,
        on_progress: Callable[[float], None],
        ttl_s: int | None,
    ) -> float:
        if upstream.is_embedding(model):  # /api/v1/chat refuses them: load without progress
            return await self._load_quietly(upstream, model, ttl_s)
        body: dict[str, object] = {
            "model": model,
            "input": "Hi",
            "stream": True,
            "store": False,
            "max_output_tokens": 1,
        }
        if ttl_s is not None:
            body["ttl"] = ttl_s
        url = upstream.root + "/api/v1/chat"
        async with upstream.client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode("utf-8", "replace")
                if response.status_code in (404, 405) and "model" not in text.lower():
                    raise CannotLoad(text)
                raise failure_for(_message(text))
            async for event in aiter_events(response):
                data = event.json() if event.data.startswith("{") else {}
                if event.event == "model_load.progress":
                    on_progress(float(data.get("progress", 0.0)))
                elif event.event == "model_load.end":
                    on_progress(1.0)
                    return float(data.get("load_time_seconds") or 0.0)
                elif event.event == "error":
                    raise failure_for(_message(event.data))
                elif event.event in ("prompt_processing.start", "message.start", "chat.end"):
                    return 0.0  # no model_load.* before this: it was loaded already
        raise LoadFailure(ErrorCode.MODEL_LOAD_FAILED, "The load stream ended early.")

    async def _load_quietly(self, upstream: Upstream, model: str, ttl_s: int | None) -> float:
        """`POST /api/v1/models/load`: blocks until loaded, reports no progress."""
        body: dict[str, object] = {"model": model} | ({"ttl": ttl_s} if ttl_s else {})
        response = await upstream.client.post(
            upstream.root + "/api/v1/models/load", json=body, timeout=self.timeout_s
        )
        if response.status_code in (404, 405) and "model" not in response.text.lower():
            raise CannotLoad(response.text)
        if response.status_code != 200:
            raise failure_for(_message(response.text))
        return float(response.json().get("load_time_seconds") or 0.0)


def _message(text: str) -> str:
    import json

    try:
        payload = json.loads(text)
    except ValueError:
        return text
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)
