"""The practice server: LM Studio's HTTP API in front of the Markov practice model.

    >>> from tlc_widgets.serving import BackgroundServer
    >>> with BackgroundServer(create_app(PracticeSettings(tokens_per_second=0))) as srv:
    ...     httpx.get(srv.url + "/v1/models").json()["data"][0]["id"]   # doctest: +SKIP
    'practice-fast'

A request first waits for a slot of its model (FIFO, before any byte is sent, like LM Studio),
then gets one chunk per token at the model's speed. A client that leaves — while waiting or
while reading — frees its slot at once. The `/practice/*` routes are not LM Studio's: they let
lessons and tests watch the slots and switch faults on and off while the server runs.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from tlc_widgets.practice import catalog, wire
from tlc_widgets.practice.answer import plan_answer
from tlc_widgets.practice.chat import ChatWriter
from tlc_widgets.practice.faults import Faults
from tlc_widgets.practice.generator import default_model
from tlc_widgets.practice.requests import BadRequest, parse_chat_request
from tlc_widgets.practice.settings import ModelSpec, PracticeSettings
from tlc_widgets.practice.slots import Slots
from tlc_widgets.practice.streams import HideDropTraceback, LeasedStream, Pace, unless_disconnected

__all__ = ["PracticeServer", "create_app"]


class PracticeServer:
    """Everything one practice app holds: settings, models, slots and the current faults."""

    def __init__(self, settings: PracticeSettings) -> None:
        self.settings = settings
        self.specs = {s.id: s for s in settings.offered_models()}
        self.model = default_model()
        self.slots = Slots(self.specs, settings.parallel)
        self.faults = Faults.from_settings(settings)

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

    async def chat(self, request: Request) -> Response:
        try:
            body = await self.read_json(request)
            chat = parse_chat_request(body, default_model=next(iter(self.specs), ""))
        except ClientDisconnect:
            # The client left before its body arrived (a request cancelled as it started).
            return Response(status_code=499)
        except BadRequest as exc:
            return JSONResponse(catalog.bad_request(str(exc)), status_code=400)
        faults = self.faults  # a request keeps the faults it arrived with
        if faults.no_models_loaded:
            return JSONResponse(catalog.no_models_loaded(), status_code=404)
        spec = self.specs.get(chat.model)
        if spec is None:
            return JSONResponse(catalog.model_not_found(chat.model, self.specs), status_code=400)
        lease = await unless_disconnected(request, lambda: self.slots.acquire(spec.id))
        if lease is None:
            return Response(status_code=499)  # nobody is listening any more
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


def _practice_routes(app: FastAPI, server: PracticeServer) -> None:
    @app.get("/practice/stats")
    async def practice_stats() -> dict[str, Any]:
        """Practice only: slot use for the whole server and per model."""
        return server.slots.stats.as_dict()

    @app.post("/practice/stats/reset")
    async def practice_stats_reset() -> dict[str, Any]:
        """Practice only: forget served/disconnect/request counts and the peak."""
        server.slots.stats.reset()
        return server.slots.stats.as_dict()

    @app.get("/practice/faults")
    async def practice_faults() -> dict[str, Any]:
        """Practice only: which faults are switched on."""
        return server.faults.as_dict()

    @app.put("/practice/faults")
    async def practice_faults_put(request: Request) -> Response:
        """Practice only: switch faults on or off; fields not sent keep their value."""
        try:
            changes = json.loads(await request.body())
            if not isinstance(changes, dict):
                raise ValueError("send a JSON object of fault fields")
            server.faults = server.faults.updated(changes)
        except ValueError as exc:
            return JSONResponse(catalog.bad_request(str(exc)), status_code=400)
        return JSONResponse(server.faults.as_dict())


def create_app(settings: PracticeSettings | None = None) -> FastAPI:
    """The practice server as an ASGI app; run it with uvicorn or `BackgroundServer`.

    >>> app = create_app(PracticeSettings(parallel=2, models=["practice-fast"]))
    """
    server = PracticeServer(settings or PracticeSettings())
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, HideDropTraceback) for f in logger.filters):
        logger.addFilter(HideDropTraceback())
    app = FastAPI(
        title="tlc practice model",
        description="LM Studio's API in front of a practice model (statistical text "
        "generator, not an LLM).",
    )
    app.state.practice = server  # for tests and lessons that want to look inside

    def loaded() -> bool:
        return not server.faults.no_models_loaded

    @app.get("/v1/models")
    async def models_openai() -> dict[str, Any]:
        return catalog.models_openai(list(server.specs.values()), loaded())

    @app.get("/api/v0/models")
    async def models_api_v0() -> dict[str, Any]:
        return catalog.models_api_v0(list(server.specs.values()), loaded())

    @app.get("/api/v1/models")
    async def models_api_v1() -> dict[str, Any]:
        specs = list(server.specs.values())
        return catalog.models_api_v1(specs, loaded(), server.settings.parallel)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await server.chat(request)

    _practice_routes(app, server)
    return app
