"""The practice server: LM Studio's HTTP API in front of the Markov practice model.

    >>> from tlc_widgets.serving import BackgroundServer
    >>> with BackgroundServer(create_app(PracticeSettings(tokens_per_second=0))) as srv:
    ...     httpx.get(srv.url + "/v1/models").json()["data"][0]["id"]   # doctest: +SKIP
    'practice-small'

A request first waits for a slot of its model (FIFO, before any byte is sent, like LM Studio),
then gets one chunk per token at the model's speed. A client that leaves — while waiting or
while reading — frees its slot at once. The `/practice/*` routes are not LM Studio's: they let
lessons and tests watch the slots and switch faults on and off while the server runs.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tlc_widgets.practice import catalog
from tlc_widgets.practice.app_server import PracticeServer
from tlc_widgets.practice.endpoints import add_openai_routes
from tlc_widgets.practice.models_routes import add_model_routes
from tlc_widgets.practice.native_chat import add_native_chat
from tlc_widgets.practice.settings import PracticeSettings
from tlc_widgets.practice.streams import HideDropTraceback

__all__ = ["create_app"]


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

    add_model_routes(app, server)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await server.chat(request)

    add_openai_routes(app, server)
    add_native_chat(app, server)
    _practice_routes(app, server)
    return app
