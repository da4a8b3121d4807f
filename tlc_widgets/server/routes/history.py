"""`/api/history`: a user's past requests, one of them, or all of them as a file.

    GET /api/history?limit=20                 your newest 20 requests, newest first
    GET /api/history?user=ada                 an admin reads ada's (anyone else: 403)
    GET /api/history/{id}                     one request (another user's: 404)
    GET /api/history/export?format=md         all of yours as Markdown (or format=json)

Without keys there is one trusted user: no `user=` means everyone's.

    >>> router.prefix
    '/api/history'
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from ...protocol import ErrorCode
from ..api_error import ApiError
from ..auth import Identity
from ..deps import Caller, Service
from ..schemas import HistoryItem, HistoryList

__all__ = ["router"]

router = APIRouter(prefix="/api/history", tags=["history"])

UserQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=64, description="Whose history (admins only: anyone's)."),
]


_FILE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The history as a file: JSON, or a Markdown transcript.",
        "content": {"application/json": {}, "text/markdown": {"schema": {"type": "string"}}},
    }
}


def _whose(identity: Identity, user: str | None) -> str | None:
    """The user whose history to read: yourself, or (admin) whoever `user` names."""
    if user is None or user == identity.user:
        return identity.user  # None without keys, or an admin asking for everyone
    if identity.may_see(user):
        return user
    raise ApiError(ErrorCode.FORBIDDEN, "You may read only your own history.", param="user")


@router.get("", response_model=HistoryList)
async def history_list(
    service: Service,
    caller: Caller,
    user: UserQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> HistoryList:
    """Your newest requests first: messages, reply, reasoning, timings, outcome."""
    history = service.history
    rows = await history.recent(_whose(caller, user), limit)
    return HistoryList(enabled=history.enabled, requests=[HistoryItem(**r) for r in rows])


@router.get("/export", response_class=Response, responses=_FILE)
async def history_export(
    service: Service,
    caller: Caller,
    user: UserQuery = None,
    format: Annotated[Literal["json", "md"], Query()] = "json",
) -> Response:
    """Every request of yours as one file: JSON, or a Markdown transcript."""
    whose = _whose(caller, user)
    rows = await service.history.recent(whose, -1)  # SQLite: LIMIT -1 is no limit
    # Only safe characters in a header: a user name may be any Unicode.
    name = f"tlc-history-{re.sub(r'[^A-Za-z0-9._-]', '_', whose or 'all')}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "json":
        return JSONResponse({"user": whose, "requests": rows}, headers=headers)
    return Response(_markdown(whose, rows), media_type="text/markdown", headers=headers)


@router.get("/{request_id}", response_model=HistoryItem)
async def history_item(request_id: str, service: Service, caller: Caller) -> HistoryItem:
    """One past request, with everything the history keeps of it."""
    row = await service.history.get(request_id)
    if row is None or not caller.may_see(row["user"]):
        raise ApiError(ErrorCode.NOT_FOUND)  # another's id reads as unknown: ids do not leak
    return HistoryItem(**row)


def _markdown(whose: str | None, rows: list[dict[str, Any]]) -> str:
    lines = [f"# Chat history of {whose or 'every user'} ({len(rows)} requests)", ""]
    for row in reversed(rows):  # oldest first reads like a conversation
        when = datetime.fromtimestamp(row["created"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        ending = row["status"] + (f" ({row['outcome']})" if row["outcome"] else "")
        lines += [f"## {when} · {row['user']} · {row['model']} · {ending}", ""]
        for message in row["messages"]:
            content = message.get("content")
            if not isinstance(content, str):
                content = "".join(str(p.get("text", "")) for p in content or [])
            lines += [f"**{message['role']}:** {content}", ""]
        if row["reasoning"]:
            lines += [f"*reasoning:* {row['reasoning']}", ""]
        lines += [f"**assistant:** {row['text']}", ""]
        if row["message"]:
            lines += [f"> {row['message']}", ""]
    return "\n".join(lines)
