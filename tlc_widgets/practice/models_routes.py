"""LM Studio's model routes: the three lists, and the native load and unload.

    >>> from tlc_widgets.practice.settings import PracticeSettings
    >>> add_model_routes(FastAPI(), PracticeServer(PracticeSettings()))

`POST /api/v1/models/load {model, parallel?, context_length?, ttl?, echo_load_config?}` blocks
until the model is loaded and answers `{type, instance_id, load_time_seconds, status}`;
`POST /api/v1/models/unload {instance_id}` answers `{instance_id}`. Errors take the native
API's shape, `{"error": {"type", "message", "code"?}}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from tlc_widgets.practice import catalog
from tlc_widgets.practice.app_server import PracticeServer
from tlc_widgets.practice.lifecycle import LoadFailed
from tlc_widgets.practice.requests import BadRequest, number

__all__ = ["add_model_routes"]


def _native(status: int, kind: str, message: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(catalog.native_error(kind, message, code), status_code=status)


def add_model_routes(app: FastAPI, server: PracticeServer) -> None:
    """`/v1/models`, `/api/v0/models`, `/api/v1/models` and `/api/v1/models/load|unload`."""
    life = server.lifecycle

    def listed() -> list[Any]:
        life.sweep()
        if server.faults.no_models_loaded:
            return []
        specs = list(server.specs.values())
        # Without JIT, LM Studio's OpenAI list shows only what is loaded.
        return specs if server.settings.jit_loading else [s for s in specs if life.is_loaded(s.id)]

    @app.get("/v1/models")
    async def models_openai() -> dict[str, Any]:
        return catalog.models_openai(listed(), True)

    @app.get("/api/v0/models")
    async def models_api_v0() -> dict[str, Any]:
        life.sweep()
        no_models = server.faults.no_models_loaded
        return catalog.models_api_v0(
            list(server.specs.values()), lambda key: not no_models and life.is_loaded(key)
        )

    @app.get("/api/v1/models")
    async def models_api_v1() -> dict[str, Any]:
        life.sweep()
        no_models = server.faults.no_models_loaded
        return catalog.models_api_v1(
            list(server.specs.values()), lambda key: [] if no_models else life.listed(key)
        )

    @app.get("/practice/models")
    async def practice_models() -> dict[str, Any]:
        """Practice only: which models are loaded or loading, and how many loads ran."""
        life.sweep()
        return life.as_dict()

    @app.post("/api/v1/models/load")
    async def load(request: Request) -> Response:
        try:
            body = await server.read_json(request)
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                raise BadRequest("'model' is required: the key of the model to load.")
            config = body.get("config")
            settings = body | (
                config if isinstance(config, dict) else {}
            )  # older docs nest the options in `config`
            parallel = number(settings, "parallel", int)
            context = number(settings, "context_length", int)
            ttl = number(settings, "ttl", float)
            if parallel is not None and parallel < 1:
                raise BadRequest("'parallel' must be at least 1.")
        except ClientDisconnect:
            return Response(status_code=499)
        except BadRequest as exc:
            return _native(400, "invalid_request", str(exc))
        spec = server.specs.get(body["model"])
        if spec is None:
            message = f'Model "{body["model"]}" not found. Available: {", ".join(server.specs)}'
            return _native(404, "model_not_found", message, "model_not_found")
        try:
            instance = await life.load(
                spec.id,
                seconds=server.load_time,
                failure=server.faults.load_failure,
                parallel=parallel,
                context_length=context,
                ttl_s=ttl,
            )
        except LoadFailed as exc:
            return _native(500, "internal_error", str(exc), exc.code)
        answer: dict[str, Any] = {
            "type": "llm" if spec.kind == "llm" else "embedding",
            "instance_id": instance.id,
            "load_time_seconds": round(instance.load_time_s, 3),
            "status": "loaded",
        }
        if body.get("echo_load_config"):
            answer["load_config"] = instance.as_listed()["config"]
        return JSONResponse(answer)

    @app.post("/api/v1/models/unload")
    async def unload(request: Request) -> Response:
        try:
            body = await server.read_json(request)
        except ClientDisconnect:
            return Response(status_code=499)
        except BadRequest as exc:
            return _native(400, "invalid_request", str(exc))
        instance_id = body.get("instance_id") if isinstance(body, dict) else None
        if not isinstance(instance_id, str):
            return _native(400, "invalid_request", "'instance_id' is required.")
        if life.unload(instance_id) is None:
            message = f'No loaded model instance "{instance_id}".'
            return _native(404, "model_not_found", message, "model_not_found")
        return JSONResponse({"instance_id": instance_id})
