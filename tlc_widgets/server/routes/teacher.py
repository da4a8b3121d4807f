"""`/api/class/*` and `/teacher`: the teacher sees the class and steers it.

    GET    /api/class                        the class: mode, message, prompts, budgets
    POST   /api/class/pause {message}        students are refused (423) with the message
    POST   /api/class/resume                 students chat again
    PUT    /api/class/prompt {text, model}   the class prompt (model null: all; "" removes)
    PUT    /api/class/budget {prompts, tokens}          the class's daily budget (0: none)
    PUT    /api/class/budget/{user} {prompts, tokens}   one student's; DELETE: the class's
    POST   /api/class/session {label}        budgets count from now, from zero (a lab)
    DELETE /api/class/session                back to counting by day
    GET    /api/class/live                   who waits and who runs, and for how long
    GET    /api/class/students               per user today: prompts, tokens, errors, left
    GET    /api/class/students/{user}/history           a student's conversations
    DELETE /api/class/requests/{id}          cancel anyone's request (`cancelled` by teacher)
    GET    /api/class/export?format=jsonl|csv&since=    the class's history as a file
    GET    /teacher                          the teacher's page (static; it asks for a key)
    GET    /teacher/login                    via the Hub's login (on a Hub), back to the page

    >>> router.prefix
    '/api/class'

Teachers and admins only: a student gets 403 `forbidden` on every `/api/class` route.
"""

from __future__ import annotations

import re
import time
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from starlette.responses import RedirectResponse, Response, StreamingResponse

from ...protocol import ErrorCode, Status
from ..api_error import ApiError
from ..auth import Role
from ..budgets import Budget, Usage
from ..class_schemas import (
    BudgetBody,
    ClassLive,
    ClassRow,
    ClassState,
    ClassStudents,
    PauseBody,
    PromptBody,
    SessionBody,
    StudentRow,
)
from ..deps import Teacher
from ..export import csv_lines, jsonl_lines, parse_since
from ..records import Record
from ..schemas import CancelAnswer, HistoryItem, HistoryList
from ..service import QueueService
from ..views import live as live_requests
from .requests import describe

__all__ = ["page", "router"]

router = APIRouter(prefix="/api/class", tags=["class"])
page = APIRouter(tags=["class"], include_in_schema=False)


def _state(service: QueueService) -> ClassState:
    return ClassState(**service.classroom.state())


@router.get("", response_model=ClassState)
async def class_state(service: Teacher) -> ClassState:
    """The class: open or paused (with the message), class prompts, budgets, the notice."""
    return _state(service)


@router.post("/pause", response_model=ClassState)
async def pause(body: PauseBody, service: Teacher) -> ClassState:
    """Refuse what students send (423 `class_paused`, with `message`); teachers and admins
    still get through; what students sent before the pause stays in line and runs."""
    service.classroom.pause(body.message)
    return _state(service)


@router.post("/resume", response_model=ClassState)
async def resume(service: Teacher) -> ClassState:
    """Students chat again."""
    service.classroom.resume()
    return _state(service)


@router.put("/prompt", response_model=ClassState)
async def class_prompt(body: PromptBody, service: Teacher) -> ClassState:
    """Instructions added to every student request (for `model`, or all); "" removes them."""
    service.classroom.set_prompt(body.text, body.model)
    return _state(service)


@router.put("/budget", response_model=ClassState)
async def class_budget(body: BudgetBody, service: Teacher) -> ClassState:
    """Every student's daily budget (0: unlimited); students with their own keep theirs."""
    service.classroom.set_budget(None, Budget(prompts=body.prompts, tokens=body.tokens))
    return _state(service)


@router.put("/budget/{user}", response_model=ClassState)
async def student_budget(user: str, body: BudgetBody, service: Teacher) -> ClassState:
    """One student's own daily budget (more for a project, less after a warning)."""
    service.classroom.set_budget(user, Budget(prompts=body.prompts, tokens=body.tokens))
    return _state(service)


@router.delete("/budget/{user}", response_model=ClassState)
async def student_budget_reset(user: str, service: Teacher) -> ClassState:
    """The student goes back to the class's budget."""
    service.classroom.set_budget(user, None)
    return _state(service)


@router.post("/session", response_model=ClassState)
async def start_session(body: SessionBody, service: Teacher) -> ClassState:
    """Budgets count per session from now: everyone starts from zero, until it is ended."""
    service.classroom.start_session(body.label)
    return _state(service)


@router.delete("/session", response_model=ClassState)
async def end_session(service: Teacher) -> ClassState:
    """Back to daily budgets, with the day's counts (the session's included)."""
    await service.classroom.end_session(service.history)
    return _state(service)


@router.get("/live", response_model=ClassLive)
async def live(service: Teacher) -> ClassLive:
    """Who runs and for how long, then who waits, in the order they would start."""
    now = time.monotonic()
    rows = [_row(record, position, now) for record, position in live_requests(service)]
    return ClassLive(
        mode=service.classroom.mode.value,
        message=service.classroom.message,
        running=[r for r in rows if r.status == Status.RUNNING.value],
        waiting=[r for r in rows if r.status == Status.QUEUED.value],
    )


def _row(record: Record, position: int | None, now: float) -> ClassRow:
    started = record.started
    return ClassRow(
        id=record.id,
        user=record.user,
        model=record.model,
        status=record.status.value,
        position=position,
        waiting_s=round((started or now) - record.created, 3),
        running_s=None if started is None else round(now - started, 3),
        tokens=record.tokens,
    )


@router.get("/students", response_model=ClassStudents)
async def students(service: Teacher) -> ClassStudents:
    """Everyone who sent something today: prompts, reply tokens, errors, budget left."""
    budgets = service.classroom.budgets
    usage = budgets.everyone()
    live_now: dict[str, int] = {}
    for record, _ in live_requests(service):
        live_now[record.user] = live_now.get(record.user, 0) + 1
    rows = []
    for user in sorted(set(usage) | set(live_now)):
        used = usage.get(user, Usage())
        role = Role(used.role) if used.role else Role.STUDENT  # rebuilt counts: a student
        rows.append(
            StudentRow(
                user=user,
                role=used.role,
                prompts=used.prompts,
                tokens=used.tokens,
                errors=used.errors,
                live=live_now.get(user, 0),
                budget=budgets.left(user) if service.classroom.governs(role) else None,
            )
        )
    return ClassStudents(
        day_start=budgets.day_start,
        resets_at=budgets.resets_at,
        session=budgets.session,
        students=rows,
    )


@router.get("/students/{user}/history", response_model=HistoryList)
async def student_history(
    user: str, service: Teacher, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> HistoryList:
    """A student's conversations, newest first (what the model was sent, and its replies)."""
    rows = await service.history.recent(user, limit)
    return HistoryList(enabled=service.history.enabled, requests=[HistoryItem(**r) for r in rows])


@router.delete("/requests/{request_id}", response_model=CancelAnswer)
async def cancel(request_id: str, service: Teacher) -> CancelAnswer:
    """Cancel anyone's live request; its stream ends with `cancelled` by `teacher`."""
    record = service.store.get(request_id)
    if record is None:
        raise ApiError(ErrorCode.NOT_FOUND)
    cancelled = service.cancel(record, by="teacher")
    return CancelAnswer(**describe(record).model_dump(), cancelled=cancelled)


_FILE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The class's history: JSON Lines (every field) or CSV (one row each).",
        "content": {
            "application/x-ndjson": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


@router.get("/export", response_class=Response, responses=_FILE)
async def export(
    service: Teacher,
    format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",
    since: Annotated[
        str | None, Query(max_length=40, description="A date, date-time or Unix time.")
    ] = None,
) -> Response:
    """Every request since `since` (default: all kept), oldest first, as a file."""
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, str(exc), param="since") from None
    rows = await service.history.since(start)
    lines = jsonl_lines(rows) if format == "jsonl" else csv_lines(rows)
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    stamp = re.sub(r"[^0-9-]", "", time.strftime("%Y-%m-%d"))
    headers = {"Content-Disposition": f'attachment; filename="tlc-class-{stamp}.{format}"'}
    return StreamingResponse(lines, media_type=f"{media}; charset=utf-8", headers=headers)


# ---------------------------------------------------------------------------- the page

_TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}


def _static(name: str) -> Response:
    text = resources.files("tlc_widgets.server").joinpath("static", name).read_text("utf-8")
    kind = _TYPES[name.rpartition(".")[2]]
    return Response(text, media_type=f"{kind}; charset=utf-8")


@page.get("/teacher")
async def teacher_page() -> Response:
    """The teacher's page: it asks for a key (if the server has keys) and uses `/api/class`."""
    return _static("teacher.html")


@page.get("/teacher/login")
async def teacher_login() -> Response:
    """Back to the page once logged in. Not an open path: on a JupyterHub, opening it in a
    browser goes through the Hub's login first, which leaves the cookie the page's calls use."""
    return RedirectResponse("../teacher", status_code=303)


@page.get("/teacher/{name}")
async def teacher_asset(name: Literal["teacher.js", "teacher.css"]) -> Response:
    return _static(name)
