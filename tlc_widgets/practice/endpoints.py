"""The OpenAI endpoints beyond chat: completions, embeddings, responses, one model's card.

    >>> from tlc_widgets.practice.settings import PracticeSettings
    >>> app = FastAPI()
    >>> add_openai_routes(app, PracticeServer(PracticeSettings(tokens_per_second=0)))

Each takes a slot of its model like chat does (embeddings: of the embedding model), so the
practice server's slot counts show them too.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from tlc_widgets.practice import catalog, embeddings
from tlc_widgets.practice.answer import plan_answer
from tlc_widgets.practice.app_server import PracticeServer
from tlc_widgets.practice.completions import TextCompletion, parse_completion_request
from tlc_widgets.practice.requests import BadRequest, parse_chat_request
from tlc_widgets.practice.responses import ResponseWriter, to_chat_body
from tlc_widgets.practice.streams import LeasedStream, unless_disconnected

__all__ = ["add_openai_routes"]


def _bad(message: str) -> JSONResponse:
    return JSONResponse(catalog.bad_request(message), status_code=400)


def add_openai_routes(app: FastAPI, server: PracticeServer) -> None:
    """`/v1/completions`, `/v1/embeddings`, `/v1/responses` and `/v1/models/{id}`."""

    @app.get("/v1/models/{model_id:path}")
    async def model_card(model_id: str) -> Response:
        spec = server.specs.get(model_id)
        if spec is None or server.faults.no_models_loaded:
            body = catalog.model_not_found(model_id, server.chat_models())
            return JSONResponse(body, status_code=404)
        card = {"id": spec.id, "object": "model", "owned_by": "organization_owner"}
        return JSONResponse(card | {"created": server.started})

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        try:
            req = parse_completion_request(await server.read_json(request), server.default_chat)
        except ClientDisconnect:
            return Response(status_code=499)
        except BadRequest as exc:
            return _bad(str(exc))
        admitted = await server.admit(request, req.model, "llm")
        if isinstance(admitted, Response):
            return admitted
        spec, lease = admitted
        answer = TextCompletion(server.model, req, spec.id)
        if req.stream:
            return LeasedStream(server.finishing(answer.stream(server.pace(spec)), lease), lease)
        try:
            body = await unless_disconnected(request, lambda: answer.whole(server.pace(spec)))
            lease.ended_by_server = body is not None
            return JSONResponse(body) if body is not None else Response(status_code=499)
        finally:
            lease.release()

    @app.post("/v1/embeddings")
    async def embed(request: Request) -> Response:
        try:
            body = await server.read_json(request)
            req = embeddings.parse_embedding_request(body, server.default_embed)
        except ClientDisconnect:
            return Response(status_code=499)
        except (BadRequest, embeddings.EmbeddingError) as exc:
            return _bad(str(exc))
        admitted = await server.admit(request, req.model, "embeddings")
        if isinstance(admitted, Response):
            return admitted
        spec, lease = admitted
        try:
            lease.ended_by_server = True
            return JSONResponse(embeddings.response(req, spec.id))
        finally:
            lease.release()

    @app.post("/v1/responses")
    async def responses(request: Request) -> Response:
        try:
            body: Any = await server.read_json(request)
            chat = parse_chat_request(to_chat_body(body), server.default_chat)
        except ClientDisconnect:
            return Response(status_code=499)
        except BadRequest as exc:
            return _bad(str(exc))
        admitted = await server.admit(request, chat.model, "llm")
        if isinstance(admitted, Response):
            return admitted
        spec, lease = admitted
        try:
            plan = plan_answer(server.model, chat, spec.reasoning)
        except ValueError as exc:
            lease.ended_by_server = True
            lease.release()
            return _bad(str(exc))
        writer = ResponseWriter(chat, plan, spec.id, body)
        if body.get("stream"):
            return LeasedStream(server.finishing(writer.stream(server.pace(spec)), lease), lease)
        try:
            whole = await unless_disconnected(request, lambda: writer.whole(server.pace(spec)))
            lease.ended_by_server = whole is not None
            return JSONResponse(whole) if whole is not None else Response(status_code=499)
        finally:
            lease.release()
