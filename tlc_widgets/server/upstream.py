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
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from ..protocol import Delta, ErrorCode
from ..sse import aiter_events
from .upstream_chunks import Reading, _message
from .upstream_transport import StaleRetry
from .upstream_types import ModelInfo, StreamResult, Timeouts, UpstreamFailure

__all__ = ["ModelInfo", "StreamResult", "Timeouts", "Upstream", "UpstreamFailure"]

log = logging.getLogger("tlc.upstream")


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
        self._slow = 0  # model-list reads that timed out in a row
        self.per_model_slots = False  #: True when the upstream reported `parallel`
        #: False once it turned out to have no LM Studio loading endpoint: then its requests go
        #: to it whether or not it lists a model as loaded, and it loads (or refuses) itself
        self.loads_on_demand = True
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        self.client = httpx.AsyncClient(
            headers=headers,  # LM Studio's API token, when it requires one
            timeout=httpx.Timeout(timeouts.connect_s, read=None),
            transport=StaleRetry(httpx.AsyncHTTPTransport(limits=limits)),
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
            # A busy upstream can be slow to list its models while it writes replies: one
            # slow answer is not a stop (two in a row are), or every request waiting for
            # its models would end with it.
            self._slow = self._slow + 1 if isinstance(exc, httpx.TimeoutException) else 2
            if self.reachable and self._slow < 2:
                log.warning("upstream %s was slow to list its models: %r", self.base_url, exc)
            elif self.reachable:
                log.warning("upstream %s stopped answering: %s", self.base_url, exc)
                self.reachable = False
            return
        self._slow = 0
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
            kind = entry.get("type", "llm")
            if kind == "embedding":  # /api/v1 says "embedding", /api/v0 "embeddings"
                kind = "embeddings"
            if kind not in ("llm", "vlm", "embeddings"):
                continue
            instances = entry.get("loaded_instances") or []
            parallel = [int(i.get("config", {}).get("parallel") or 1) for i in instances]
            # JIT loading: a listed model that is not loaded yet still answers (LM Studio loads
            # it on first use), so it is offered, with the upstream's default slots.
            ids = tuple(str(i.get("id", entry["key"])) for i in instances)
            models[entry["key"]] = ModelInfo(
                loaded=bool(instances), parallel=sum(parallel) or None, instances=ids, kind=kind
            )
        return models

    async def _openai_models(self) -> dict[str, ModelInfo]:
        resp = await self.client.get(self.base_url + "/models")
        resp.raise_for_status()
        # This list has no model types: an id that says "embed" (LM Studio's embedding
        # models all do) is taken for an embedding model.
        return {
            m["id"]: ModelInfo(
                kind="embeddings" if "embed" in m["id"].lower() else "llm",
                created=m.get("created"),
                owned_by=m.get("owned_by"),
            )
            for m in resp.json().get("data", [])
        }

    def is_embedding(self, model: str) -> bool:
        info = self.models.get(model)
        return info is not None and info.kind == "embeddings"

    def slots_for(self, model: str) -> int:
        info = self.models.get(model)
        if self.per_model_slots and info is not None and info.parallel:
            return info.parallel
        return self.default_slots

    # ------------------------------------------------------------------ streaming

    async def stream(
        self,
        endpoint: str,
        body: dict[str, Any],
        on_delta: Callable[[Delta], None],
        on_wire: Callable[[str, dict[str, Any], str], None],
    ) -> StreamResult:
        """POST to `endpoint` and hand each delta on as it arrives (`on_delta`), with each
        chunk as the upstream wrote it (`on_wire`: event name, parsed, raw JSON text).

        Embeddings are one JSON answer, not a stream: it goes to `on_wire` whole."""
        url = f"{self.base_url}/{endpoint}"
        if endpoint != "embeddings":
            body = {**body, "stream": True}
            if endpoint != "responses":  # the Responses API always reports its usage
                body["stream_options"] = {"include_usage": True}
        # One cancel scope carries both clocks: the first-token deadline, then the stall
        # deadline pushed forward on every chunk. Its own expiry is a timeout; an outer
        # cancel (a Stop) passes straight through it.
        with anyio.CancelScope(
            deadline=anyio.current_time() + self.timeouts.first_token_s
        ) as scope:
            try:
                if endpoint == "embeddings":
                    return await self._whole(url, body, on_wire)
                return await self._read(url, body, Reading(endpoint), scope, on_delta, on_wire)
            except httpx.ConnectError as exc:
                raise UpstreamFailure(ErrorCode.UPSTREAM_UNAVAILABLE, str(exc)) from exc
            except httpx.TimeoutException as exc:
                raise UpstreamFailure(ErrorCode.UPSTREAM_UNAVAILABLE, str(exc)) from exc
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                raise UpstreamFailure(
                    ErrorCode.UPSTREAM_ERROR, f"The connection broke ({type(exc).__name__})."
                ) from exc
        raise UpstreamFailure(ErrorCode.UPSTREAM_TIMEOUT)

    async def _whole(
        self,
        url: str,
        body: dict[str, Any],
        on_wire: Callable[[str, dict[str, Any], str], None],
    ) -> StreamResult:
        resp = await self.client.post(url, json=body)
        if resp.status_code != 200:
            raise map_error(resp.status_code, resp.text)
        answer = resp.json()
        on_wire("message", answer, "")
        return StreamResult("stop", answer.get("usage"))

    async def _read(
        self,
        url: str,
        body: dict[str, Any],
        reading: Reading,
        scope: anyio.CancelScope,
        on_delta: Callable[[Delta], None],
        on_wire: Callable[[str, dict[str, Any], str], None],
    ) -> StreamResult:
        stall = self.timeouts.stall_s
        refresh_below = stall / 2
        first = waiting_first = True
        # `async with` closes the connection however we leave: done, error, or cancelled.
        async with self.client.stream("POST", url, json=body) as resp:
            if resp.status_code != 200:
                raise map_error(resp.status_code, (await resp.aread()).decode("utf-8", "replace"))
            # The project's one SSE reader: lines end at CR, LF or CRLF only, and a
            # multi-byte character split across network chunks arrives whole.
            async for sse in aiter_events(resp):
                data = sse.data
                if not data or data == "[DONE]":
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
                handed = False
                for delta in reading.deltas(sse.event, chunk):
                    on_delta(delta)
                    handed = True
                if reading.failure is not None:
                    raise UpstreamFailure(ErrorCode.UPSTREAM_ERROR, reading.failure)
                on_wire(sse.event, chunk, _escaped(data))
                if handed and waiting_first:
                    # One network read often holds many tokens: let the client's writer
                    # send the first one now, not after this loop has handled the rest.
                    waiting_first = False
                    await anyio.lowlevel.checkpoint()
        if reading.finish_reason is None:
            raise UpstreamFailure(
                ErrorCode.UPSTREAM_ERROR, "The stream ended before the reply was finished."
            )
        return StreamResult(reading.finish_reason, reading.usage)


def _escaped(data: str) -> str:
    """The chunk's JSON text with U+2028/2029/0085 escaped (LM Studio writes them raw), so
    it can be forwarded as it came without a reader that splits like `splitlines` cutting it.
    """
    if "\u2028" in data or "\u2029" in data or "\u0085" in data:
        data = data.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        data = data.replace("\u0085", "\\u0085")
    return data


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
    if status == 404 and "model" in lowered:
        return UpstreamFailure(ErrorCode.MODEL_NOT_LOADED, message)
    if status in (404, 405) or "unexpected endpoint" in lowered:
        return UpstreamFailure(ErrorCode.UNSUPPORTED_ENDPOINT, message)
    if 400 <= status < 500 and status not in (401, 403, 408, 429):
        # The upstream refused what the client sent (a tool schema, a field it rejects):
        # the client's to fix, so it gets a 4xx, not a 5xx its SDK would retry.
        return UpstreamFailure(ErrorCode.UPSTREAM_REJECTED, f"HTTP {status}: {message}")
    return UpstreamFailure(ErrorCode.UPSTREAM_ERROR, f"HTTP {status}: {message}")
