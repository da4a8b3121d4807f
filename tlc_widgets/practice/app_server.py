"""What one practice app holds — settings, models, slots, faults — and how a request gets in.

    >>> server = PracticeServer(PracticeSettings(tokens_per_second=0))
    >>> server.default_chat, server.default_embed
    ('practice-small', 'practice-embed')

`admit` is the one door for every endpoint: the no-models fault, the model's name and type,
then a slot of that model (FIFO, before any byte is sent, like LM Studio).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from tlc_widgets.practice import catalog, wire
from tlc_widgets.practice.answer import plan_answer
from tlc_widgets.practice.chat import ChatWriter
from tlc_widgets.practice.faults import Faults
from tlc_widgets.practice.generator import default_model
from tlc_widgets.practice.lifecycle import Instance, Lifecycle, LoadFailed
from tlc_widgets.practice.requests import BadRequest, parse_chat_request
from tlc_widgets.practice.settings import ModelSpec, PracticeSettings
from tlc_widgets.practice.slots import Lease, Slots
from tlc_widgets.practice.streams import LeasedStream, Pace, unless_disconnected

__all__ = ["PracticeServer"]


class PracticeServer:
    """Everything one practice app holds: settings, models, slots and the current faults."""

    def __init__(self, settings: PracticeSettings) -> None:
        self.settings = settings
        self.specs = {s.id: s for s in settings.offered_models()}
        self.model = default_model()
        self.slots = Slots(self.specs, settings.parallel)
        self.faults = Faults.from_settings(settings)
        self.lifecycle = Lifecycle(
            self.specs, self.slots, settings.loaded_at_start, settings.default_ttl_s
        )
        self.slots.on_release = self.lifecycle.touch
        self.started = int(time.time())
        self.default_chat = next(iter(self.chat_models()), "")
        self.default_embed = next((s.id for s in self.specs.values() if s.kind == "embeddings"), "")

    def chat_models(self) -> list[str]:
        """The models that write text, in catalogue order."""
        return [s.id for s in self.specs.values() if s.kind == "llm"]

    def pace(self, spec: ModelSpec) -> Pace:
        """The model's own speed, unless the settings override it for every model."""
        latency, speed = self.settings.first_token_latency_s, self.settings.tokens_per_second
        return Pace(
            spec.first_token_latency_s if latency is None else latency,
            spec.tokens_per_second if speed is None else speed,
        )

    async def read_json(self, request: Request) -> Any:
        """The decoded body; `BadRequest` if it is not JSON, `ClientDisconnect` if it left."""
        raw = await request.body()
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BadRequest(f"Invalid JSON: {exc}") from exc

    def load_time(self) -> float:
        """How long a load takes now: the live fault if set, else the setting."""
        live = self.faults.load_time_s
        return self.settings.default_load_time_s if live is None else live

    async def jit_load(self, model: str, ttl_s: float | None) -> Instance:
        """Load `model` on first use (or join its load), with the request's TTL or the default."""
        return await self.lifecycle.load(
            model,
            seconds=self.load_time,
            failure=self.faults.load_failure,
            ttl_s=self.lifecycle.default_ttl_s if ttl_s is None else ttl_s,
        )

    def spec_for(self, model: str, kind: str) -> ModelSpec | Response:
        """The model asked for, or the error response (faults, unknown name, wrong type)."""
        self.lifecycle.sweep()
        if self.faults.no_models_loaded:
            return JSONResponse(catalog.no_models_loaded(), status_code=404)
        spec = self.specs.get(model)
        if spec is None:
            body = catalog.model_not_found(model, self.chat_models())
            return JSONResponse(body, status_code=400)
        if spec.kind != kind:
            return JSONResponse(catalog.wrong_kind(spec.id, spec.kind), status_code=400)
        if not self.lifecycle.is_loaded(spec.id) and not self.settings.jit_loading:
            return JSONResponse(catalog.not_loaded(spec.id), status_code=404)
        return spec

    async def admit(
        self, request: Request, model: str, kind: str, ttl_s: float | None = None
    ) -> tuple[ModelSpec, Lease] | Response:
        """A slot of `model` for this request (loading it first if need be), or the error."""
        spec = self.spec_for(model, kind)
        if isinstance(spec, Response):
            return spec
        if not self.lifecycle.is_loaded(spec.id):

            async def attempt() -> Instance | LoadFailed:
                try:
                    return await self.jit_load(spec.id, ttl_s)
                except LoadFailed as exc:  # returned: a task group would wrap it in a group
                    return exc

            loaded = await unless_disconnected(request, attempt)
            if loaded is None:
                return Response(status_code=499)
            if isinstance(loaded, LoadFailed):
                body = catalog.load_failed(loaded.code, str(loaded))
                return JSONResponse(body, status_code=500)
        self.lifecycle.touch(spec.id, ttl_s)
        lease = await unless_disconnected(request, lambda: self.slots.acquire(spec.id))
        if lease is None:
            return Response(status_code=499)  # nobody is listening any more
        return spec, lease

    @staticmethod
    async def finishing(chunks: AsyncIterator[bytes], lease: Lease) -> AsyncIterator[bytes]:
        """`chunks`, marking the lease as ended by the server once they are all sent."""
        async for chunk in chunks:
            yield chunk
        lease.ended_by_server = True

    async def chat(self, request: Request) -> Response:
        """`POST /v1/chat/completions`."""
        try:
            body = await self.read_json(request)
            chat = parse_chat_request(body, default_model=self.default_chat)
        except ClientDisconnect:
            # The client left before its body arrived (a request cancelled as it started).
            return Response(status_code=499)
        except BadRequest as exc:
            return JSONResponse(catalog.bad_request(str(exc)), status_code=400)
        faults = self.faults  # a request keeps the faults it arrived with
        admitted = await self.admit(request, chat.model, "llm", chat.ttl)
        if isinstance(admitted, Response):
            return admitted
        spec, lease = admitted
        reply = wire.Reply(wire.new_completion_id(), int(time.time()), spec.id)
        try:
            plan = plan_answer(self.model, chat, spec.reasoning)
        except ValueError as exc:  # a JSON schema the practice model cannot fill
            lease.ended_by_server = True
            lease.release()
            return JSONResponse(catalog.bad_request(str(exc)), status_code=400)
        writer = ChatWriter(chat, plan, self.pace(spec), faults, reply, spec.reasoning)
        if chat.stream:
            return LeasedStream(writer.stream(lease), lease)
        try:
            answer = await unless_disconnected(request, writer.complete)
            lease.ended_by_server = answer is not None
            return answer or Response(status_code=499)
        finally:
            lease.release()
