"""Every error a client can see: its code, its HTTP status, and the sentence a student reads.

    >>> ERRORS[ErrorCode.QUEUE_FULL]
    (429, 'The queue is full right now; please try again shortly.')
    >>> error_body(ErrorCode.NOT_FOUND)["error"]["type"]
    'invalid_request_error'

Part of the contract (`protocol.py` re-exports all of it): the server raises these codes,
the client maps each to an exception (`errors.py`), and both doors send the same shape.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = ["ERRORS", "STOPPING_QUEUED", "STOPPING_RUNNING", "ErrorCode", "error_body"]


class ErrorCode(StrEnum):
    """Every error a client can see. `ERRORS` gives each its HTTP status and sentence."""

    INVALID_REQUEST = "invalid_request"
    PROMPT_TOO_LONG = "prompt_too_long"
    MAX_TOKENS_TOO_LARGE = "max_tokens_too_large"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    MODEL_NOT_FOUND = "model_not_found"
    NOT_FOUND = "not_found"
    QUEUE_FULL = "queue_full"
    TOO_MANY_REQUESTS = "too_many_requests"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_STREAMS = "too_many_streams"
    BUDGET_EXHAUSTED = "budget_exhausted"
    CLASS_PAUSED = "class_paused"
    DRAINING = "draining"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    MODEL_NOT_LOADED = "model_not_loaded"
    QUEUE_TIMEOUT = "queue_timeout"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_ERROR = "upstream_error"
    REPLY_TOO_LARGE = "reply_too_large"
    MODEL_LOAD_FAILED = "model_load_failed"
    MODEL_LOAD_TIMEOUT = "model_load_timeout"
    SHUTTING_DOWN = "shutting_down"
    HUB_UNAVAILABLE = "hub_unavailable"
    UPSTREAM_REJECTED = "upstream_rejected"
    UNSUPPORTED_ENDPOINT = "unsupported_endpoint"
    SLOT_LOST = "slot_lost"
    REPLICA_LOST = "replica_lost"
    STORE_UNAVAILABLE = "store_unavailable"
    INTERNAL_ERROR = "internal_error"
    HOST_NOT_ALLOWED = "host_not_allowed"
    CROSS_ORIGIN = "cross_origin"
    REQUEST_TIMEOUT = "request_timeout"
    HEADERS_TOO_LARGE = "headers_too_large"
    TOO_MANY_CONNECTIONS = "too_many_connections"


#: HTTP status and the sentence a student reads. A route may add detail after the sentence.
ERRORS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.INVALID_REQUEST: (422, "The request is not valid."),
    ErrorCode.PROMPT_TOO_LONG: (422, "The prompt is too long for this server."),
    ErrorCode.MAX_TOKENS_TOO_LARGE: (422, "max_tokens is larger than this server allows."),
    ErrorCode.PAYLOAD_TOO_LARGE: (413, "The request body is too large."),
    ErrorCode.UNAUTHORIZED: (401, "This queue server needs a valid key."),
    ErrorCode.FORBIDDEN: (403, "Your key does not allow that."),
    ErrorCode.MODEL_NOT_FOUND: (404, "No upstream offers that model."),
    ErrorCode.NOT_FOUND: (404, "There is no request with that id (it may have expired)."),
    ErrorCode.QUEUE_FULL: (429, "The queue is full right now; please try again shortly."),
    ErrorCode.TOO_MANY_REQUESTS: (
        429,
        "You already have the most requests allowed waiting; wait for one to finish.",
    ),
    ErrorCode.RATE_LIMITED: (
        429,
        "You have sent too much in the last minute; wait a little and try again.",
    ),
    ErrorCode.TOO_MANY_STREAMS: (
        429,
        "Too many open streams for this; close other tabs or notebooks following it.",
    ),
    ErrorCode.BUDGET_EXHAUSTED: (
        429,
        "You have used all of your chat budget for today; it comes back when it resets.",
    ),
    # 423, not 503: a pause is the teacher's choice, not a failure, and OpenAI clients retry
    # 429 and 5xx on their own, which would hide the teacher's message behind minutes of retries.
    ErrorCode.CLASS_PAUSED: (423, "Your teacher has paused the chat for now."),
    ErrorCode.DRAINING: (
        503,
        "The queue server is not taking new requests right now (an admin is draining it); "
        "try again later.",
    ),
    ErrorCode.UPSTREAM_UNAVAILABLE: (
        503,
        "The model server (LM Studio) is not answering; is it running?",
    ),
    ErrorCode.MODEL_NOT_LOADED: (
        503,
        "The model server is running but that model is not loaded; load it in LM Studio.",
    ),
    ErrorCode.QUEUE_TIMEOUT: (504, "The request waited in the queue too long and was dropped."),
    ErrorCode.UPSTREAM_TIMEOUT: (504, "The model stopped answering in time."),
    ErrorCode.UPSTREAM_ERROR: (
        502,
        "The model server failed in the middle of the reply; the text so far is kept.",
    ),
    ErrorCode.MODEL_LOAD_FAILED: (
        503,
        "The model server could not load that model (often: not enough memory); "
        "ask your teacher or pick a smaller model.",
    ),
    ErrorCode.MODEL_LOAD_TIMEOUT: (
        504,
        "The model took too long to load; try again in a minute or pick a smaller model.",
    ),
    ErrorCode.SHUTTING_DOWN: (
        503,
        "The queue server is stopping; send your request again in a minute.",
    ),
    ErrorCode.HUB_UNAVAILABLE: (
        503,
        "JupyterHub, which tells this server who you are, is not answering; try again in a minute.",
    ),
    ErrorCode.UPSTREAM_REJECTED: (
        400,
        "The model server refused this request (it says why after this sentence).",
    ),
    ErrorCode.UNSUPPORTED_ENDPOINT: (404, "The model server does not offer this endpoint."),
    ErrorCode.REPLY_TOO_LARGE: (
        502,
        "The reply grew larger than this server keeps, so it was stopped; the text so far is kept.",
    ),
    ErrorCode.SLOT_LOST: (
        503,
        "The queue server lost its place at the model (its shared store did not answer in "
        "time), so the reply was stopped; the text so far is kept, send it again.",
    ),
    ErrorCode.REPLICA_LOST: (
        503,
        "The queue server that was running this request stopped; the text so far is kept, "
        "send it again.",
    ),
    ErrorCode.STORE_UNAVAILABLE: (
        503,
        "The shared store of the queue servers is not answering; try again in a moment.",
    ),
    ErrorCode.INTERNAL_ERROR: (500, "Something went wrong inside the queue server."),
    ErrorCode.HOST_NOT_ALLOWED: (
        400,
        "This queue server does not answer to that host name (add it to TLC_ALLOWED_HOSTS).",
    ),
    ErrorCode.CROSS_ORIGIN: (
        403,
        "A web page from another site may not do this (add its origin to TLC_CORS_ORIGINS).",
    ),
    ErrorCode.REQUEST_TIMEOUT: (408, "The request's headers did not arrive in time."),
    ErrorCode.HEADERS_TOO_LARGE: (431, "The request's headers are too large."),
    ErrorCode.TOO_MANY_CONNECTIONS: (
        503,
        "The queue server has too many open connections right now; try again shortly.",
    ),
}


#: What a request hears when the server stops: one that waited may simply be sent again.
STOPPING_QUEUED = (
    "The queue server is stopping before your request started; send it again in a minute."
)
STOPPING_RUNNING = "The queue server stopped before your reply finished; the text so far is kept."


def error_body(
    code: ErrorCode, detail: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The JSON error shape of both doors: OpenAI's, with our code in `code`.

    >>> error_body(ErrorCode.QUEUE_FULL)["error"]["code"]
    'queue_full'
    """
    status, sentence = ERRORS[code]
    message = f"{sentence} {detail}" if detail else sentence
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"code": code.value, "message": message, "type": kind, "param": param}}
