"""What the class's routes answer and take (`/api/me`, `/api/class/*`), as pydantic models.

>>> SessionBody(label="Lab 3").label
'Lab 3'
>>> BudgetBody(prompts=20).model_dump()
{'prompts': 20, 'tokens': 0}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BudgetBody",
    "ClassLive",
    "ClassRow",
    "ClassState",
    "ClassStudents",
    "Me",
    "PauseBody",
    "PromptBody",
    "SessionBody",
    "StudentRow",
]


class Me(BaseModel):
    """`GET /api/me`: who you are, your budget today, the class's mode, prompt and notice."""

    user: str
    role: str
    limited: bool = Field(description="Whether the class rules (pause, budget, prompt) apply.")
    budget: dict[str, Any] | None = Field(
        description="limit, used, left (null: unlimited), resets_at (Unix time) and `text`, "
        "e.g. '7 of 20 prompts left today'; null when not limited."
    )
    class_: dict[str, str] = Field(alias="class", description="mode (open|paused), message.")
    class_prompt: str | None = Field(description="The teacher's instructions for `model`.")
    class_prompts: dict[str, str] = Field(description="Per model ('*': all models).")
    notice: str = Field(description="Who can read your conversations.")


class ClassState(BaseModel):
    """The class as a teacher steers it."""

    mode: str
    message: str
    prompts: dict[str, str] = Field(description="Class prompt per model ('*': all models).")
    notice: str
    budget: dict[str, Any] = Field(description="default, per-student overrides, resets_at.")


class PauseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field("", max_length=500, description="What students read while paused.")


class PromptBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=20_000, description="Instructions; empty removes them.")
    model: str | None = Field(None, description="One model's (null: all models).")


class SessionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field("", max_length=80, description="What students read, e.g. 'Lab 3'.")


class BudgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompts: int = Field(0, ge=0, description="Prompts per day (0: unlimited).")
    tokens: int = Field(0, ge=0, description="Reply tokens per day (0: unlimited).")


class ClassRow(BaseModel):
    """One live request in the teacher's view."""

    id: str
    user: str
    model: str
    status: str
    position: int | None
    waiting_s: float = Field(description="Time in line so far (or before it started).")
    running_s: float | None = Field(description="Time since it started; null while waiting.")
    tokens: int


class ClassLive(BaseModel):
    mode: str
    message: str
    running: list[ClassRow]
    waiting: list[ClassRow]


class StudentRow(BaseModel):
    user: str
    role: str | None = Field(description="Of their last request today (null: before a restart).")
    prompts: int
    tokens: int
    errors: int
    live: int = Field(description="Requests waiting or running now.")
    budget: dict[str, Any] | None = Field(description="As in /api/me; null when not limited.")


class ClassStudents(BaseModel):
    day_start: float = Field(description="When the counts began: midnight, or the session's start.")
    resets_at: float | None = Field(description="The next midnight; null during a session.")
    session: dict[str, Any] | None = Field(None, description="label, started_at; null: by day.")
    students: list[StudentRow]
