"""An OpenAI-compatible upstream (LM Studio, or the practice model): models, slots, streams.

    >>> up = Upstream("http://localhost:1234/v1", default_slots=1, timeouts=Timeouts())
    >>> await up.refresh()                      # doctest: +SKIP
    >>> up.models                               # doctest: +SKIP
    {'qwen2.5-7b-instruct': ModelInfo(loaded=True, parallel=4)}

Slots: LM Studio 0.4+ reports `loaded_instances[].config.parallel` per model on
`/api/v1/models`; we honour that per model. An upstream that reports nothing (older LM
Studio, llama.cpp, vLLM …) gets `--slots` for the whole upstream.

Streaming never retries on its own: a retry would silently re-send a long prompt. Every
failure becomes an `UpstreamFailure` carrying one of our error codes; a stream that ends
without a `finish_reason` is a dropped connection, not a finished reply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from ..protocol import ErrorCode

__all__ = ["ModelInfo", "StreamResult", "Timeouts", "Upstream", "UpstreamFailure"]

log = logging.getLogger("tlc.upstream")


class UpstreamFailure(Exception):
    """An upstream call failed; `code` says how, `detail` what the upstream said."""

    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ModelInfo:
    loaded: bool = True
    parallel: int | None = None  #: None: the upstream did not say; use the upstream's slots
    instances: tuple[str, ...] = ()  #: LM Studio's loaded instance ids (to unload them)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 5.0
    first_token_s: float = 300.0
    stall_s: float = 60.0


@dataclass(slots=True)
class StreamResult:
    finish_reason: str
    usage: dict[str, int] | None


class Upstream:
    def __init__(
        self,
        base_url: str,
        *,
        default_slots: int,
        timeouts: Timeouts,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # LM Studio's native REST lives beside /v1, at the server root.
        self.root = self.base_url.removesuffix("/v1")
        self.default_slots = default_slots
        self.timeouts = timeouts
        self.models: dict[str, ModelInfo] = {}
        self.reachable = False
        self.per_model_slots = False  #: True when the upstream reported `parallel`
        #: False once it turned out to have no LM Studio loading endpoint: then its requests go
        #: to it whether or not it lists a model as loaded, and it loads (or refuses) itself
        self.loads_on_demand = True
        self.client = httpx.AsyncClient(
            headers=headers,  # LM Studio's API token, when it requires one
            timeout=httpx.Timeout(timeouts.connect_s, read=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    # ------------------------------------------------------------------ discovery

    async def refresh(self) -> None:
        """Re-read the model list; `reachable` says whether the upstream answered."""
        try:
            models = await self._native_models()
            if models is None:
                models = await self._openai_models()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            if self.reachable:
                log.warning("upstream %s stopped answering: %s", self.base_url, exc)
            self.reachable = False
            return
        if not self.reachable:
            log.info("upstream %s answers with models %s", self.base_url, sorted(models))
        self.reachable = True
        self.models = models
        self.per_model_slots = any(m.parallel for m in models.values())

    async def _native_models(self) -> dict[str, ModelInfo] | None:
        resp = await self.client.get(self.root + "/api/v1/models")
        if resp.status_code != 200:
            return None  # not LM Studio 0.4+: fall back to the OpenAI list
        models: dict[str, ModelInfo] = {}
        for entry in resp.json().get("models", []):
            if entry.get("type", "llm") not in ("llm", "vlm"):
                continue
            instances = entry.get("loaded_instances") or []
            parallel = [int(i.get("config", {}).get("parallel") or 1) for i in instances]
            # JIT loading: a listed model that is not loaded yet still answers (LM Studio loads
            # it on first use), so it is offered, with the upstream's default slots.
            ids = tuple(str(i.get("id", entry["key"])) for i in instances)
            models[entry["key"]] = ModelInfo(bool(instances), sum(parallel) or None, ids)
        return models

    async def _openai_models(self) -> dict[str, ModelInfo]:
        resp = await self.client.get(self.base_url + "/models")
        resp.raise_for_status()
        return {m["id"]: ModelInfo() for m in resp.json().get("data", [])}

    def slots_for(self, model: str) -> int:
        info = self.models.get(model)
        if self.per_model_slots and info is not None and info.parallel:
            return info.parallel
        return self.default_slots

    # ------------------------------------------------------------------ streaming

    async def stream(
        self,
        body: dict[str, Any],
        on_content: Callable[[str], None],
        on_reasoning: Callable[[str], None],
    ) -> StreamResult:
        """POST a streaming chat completion and hand each delta on as it arrives."""
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        url = self.base_url + "/chat/completions"
        # One cancel scope carries both clocks: the first-token deadline, then the stall
        # deadline pushed forward on every chunk. Its own expiry is a timeout; an outer
        # cancel (a Stop) passes straight through it.
        with anyio.CancelScope(
            deadline=anyio.current_time() + self.timeouts.first_token_s
        ) as scope:
            try:
                return await self._read(url, body, scope, on_content, on_reasoning)
            except httpx.ConnectError as exc:
                raise UpstreamFailure(ErrorCode.UPSTREAM_UNAVAILABLE, str(exc)) from exc
            except httpx.TimeoutException as exc:
                raise UpstreamFailure(ErrorCode.UPSTREAM_UNAVAILABLE, str(exc)) from exc
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                raise UpstreamFailure(
                    ErrorCode.UPSTREAM_ERROR, f"The connection broke ({type(exc).__name__})."
                ) from exc
        raise UpstreamFailure(ErrorCode.UPSTREAM_TIMEOUT)

    async def _read(
        self,
        url: str,
        body: dict[str, Any],
        scope: anyio.CancelScope,
        on_content: Callable[[str], None],
        on_reasoning: Callable[[str], None],
    ) -> StreamResult:
        finish_reason: str | None = None
        usage: dict[str, int] | None = None
        stall = self.timeouts.stall_s
        refresh_below = stall / 2
        first = True
        # `async with` closes the connection however we leave: done, error, or cancelled.
        async with self.client.stream("POST", url, json=body) as resp:
            if resp.status_code != 200:
                raise map_error(resp.status_code, (await resp.aread()).decode("utf-8", "replace"))
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, `: comments`, `event:` lines
                data = line[5:].strip()
                if data == "[DONE]":
                    # Read on to the end of the body instead of leaving the loop: a response
                    # read to its end returns its connection to the pool for the next
                    # request; one left half-read is closed (a new TCP connect each time).
                    continue
                chunk = json.loads(data)
                # The stall clock: re-armed at the first chunk, then only once less than half
                # of it is left (re-arming a timer per token costs more than the token), so a
                # stall is caught after between stall_s / 2 and stall_s of silence.
                now = anyio.current_time()
                if first or scope.deadline - now < refresh_below:
                    scope.deadline = now + stall
                    first = False
                if "error" in chunk:
                    raise UpstreamFailure(ErrorCode.UPSTREAM_ERROR, _message(chunk))
                if chunk.get("usage"):
                    usage = chunk["usage"]
                # The usage chunk has `choices: []`: never index choices[0].
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                    if reasoning:
                        on_reasoning(reasoning)
                    if delta.get("content"):
                        on_content(delta["content"])
                    finish_reason = choice.get("finish_reason") or finish_reason
        if finish_reason is None:
            raise UpstreamFailure(
                ErrorCode.UPSTREAM_ERROR, "The stream ended before the reply was finished."
            )
        return StreamResult(finish_reason, usage)


def _message(payload: Any) -> str:
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def map_error(status: int, text: str) -> UpstreamFailure:
    """Turn an upstream's error answer (any of LM Studio's shapes) into our error code."""
    try:
        payload: Any = json.loads(text)
    except json.JSONDecodeError:
        payload = {"error": text}
    message = _message(payload)
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    lowered = message.lower()
    if "no models loaded" in lowered or "not loaded" in lowered:
        return UpstreamFailure(ErrorCode.MODEL_NOT_LOADED, message)
    if code == "model_not_found" or ("model" in lowered and "not found" in lowered):
        return UpstreamFailure(ErrorCode.MODEL_NOT_FOUND, message)
    if status == 404:
        return UpstreamFailure(ErrorCode.MODEL_NOT_LOADED, message)
    return UpstreamFailure(ErrorCode.UPSTREAM_ERROR, f"HTTP {status}: {message}")
