"""`ApiError`: a request refused at the door, with one error code from the protocol.

    >>> raise ApiError(ErrorCode.FORBIDDEN, "Only teachers may set a priority.", param="priority")
    ... # doctest: +SKIP

Routes, the auth checks and the input limits all raise it; `app.py` turns it into the one
JSON error shape of both doors (`protocol.error_body`), with `Retry-After` when it has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..protocol import ERRORS, ErrorCode

__all__ = ["UNREADABLE_BODY", "ApiError", "bad_fields"]

#: What both doors say of a body that is not JSON at all (not UTF-8, nested too deep).
UNREADABLE_BODY = "body: it could not be read as JSON (it must be UTF-8 JSON text)."


def bad_fields(errors: Iterable[Mapping[str, Any]]) -> tuple[str, str | None]:
    """A validation failure in one readable sentence, and the first field it names.

    >>> bad_fields([{"loc": ("body", "max_tokens"), "msg": "must be ≥ 1"}])
    ('max_tokens: must be ≥ 1', 'max_tokens')
    """
    problems, first = [], None
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        first = first or where
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
    return "; ".join(problems[:5]) + more, first


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
