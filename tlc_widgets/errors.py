"""What `QueueClient` raises: one small tree, one class per thing a learner can do about it.

    >>> try:
    ...     text = await client.chat("Hello", model="no-such-model")   # doctest: +SKIP
    ... except ModelNotFound as exc:
    ...     print(exc.message)             # the server's sentence, e.g. "No upstream offers …"

The hierarchy:

    TLCError                    .code  .message  .retry_after
    ├── ServerUnavailable       the queue server itself cannot be reached
    ├── QueueFull               queue_full
    ├── TooManyRequests         too_many_requests, rate_limited, budget_exhausted,
    │                           too_many_streams
    ├── ClassPaused             class_paused (the teacher's message says until when)
    ├── AccessDenied            unauthorized, forbidden (keys and roles)
    ├── InvalidRequest          invalid_request, prompt_too_long, max_tokens_too_large,
    │                           payload_too_large, upstream_rejected
    ├── ModelNotFound           model_not_found
    ├── NotFound                not_found, unsupported_endpoint
    ├── UpstreamUnavailable     upstream_unavailable, model_not_loaded, draining,
    │                           shutting_down, model_load_failed, hub_unavailable
    ├── RequestFailed           queue_timeout, upstream_timeout, upstream_error,
    │                           model_load_timeout, internal_error, and any code this
    │                           client does not know
    └── RequestCancelled        the request ended with a `cancelled` event

The same code gives the same class whether the server refused the request at the door
(an HTTP error) or it failed later (an `error` event in its stream).
"""

from __future__ import annotations

import json

import httpx

from .protocol import ErrorCode

__all__ = [
    "AccessDenied",
    "ClassPaused",
    "InvalidRequest",
    "ModelNotFound",
    "NotFound",
    "QueueFull",
    "RequestCancelled",
    "RequestFailed",
    "ServerUnavailable",
    "TLCError",
    "TooManyRequests",
    "UpstreamUnavailable",
    "error_for",
    "error_from_response",
]


class TLCError(Exception):
    """Base class. `message` is a sentence a student can act on; `code` names the error."""

    def __init__(self, message: str, *, code: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        #: Seconds to wait before trying again, when the server said (429 `Retry-After`).
        self.retry_after = retry_after


class ServerUnavailable(TLCError):
    """The queue server does not answer (nothing listening, or the connection broke for good)."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"The queue server at {url} is not answering; "
            "start it with `tlc lab` or `tlc serve --practice`.",
            code="server_unavailable",
        )
        self.url = url


class QueueFull(TLCError):
    """The queue holds as many waiting requests as it allows; try again after `retry_after`."""


class TooManyRequests(TLCError):
    """This user already has the most waiting requests allowed; wait for one to finish."""


class ClassPaused(TLCError):
    """The teacher paused the chat (for a quiz, say); the message is the teacher's own."""


class InvalidRequest(TLCError):
    """The request itself is wrong (a bad field, too long, too large); the message says which."""


class ModelNotFound(TLCError):
    """No upstream offers the model asked for; the message lists those available."""


class NotFound(TLCError):
    """No request has that id on this server (a typo, or it finished long ago and expired)."""


class UpstreamUnavailable(TLCError):
    """The queue server runs, but the model server behind it (LM Studio) does not serve."""


class RequestFailed(TLCError):
    """The request was accepted but failed later (timed out, the model crashed, a bug)."""


class AccessDenied(TLCError):
    """No valid key (`unauthorized`: set `TLC_API_KEY`), or the key's role may not do that."""


class RequestCancelled(TLCError):
    """The request ended with a `cancelled` event: a Stop button, an admin, or shutdown."""


#: Every error code to the class raised for it; codes not listed raise `RequestFailed`.
CODES: dict[str, type[TLCError]] = {
    ErrorCode.INVALID_REQUEST: InvalidRequest,
    ErrorCode.PROMPT_TOO_LONG: InvalidRequest,
    ErrorCode.MAX_TOKENS_TOO_LARGE: InvalidRequest,
    ErrorCode.PAYLOAD_TOO_LARGE: InvalidRequest,
    ErrorCode.MODEL_NOT_FOUND: ModelNotFound,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.QUEUE_FULL: QueueFull,
    ErrorCode.TOO_MANY_REQUESTS: TooManyRequests,
    ErrorCode.RATE_LIMITED: TooManyRequests,
    ErrorCode.BUDGET_EXHAUSTED: TooManyRequests,
    ErrorCode.TOO_MANY_STREAMS: TooManyRequests,
    ErrorCode.CLASS_PAUSED: ClassPaused,
    ErrorCode.UPSTREAM_REJECTED: InvalidRequest,
    ErrorCode.UNSUPPORTED_ENDPOINT: NotFound,
    ErrorCode.SHUTTING_DOWN: UpstreamUnavailable,
    ErrorCode.MODEL_LOAD_FAILED: UpstreamUnavailable,
    ErrorCode.HUB_UNAVAILABLE: UpstreamUnavailable,
    ErrorCode.MODEL_LOAD_TIMEOUT: RequestFailed,
    ErrorCode.UNAUTHORIZED: AccessDenied,
    ErrorCode.FORBIDDEN: AccessDenied,
    ErrorCode.DRAINING: UpstreamUnavailable,
    ErrorCode.UPSTREAM_UNAVAILABLE: UpstreamUnavailable,
    ErrorCode.MODEL_NOT_LOADED: UpstreamUnavailable,
    ErrorCode.QUEUE_TIMEOUT: RequestFailed,
    ErrorCode.UPSTREAM_TIMEOUT: RequestFailed,
    ErrorCode.UPSTREAM_ERROR: RequestFailed,
    ErrorCode.INTERNAL_ERROR: RequestFailed,
    "cancelled": RequestCancelled,
}


def error_for(code: str, message: str, retry_after: float | None = None) -> TLCError:
    """The exception for an error code, from an HTTP error body or an `error` event."""
    cls = CODES.get(code, RequestFailed)
    return cls(message, code=code, retry_after=retry_after)


def error_from_response(response: httpx.Response) -> TLCError:
    """The exception for an HTTP error answer: `{"error": {"code", "message", …}}`."""
    try:
        error = json.loads(response.content)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        # Not our JSON (a proxy's error page, say): keep what the server said.
        code = ErrorCode.NOT_FOUND if response.status_code == 404 else ErrorCode.INTERNAL_ERROR
        message = f"HTTP {response.status_code}: {response.text[:200]}"
    return error_for(code, message, _retry_after(response.headers.get("Retry-After")))


def _retry_after(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:  # an HTTP date; we never send one
        return None
