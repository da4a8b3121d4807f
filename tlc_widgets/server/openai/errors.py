"""Errors of the OpenAI door: OpenAI's envelope, OpenAI's status codes, and a "no" that stays a no.

    >>> status, body, headers = openai_error(ErrorCode.INVALID_REQUEST, "messages: required")
    >>> status, body["error"]["type"], headers
    (400, 'invalid_request_error', {})
    >>> openai_error(ErrorCode.QUEUE_TIMEOUT)[2]
    {'x-should-retry': 'false'}

Every `/v1` answer that is not a success is `{"error": {message, type, param, code}}`, as the
OpenAI SDKs parse it, with the status OpenAI would use: 400 for a bad body (FastAPI's 422 is
not what an OpenAI client expects: it raises `UnprocessableEntityError`, and code catching
`BadRequestError` misses it), 404 for an unknown model or path.

The OpenAI SDKs retry 408, 409, 429 and every 5xx by default, unless the answer carries
`x-should-retry: false` (Stainless SDKs: Python, Node, Go …). Two of our answers mean "no":
a request a teacher or admin cancelled (409 `cancelled`) and one that waited its whole
`queue_timeout` (504). Retried, the first would be served after all and the second would
wait again at the back of the line; so both say `x-should-retry: false`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ...protocol import ERRORS, ErrorCode, error_body
from ..api_error import UNREADABLE_BODY, ApiError, bad_fields

__all__ = ["NO_RETRY", "OpenAIRoute", "cancelled_error", "error_response", "openai_error"]

#: The header that tells the OpenAI SDKs not to retry, whatever the status.
NO_RETRY = {"x-should-retry": "false"}

#: Where OpenAI's status differs from the native API's.
_STATUS = {
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.PROMPT_TOO_LONG: 400,
    ErrorCode.MAX_TOKENS_TOO_LARGE: 400,
}
#: OpenAI's `error.type` per status (4xx otherwise `invalid_request_error`).
_TYPE = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}
_FINAL = frozenset({ErrorCode.QUEUE_TIMEOUT})


def openai_error(
    code: ErrorCode, detail: str | None = None, param: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, envelope, headers) of one of our error codes, as the door answers it."""
    status = _STATUS.get(code, ERRORS[code][0])
    body = error_body(code, detail, param)
    body["error"]["type"] = _TYPE.get(
        status, "server_error" if status >= 500 else body["error"]["type"]
    )
    return status, body, dict(NO_RETRY) if code in _FINAL else {}


def cancelled_error(by: str) -> dict[str, Any]:
    """The envelope of a request someone stopped (answered 409 with `NO_RETRY`)."""
    message = f"The request was cancelled ({by}); it will not be sent again."
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "cancelled",
        }
    }


def error_response(
    code: ErrorCode,
    detail: str | None = None,
    param: str | None = None,
    retry_after: int | None = None,
) -> JSONResponse:
    status, body, headers = openai_error(code, detail, param)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(body, status_code=status, headers=headers)


def _bad_body(exc: RequestValidationError) -> JSONResponse:
    detail, first = bad_fields(exc.errors())
    return error_response(ErrorCode.INVALID_REQUEST, detail, first)


class OpenAIRoute(APIRoute):
    """A `/v1` route: whatever goes wrong leaves in OpenAI's envelope and status codes,
    without touching the native API's handlers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _bad_body(exc)
            except ApiError as exc:
                return error_response(exc.code, exc.detail, exc.param, exc.retry_after)
            except HTTPException as exc:
                if exc.status_code == 400:  # a body that is not UTF-8 JSON at all
                    return error_response(ErrorCode.INVALID_REQUEST, UNREADABLE_BODY, "body")
                raise

        return route
