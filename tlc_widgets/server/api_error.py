"""`ApiError`: a request refused at the door, with one error code from the protocol.

    >>> raise ApiError(ErrorCode.FORBIDDEN, "Only teachers may set a priority.", param="priority")
    ... # doctest: +SKIP

Routes, the auth checks and the input limits all raise it; `app.py` turns it into the one
JSON error shape of both doors (`protocol.error_body`), with `Retry-After` when it has one.
"""

from __future__ import annotations

from ..protocol import ERRORS, ErrorCode

__all__ = ["ApiError"]


class ApiError(Exception):
    """A request refused at the door: one error code, optional detail, field and Retry-After."""

    def __init__(
        self,
        code: ErrorCode,
        detail: str | None = None,
        *,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail or ''}")
        self.code, self.detail, self.param, self.retry_after = code, detail, param, retry_after
        self.status = ERRORS[code][0]
