"""The class: open or paused with the teacher's message, the class prompt, the budgets.

    >>> from tlc_widgets.config import Settings
    >>> room = Classroom(Settings(_env_file=None, class_prompt="Answer in French."), keys_on=True)
    >>> room.with_prompt([{"role": "user", "content": "Hi"}], "m", Role.STUDENT)[0]["content"]
    'Answer in French.'
    >>> room.pause("Chat is paused for the quiz until 10:30")
    >>> room.admit("ada", Role.STUDENT)
    Traceback (most recent call last):
    ...
    tlc_widgets.server.api_error.ApiError: class_paused: Chat is paused for the quiz until 10:30
    >>> room.admit("tina", Role.TEACHER)  # teachers and admins still get through

**Who the class rules govern:** students; and, without keys (every caller is the trusted
local admin, yet the users are a class), everyone — with the defaults (no budget, no class
prompt, open) that changes nothing.

**A pause** refuses what students send from then on (423 `class_paused`, with the teacher's
message). What was accepted before it is never lost: it stays in line and runs as usual; a
teacher who wants it stopped cancels it from the live view.

**The class prompt** is merged into the conversation on the server: prepended to the first
system message (or as a new first system message), so there is still one system message
for chat templates that allow only one, and a student cannot remove it. A model's own class
prompt replaces the one for all models. A conversation that already starts with it (one
reloaded from the history) does not get it twice.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from ..config import Settings
from ..protocol import ErrorCode, ErrorEvent
from .api_error import ApiError
from .auth import Role
from .budgets import Budget, Budgets
from .history import History
from .records import Record

__all__ = ["ALL_MODELS", "ClassMode", "Classroom"]

ALL_MODELS = "*"  #: the key of the class prompt for every model


class ClassMode(StrEnum):
    OPEN = "open"  #: students chat
    PAUSED = "paused"  #: students are refused with the teacher's message


class Classroom:
    def __init__(
        self,
        settings: Settings,
        keys_on: bool,
        on_change: Callable[[], None] | None = None,
        on_steer: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.keys_on = keys_on
        self.mode = ClassMode.OPEN
        self.message = ""  #: the teacher's words while paused
        self.notice = settings.class_notice
        self.prompts: dict[str, str] = {}  #: model (or ALL_MODELS) -> instructions
        if settings.class_prompt.strip():
            self.prompts[ALL_MODELS] = settings.class_prompt.strip()
        self.budgets = Budgets(
            Budget(prompts=settings.budget_prompts_per_day, tokens=settings.budget_tokens_per_day)
        )
        self._on_change = on_change or (lambda: None)
        #: told of each teacher's change, as the fields it set (with --redis: every
        #: replica applies them, `steer`); a field set to None is removed
        self.on_steer: Callable[[dict[str, Any]], None] = on_steer or (lambda change: None)

    def governs(self, role: Role) -> bool:
        """Whether the class rules (pause, budget, class prompt) apply to this role."""
        return role is Role.STUDENT or not self.keys_on

    async def recount(self, history: History) -> None:
        """Today's counts from the history, so a restart gives no budget back."""
        self.budgets.load(await history.usage_since(self.budgets.day_start))

    def start_session(self, label: str) -> None:
        """Budgets count from now, from zero, until the teacher ends the session."""
        self.budgets.start_session(label)
        self._steered({"session": self.budgets.session})

    async def end_session(self, history: History) -> None:
        """Back to the day's budgets, with the day's counts (the session's included)."""
        self.budgets.end_session()
        await self.recount(history)
        self._steered({"session": None})

    # ------------------------------------------------------------------ admission

    def admit(self, user: str, role: Role) -> None:
        """Refuse a governed caller while paused (423) or past the budget (429)."""
        if not self.governs(role):
            return
        if self.mode is ClassMode.PAUSED:
            raise ApiError(ErrorCode.CLASS_PAUSED, self.message or None)
        self.budgets.check(user)

    def accepted(
        self, record: Record, role: Role, inner: Callable[[Record], None]
    ) -> Callable[[Record], None]:
        """Count an accepted request, and return its `on_change` that also counts how it
        ended (reply tokens, errors). Everyone is counted, so the teacher sees everyone."""
        self.budgets.count_prompt(record.user, role.value)

        def on_change(changed: Record) -> None:
            inner(changed)
            if changed.status.terminal:
                error = isinstance(changed.outcome, ErrorEvent)
                self.budgets.count_end(changed.user, changed.tokens, error)

        return on_change

    # ------------------------------------------------------------------ class prompt

    def prompt_for(self, model: str) -> str | None:
        return self.prompts.get(model) or self.prompts.get(ALL_MODELS)

    def with_prompt(
        self, messages: list[dict[str, Any]], model: str, role: Role
    ) -> list[dict[str, Any]]:
        """The conversation with the class prompt merged in (for governed callers)."""
        prompt = self.prompt_for(model)
        if prompt is None or not self.governs(role):
            return messages
        first = messages[0] if messages else None
        if first is None or first.get("role") != "system":
            return [{"role": "system", "content": prompt}, *messages]
        content = first.get("content")
        if isinstance(content, list):
            text = "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
            if text.startswith(prompt):
                return messages
            merged: Any = [{"type": "text", "text": prompt + "\n\n"}, *content]
        else:
            text = content or ""
            if text.startswith(prompt):
                return messages
            merged = f"{prompt}\n\n{text}" if text else prompt
        return [{**first, "content": merged}, *messages[1:]]

    # ------------------------------------------------------------------ steering

    def pause(self, message: str) -> None:
        self.mode, self.message = ClassMode.PAUSED, message.strip()
        self._steered({"mode": self.mode.value, "message": self.message})

    def resume(self) -> None:
        self.mode, self.message = ClassMode.OPEN, ""
        self._steered({"mode": self.mode.value, "message": ""})

    def set_budget(self, user: str | None, budget: Budget | None) -> None:
        """The class's budget (`user` None), or one student's (`budget` None: theirs goes)."""
        self.budgets.set(user, budget)
        value = None if user and budget is None else _budget(self.budgets.of(user or ""))
        self._steered({f"budget:{user or ALL_MODELS}": value})

    def set_prompt(self, text: str, model: str | None) -> None:
        """Set (or, with empty text, remove) the class prompt for `model` (None: all)."""
        key = model or ALL_MODELS
        if text.strip():
            self.prompts[key] = text.strip()
        else:
            self.prompts.pop(key, None)
        self._steered({f"prompt:{key}": self.prompts.get(key)})

    def _steered(self, change: dict[str, Any]) -> None:
        self._on_change()
        self.on_steer(change)

    async def steer(self, change: dict[str, Any], history: History) -> None:
        """Apply a teacher's change made on another replica (the fields `on_steer` got
        there) without sharing it again; a session started or ended there starts or ends
        here (an end re-reads this replica's history for the day's counts).

        >>> import anyio
        >>> room, other = (Classroom(Settings(_env_file=None), keys_on=True) for _ in "ab")
        >>> changes = []
        >>> other.on_steer = changes.append
        >>> other.pause("Quiz until 10:30"); other.set_budget("ann", Budget(5, 100))
        >>> for change in changes:
        ...     anyio.run(room.steer, change, History(""))
        >>> room.mode.value, room.message, room.budgets.of("ann").prompts
        ('paused', 'Quiz until 10:30', 5)
        """
        for field, value in change.items():
            kind, _, name = field.partition(":")
            if field == "mode":
                self.mode = ClassMode(value)
            elif field == "message":
                self.message = value
            elif kind == "prompt" and value is None:
                self.prompts.pop(name, None)
            elif kind == "prompt":
                self.prompts[name] = value
            elif kind == "budget":
                who = None if name == ALL_MODELS else name
                self.budgets.set(who, None if value is None else Budget(**value))
            elif field == "session" and value is not None:
                self.budgets.start_session(value["label"], value["started_at"])
            elif field == "session" and self.budgets.session is not None:
                self.budgets.end_session()
                await self.recount(history)
        self._on_change()

    # ------------------------------------------------------------------ reading

    def state(self) -> dict[str, Any]:
        """The class as the teacher sees it."""
        return {
            "mode": self.mode.value,
            "message": self.message,
            "prompts": dict(self.prompts),
            "notice": self.notice,
            "budget": {
                "default": _budget(self.budgets.default),
                "students": {u: _budget(b) for u, b in sorted(self.budgets.overrides.items())},
                "resets_at": self.budgets.resets_at,
                "session": self.budgets.session,
            },
        }

    def me(self, user: str, role: Role, model: str | None) -> dict[str, Any]:
        """What `/api/me` tells a caller about themselves and the class."""
        governed = self.governs(role)
        prompts = (
            {m: p for m, p in self.prompts.items() if model is None or m in (model, ALL_MODELS)}
            if governed
            else {}
        )
        return {
            "user": user,
            "role": role.value,
            "limited": governed,
            "budget": self.budgets.left(user) if governed else None,
            "class": {"mode": self.mode.value, "message": self.message},
            "class_prompt": self.prompt_for(model) if governed and model else None,
            "class_prompts": prompts,
            "notice": self.notice,
        }


def _budget(budget: Budget) -> dict[str, int]:
    return {"prompts": budget.prompts, "tokens": budget.tokens}
