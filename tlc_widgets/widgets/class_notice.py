"""What the class's rules mean for this student, above the prompt box: the budget left, a
pause with the teacher's message, the teacher's instructions, and who reads the chats.

    >>> me = {"limited": True, "budget": {"text": "7 of 20 prompts left today"},
    ...       "class": {"mode": "open", "message": ""}, "class_prompt": "Answer in French.",
    ...       "notice": "Your teacher can read your conversations."}
    >>> print(notice_html(me))   # doctest: +NORMALIZE_WHITESPACE
    <div class="tlc-notice-line">7 of 20 prompts left today · Your teacher can read your
    conversations.</div><details class="tlc-notice-prompt"><summary>Your teacher has set
    instructions for this chat</summary>Answer in French.</details>

`ChatPanel` reads `/api/me` when it starts, after every reply (the budget moved), and
whenever the queue's snapshot says the class was paused or opened — so a pause reaches every
open panel at once, with the teacher's words.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from ..errors import TLCError

__all__ = ["ClassNotice", "ClassWatch", "notice_html"]


def notice_html(me: dict[str, Any]) -> str:
    """The notice for one `/api/me` answer (empty when no class rules apply)."""
    parts: list[str] = []
    klass = me.get("class") or {}
    if klass.get("mode") == "paused" and me.get("limited"):
        message = klass.get("message") or "Your teacher has paused the chat for now."
        parts.append(f'<div class="tlc-notice-paused">⏸ {html.escape(message)}</div>')
    line = [str((me.get("budget") or {}).get("text") or "")] if me.get("limited") else []
    line.append(str(me.get("notice") or ""))
    text = " · ".join(html.escape(t) for t in line if t)
    if text:
        parts.append(f'<div class="tlc-notice-line">{text}</div>')
    if me.get("class_prompt"):
        parts.append(
            '<details class="tlc-notice-prompt"><summary>Your teacher has set instructions '
            f"for this chat</summary>{html.escape(me['class_prompt'])}</details>"
        )
    return "".join(parts)


class ClassNotice(widgets.HTML):  # type: ignore[misc]
    """The notice as a widget; `show(me)` replaces it, `mode` is the class mode last seen."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("tlc-notice")
        self.mode = "open"

    def show(self, me: dict[str, Any]) -> None:
        self.mode = str((me.get("class") or {}).get("mode") or "open")
        self.value = notice_html(me)


class ClassWatch:
    """Keeps a `ClassNotice` true: reads `/api/me` now and on `refresh()`, and follows the
    queue's snapshots so a teacher's pause (or reopening) shows in every panel at once."""

    def __init__(self, client: Any, notice: ClassNotice, model: Any) -> None:
        self.client, self.notice, self._model = client, notice, model

    async def refresh(self) -> None:
        """Read `/api/me` again; a server without it (an older one) shows no notice."""
        try:
            self.notice.show(await self.client.me(self._model()))
        except TLCError:
            pass  # the status line already says when the server cannot be reached

    async def follow(self) -> None:
        """Refresh now, then whenever the class's mode or message changes."""
        await self.refresh()
        seen: tuple[object, object] | None = None
        try:
            async for snapshot in self.client.queue_events():
                mode = (snapshot.get("class_mode"), snapshot.get("class_message"))
                if seen is not None and mode != seen:
                    await self.refresh()
                seen = mode
        except TLCError:
            pass  # the server went away: the notice keeps what it last knew
