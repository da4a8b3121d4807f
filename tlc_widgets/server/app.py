"""The app: wiring only — the service's lifespan, the routes, the middleware, errors.

    >>> app = create_app(Settings(upstreams=["http://127.0.0.1:1234/v1"]))
    >>> operations = [op for path in app.openapi()["paths"].values() for op in path.values()]
    >>> sorted({tag for op in operations for tag in op["tags"]})
    ['admin', 'class', 'history', 'me', 'openai', 'ops', 'queue', 'requests']

The routes live in `routes/` (one module per resource) and `openai/` (the OpenAI door);
each calls the service's verbs (`service.py`). Around every route: the body limit
(limits.py), then the key check (auth.py), which leaves the caller's identity for the
`Caller` dependency.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ..config import Settings
from ..protocol import ErrorCode, error_body
from . import openai
from .api_error import UNREADABLE_BODY, ApiError, bad_fields
from .auth import OPEN_PATHS, AuthMiddleware, Keys
from .guard import install_guard
from .hub import HubIdentities, HubLogin, HubLoginMiddleware, PrefixMiddleware
from .limits import BodyLimitMiddleware
from .practice_mount import practice_upstream
from .routes import ROUTERS
from .service import QueueService
from .store.errors import StoreUnavailable

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # In a JupyterHub the Hub's tokens say who is asking; else the keys (if any) do.
    hub = HubIdentities.from_settings(settings)
    keys = hub or Keys.from_settings(settings)  # a bad keys file stops the start, with its line

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with practice_upstream(settings) as effective:
            async with QueueService.running(effective, keys_on=bool(keys)) as queue:
                app.state.queue = queue
                try:
                    yield
                finally:
                    if hub is not None:
                        await hub.aclose()

    app = FastAPI(
        title="TLC queue server",
        summary="A fair queue in front of LM Studio: positions, ETAs and live tokens.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    # `--redis`: whichever route met a Redis that does not answer, the same 503.
    app.add_exception_handler(StoreUnavailable, _store_unavailable)  # type: ignore[arg-type]
    # The door first: FastAPI tries routers in order, and `/v1` is the busiest path.
    for router in (openai.router, *ROUTERS):
        app.include_router(router)
    # The last added runs first: the body limit holds even for requests without a key.
    app.add_middleware(AuthMiddleware, keys=keys)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    login = HubLogin.from_settings(settings) if hub is not None else None
    if login is not None:  # browsers (the Services menu) log in with the Hub
        app.add_middleware(HubLoginMiddleware, login=login, open_paths=OPEN_PATHS)
    install_guard(app, settings, hub=hub is not None)  # foreign Host, cross-site calls, CORS
    # Outermost: behind the Hub's proxy, paths keep the prefix; strip it before the guard,
    # so its private-path rules see `/api/…`.
    if hub is not None and settings.hub_service_prefix:
        app.add_middleware(PrefixMiddleware, prefix=settings.hub_service_prefix)

    return app


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse(
        error_body(exc.code, exc.detail, exc.param), status_code=exc.status, headers=headers
    )


async def _store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
    return await _api_error(request, ApiError(ErrorCode.STORE_UNAVAILABLE, exc.where))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each bad field and why, in one readable sentence."""
    detail, first_field = bad_fields(exc.errors())
    return JSONResponse(error_body(ErrorCode.INVALID_REQUEST, detail, first_field), status_code=422)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """A body FastAPI could not parse (not UTF-8, nested too deep) is a 422 like any bad body."""
    if exc.status_code == 400:
        body = error_body(ErrorCode.INVALID_REQUEST, UNREADABLE_BODY, "body")
        return JSONResponse(body, status_code=422)
    return await http_exception_handler(request, exc)
