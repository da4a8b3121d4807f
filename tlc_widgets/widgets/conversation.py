"""A conversation: the turns so far, the messages sent with the next prompt, and its exports.

    >>> chat = Conversation()
    >>> chat.add_user("Hi")
    >>> chat.add_assistant("Hello!", reasoning="be polite")
    >>> chat.messages("Be brief.")
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}, \
{'role': 'assistant', 'content': 'Hello!'}]

Pure data, no widgets: `ChatPanel` keeps one and shows its `turns` in the transcript.
Reasoning ("thinking") is kept for display and export but never sent back to the model,
as OpenAI-style servers expect.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Conversation", "Turn", "download_link"]


@dataclass(frozen=True)
class Turn:
    """One message in the transcript. `note` marks an incomplete reply ("stopped", an error)."""

    role: str  #: "user" or "assistant"
    content: str
    reasoning: str = ""
    note: str = ""
    #: A prompt that got no reply (refused, or the server was away): not sent as context.
    left_out: bool = False

    def as_view(self) -> dict[str, str]:
        """The dict the transcript's JavaScript renders (empty fields left out: fewer bytes)."""
        view = {"role": self.role, "content": self.content}
        if self.reasoning:
            view["reasoning"] = self.reasoning
        if self.note:
            view["note"] = self.note
        if self.left_out:
            view["left_out"] = "1"
        return view


@dataclass
class Conversation:
    """The turns of one chat, oldest first. `New chat` makes a fresh one."""

    turns: list[Turn] = field(default_factory=list)

    @classmethod
    def from_history(cls, row: dict[str, Any]) -> Conversation:
        """The conversation of a history row: its messages, then the reply it got (marked
        when it did not finish)."""
        chat = cls()
        for message in row["messages"]:
            content = message.get("content")
            text = content if isinstance(content, str) else ""
            if message.get("role") in ("user", "assistant"):
                chat.turns.append(Turn(message["role"], text))
        note = "" if row.get("status") == "done" else str(row.get("outcome") or row["status"])
        chat.add_assistant(row.get("text") or "", row.get("reasoning") or "", note)
        return chat

    def add_user(self, text: str) -> None:
        self.turns.append(Turn("user", text))

    def add_assistant(self, text: str, reasoning: str = "", note: str = "") -> None:
        self.turns.append(Turn("assistant", text, reasoning, note))

    def leave_out_last(self, why: str) -> None:
        """The last prompt got no reply (`why`): keep it on screen, not in the context.

        >>> chat = Conversation([Turn("user", "a very long prompt")])
        >>> chat.leave_out_last("The prompt is too long for this server.")
        >>> chat.messages(), chat.turns[0].note
        ([], 'not sent — The prompt is too long for this server.')
        """
        last = self.turns[-1]
        if last.role == "user":
            self.turns[-1] = Turn("user", last.content, note=f"not sent — {why}", left_out=True)

    def take_left_out(self, index: int) -> str | None:
        """Remove the left-out prompt at `index` (to edit or retry it) and return its text."""
        if 0 <= index < len(self.turns) and self.turns[index].left_out:
            return self.turns.pop(index).content
        return None

    def messages(self, system_prompt: str = "") -> list[dict[str, Any]]:
        """OpenAI-format messages: the system prompt (if any), then every turn.

        A stopped reply is sent as far as it got: the model sees what the learner saw. A
        prompt that was never answered (`left_out`) is not sent.
        """
        head = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
        return head + [{"role": t.role, "content": t.content} for t in self.turns if not t.left_out]

    def export(self, fmt: str, system_prompt: str = "", **settings: Any) -> str:
        """`to_markdown` for "md", `to_json` for "json"."""
        if fmt == "json":
            return self.to_json(system_prompt, **settings)
        if fmt == "md":
            return self.to_markdown(system_prompt, **settings)
        raise ValueError(f"unknown export format {fmt!r}; use 'md' or 'json'")

    def view(self) -> list[dict[str, str]]:
        return [t.as_view() for t in self.turns]

    def to_json(self, system_prompt: str = "", **settings: Any) -> str:
        """The conversation as JSON: settings, then OpenAI messages (+ `reasoning_content`).

        >>> json.loads(Conversation([Turn("user", "Hi")]).to_json(model="m"))["messages"]
        [{'role': 'user', 'content': 'Hi'}]
        """
        messages = self.messages(system_prompt)[: 1 if system_prompt.strip() else 0]
        for turn in self.turns:  # every turn, a left-out prompt too (with its note)
            message: dict[str, Any] = {"role": turn.role, "content": turn.content}
            if turn.reasoning:
                # LM Studio's field name for reasoning; OpenAI-compatible readers know it.
                message["reasoning_content"] = turn.reasoning
            if turn.note:
                message["note"] = turn.note
            messages.append(message)
        document = {"exported_at": _now(), **settings, "messages": messages}
        return json.dumps(document, ensure_ascii=False, indent=2)

    def to_markdown(self, system_prompt: str = "", **settings: Any) -> str:
        """The conversation as a Markdown document a person can read or paste.

        >>> print(Conversation([Turn("user", "Hi")]).to_markdown(model="m").splitlines()[0])
        # Chat with m
        """
        model = settings.pop("model", None) or "the default model"
        facts = " · ".join(f"{k.replace('_', ' ')} {v}" for k, v in settings.items() if v)
        lines = [
            f"# Chat with {model}",
            "",
            f"_Exported {_now()}" + (f" · {facts}_" if facts else "_"),
        ]
        if system_prompt.strip():
            lines += ["", "**System prompt:** " + system_prompt.strip()]
        for turn in self.turns:
            lines += ["", "## You" if turn.role == "user" else "## Assistant", ""]
            if turn.reasoning:
                lines += [
                    "<details><summary>Reasoning</summary>",
                    "",
                    turn.reasoning,
                    "",
                    "</details>",
                    "",
                ]
            lines.append(turn.content)
            if turn.note:
                lines += ["", f"_({turn.note})_"]
        return "\n".join(lines) + "\n"


def download_link(text: str, fmt: str) -> str:
    """An `<a download>` holding `text` as a data: URL: one click saves it (JupyterLab too).

    >>> download_link("# Hi", "md").startswith('<a download="chat-')
    True
    """
    mime = {"md": "text/markdown", "json": "application/json"}.get(fmt, "text/plain")
    data = base64.b64encode(text.encode()).decode()
    name = html.escape(f"chat-{datetime.now().strftime('%Y%m%d-%H%M%S')}.{fmt}")
    return f'<a download="{name}" href="data:{mime};base64,{data}">⬇ {name}</a>'


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
