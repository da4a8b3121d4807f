"""`ChatPanel`: chat with a model through the shared queue, from a notebook.

    >>> panel = ChatPanel()                        # the server at TLC_SERVER_URL
    >>> panel                                      # doctest: +SKIP
    >>> reply = await panel.send("Tell me about the rabbit")      # doctest: +SKIP
    >>> panel.status                               # doctest: +SKIP
    'done · 57 tokens in 0.6 s (waited 0.0 s)'

The buttons and the Python API do the same things: `send(text)` (Enter / Send),
`stop()` (Stop), `new_chat()` (New chat), `export("md" | "json")` (Export). Everything runs
as asyncio tasks on the kernel's loop, so the kernel stays free while a reply streams; the
panel keeps a reference to every task it starts. Stopping — with Stop, a new prompt,
`close()`, or the kernel exiting — also cancels the request on the server, so it gives up
its place in line or its slot at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Literal

import ipywidgets as widgets

from ..client import (
    QueueClient,
    ServerUnavailable,
    Submitted,
    TLCError,
    UpstreamUnavailable,
    follow,
)
from ..protocol import Delta, Event, Queued
from . import inflight
from .class_notice import ClassNotice, ClassWatch
from .conversation import Conversation
from .loop import Tasks, on_loop, owner_loop
from .prompt import PromptBox
from .reach import ServerWatch
from .settings import ModelSettings
from .status import Phase, Progress, StatusTracker
from .status_line import StatusLine
from .toolbar import ChatToolbar
from .transcript import Transcript

__all__ = ["ChatPanel"]


class ChatPanel(widgets.VBox):  # type: ignore[misc]
    """A chat with one model, through the queue. See the module docstring for an example."""

    def __init__(
        self, client: QueueClient | None = None, *, model: str | None = None, url: str | None = None
    ) -> None:
        if client is not None and url is not None:
            raise ValueError("give a client or a url, not both")
        self.client = client or QueueClient(url)
        self._owns_client = client is None
        # The loop of the cell that made the panel; its tasks and its HTTP client live there.
        self._loop = owner_loop()
        self.settings = ModelSettings(model)
        self.transcript = Transcript()
        self.status_line = StatusLine()
        self.prompt = PromptBox()
        self.prompt.on_submit(self._submitted)
        self.transcript.on_action(self._turn_action)
        self.toolbar = ChatToolbar(
            stop=self.stop, new_chat=self.new_chat, export=self.export, loop=self._loop
        )
        self.stop_button = self.toolbar.stop_button
        self.new_chat_button = self.toolbar.new_chat_button
        self.export_md_button = self.toolbar.export_md_button
        self.export_json_button = self.toolbar.export_json_button
        self.downloads = self.toolbar.downloads
        self.notice = ClassNotice()  # budget, a pause, the teacher's instructions (/api/me)
        self.class_watch = ClassWatch(self.client, self.notice, lambda: self.settings.model)
        parts = [self.settings, self.transcript, self.status_line, self.notice, self.prompt]
        parts.append(self.toolbar)
        super().__init__(parts)
        self.add_class("tlc-chat")
        self._conversation = Conversation()
        self._tasks = Tasks(self._loop)
        self._current: asyncio.Task[str] | None = None
        #: The id of the latest request on the server (None before the first is accepted).
        self.request_id: str | None = None
        self._show(Progress(Phase.IDLE, "connecting to the queue server…"))
        #: Reads the model list; retries (every `watch.retry_s`) while the server is away.
        self.watch = ServerWatch(self.load_models, self.status_line, self._busy)
        # The model list (until loaded) and the class's notice (as long as the panel lives).
        watchers = (self.watch.until_loaded, self.class_watch.follow)
        self._watchers = [self._spawn(w()) for w in watchers] if self._loop else []

    # ------------------------------------------------------------------ Python API

    @property
    def status(self) -> str:
        """The status line's text, e.g. 'queued — position 3 of 7 · ETA ~20 s'."""
        return self.status_line.text

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation as OpenAI messages: the system prompt, then every turn."""
        return self._conversation.messages(self.settings.system_prompt)

    @property
    def model(self) -> str | None:
        return self.settings.model

    @model.setter
    def model(self, model_id: str) -> None:
        self.settings.model = model_id

    def send(self, text: str) -> asyncio.Task[str]:
        """Send `text` with the conversation so far; the task resolves to the reply's text.

        A reply still streaming is stopped first. The task raises the `TLCError` the request
        ended with, or `asyncio.CancelledError` if it was stopped.
        """
        if not text.strip():
            raise ValueError("nothing to send: the prompt is empty")
        previous = self._current
        if previous is not None and not previous.done():
            previous.cancel()
        task = self._spawn(self._converse(text, previous))
        self._current = task
        return task

    def stop(self) -> None:
        """Stop the reply (or the wait in line), here and on the server. Idle: does nothing."""
        if self._current is not None and not self._current.done():
            self._current.cancel()  # follow() sends the DELETE before the task ends
            self._show(StatusTracker().stopped())  # said at once, not after the DELETE

    def new_chat(self) -> None:
        """Stop whatever runs and start an empty conversation (the settings stay)."""
        self.stop()
        self._current = None  # the stopped task no longer owns the status line
        self._conversation = Conversation()
        self.transcript.clear()
        self.downloads.value = ""
        self._show(Progress(Phase.IDLE, "ready — new chat"))

    def export(self, fmt: Literal["md", "json"] = "md") -> str:
        """The conversation as Markdown (`"md"`) or JSON (`"json"`) text."""
        return self._conversation.export(fmt, self.settings.system_prompt, **self.settings.values())

    async def load(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """Reload a past conversation from the server's history (default: your latest) and
        carry on from it. Returns the conversation's messages."""
        if request_id is None:
            latest = await self.client.history(limit=1, user=self.client.user)
            if not latest:
                raise LookupError("no past conversation in the server's history yet")
            request_id = latest[0]["id"]
        row = await self.client.history_item(request_id)
        self.new_chat()
        self._conversation = Conversation.from_history(row)
        with contextlib.suppress(ValueError):  # a model no longer offered: keep the current
            self.model = row["model"]  # (picking a model applies its preset: do it first)
        system = [m for m in row["messages"] if m.get("role") == "system"]
        if system:
            self.settings.system_prompt_box.value = str(system[0].get("content") or "")
        self.transcript.turns = self._conversation.view()
        self._show(Progress(Phase.IDLE, f"loaded a past conversation ({row['status']})"))
        return self.messages

    async def load_models(self) -> list[dict[str, Any]]:
        """(Re)read the model list from the server into the picker."""
        models = await self.client.models()
        self.settings.set_models(models)
        return models

    def close(self) -> None:
        """Close the panel; a request in flight is cancelled on the server too."""
        on_loop(self._loop, self._shut_down)
        for child in (self.settings, self.transcript, self.status_line, self.prompt):
            child.close()
        super().close()

    def _shut_down(self) -> None:
        self.stop()
        for task in self._watchers:
            task.cancel()
        if self._owns_client and (self._loop or owner_loop()) is not None:
            self._spawn(self._close_client())

    # ------------------------------------------------------------------ one request

    async def _converse(self, text: str, previous: asyncio.Task[str] | None) -> str:
        if previous is not None:
            await asyncio.wait([previous])  # its last words go in the transcript first
        if not self.settings.loaded:
            await self.watch.try_load()  # so the model's preset applies to this prompt
        me = asyncio.current_task()
        chat = self._conversation
        tracker = StatusTracker()

        def show(progress: Progress, throttle: bool = False) -> None:
            if self._current is me:  # a newer prompt or New chat owns the line now
                self._show(progress, throttle)

        mine: str | None = None  # this prompt's request id, once the server has it

        def accepted(submitted: Submitted) -> None:
            nonlocal mine
            self.request_id = mine = submitted.id
            inflight.track(self.client.url, submitted.id)  # the kernel's exit hook cancels it
            show(tracker.update(Queued(submitted.position, submitted.waiting, submitted.eta_s)))
            self.transcript.begin_reply()

        def event(event: Event) -> None:
            if isinstance(event, Delta):
                content.append(event.content or "")
                reasoning.append(event.reasoning or "")
                self.transcript.add_delta(event.content, event.reasoning)
            show(tracker.update(event), throttle=isinstance(event, Delta))

        chat.add_user(text)
        self.transcript.add_user(text)
        self._set_busy(True)
        show(tracker.sending())
        content: list[str] = []
        reasoning: list[str] = []
        note = ""
        try:
            return (
                await follow(
                    self.client,
                    on_accepted=accepted,
                    on_event=event,
                    messages=self.messages,
                    **self.settings.values(),
                )
            ).text
        except TLCError as exc:
            note = exc.message
            if tracker.progress.phase not in (Phase.ERROR, Phase.STOPPED):
                show(tracker.fail(exc))  # refused, or unreachable: no event said it
            if isinstance(exc, ServerUnavailable | UpstreamUnavailable) and self._current is me:
                self._spawn(self.watch.clear_when_back(self.status_line.progress))
            raise
        except asyncio.CancelledError:
            note = "stopped"
            show(tracker.stopped())
            raise
        finally:
            if mine is not None:
                inflight.untrack(mine)  # it ended on the server (or follow() cancelled it)
            if self._current is me:
                self._set_busy(False)
            self._spawn(self.class_watch.refresh())  # the budget moved (or a pause said no)
            reply, thought = "".join(content), "".join(reasoning)
            if chat is self._conversation:  # not after New chat: that transcript is gone
                if reply or thought:
                    chat.add_assistant(reply, thought, note)
                    self.transcript.end_reply(chat.turns[-1])
                else:
                    self.transcript.end_reply(None)
                    if note and note != "stopped":
                        # No reply: the prompt was refused or never reached the model. It must
                        # not become context for the next prompt; the learner can edit or retry.
                        chat.leave_out_last(note)
                        self.transcript.turns = chat.view()

    # ------------------------------------------------------------------ plumbing

    def _set_busy(self, busy: bool) -> None:
        self.prompt.busy = busy  # Send is disabled while a reply runs
        self.toolbar.busy = busy  # Stop is active only then

    def _turn_action(self, kind: str, index: int) -> None:
        """Edit or Retry on a prompt that was not sent: take it out, then resend or refill."""
        text = self._conversation.take_left_out(index)
        if text is None:
            return  # not a left-out prompt (any more)
        self.transcript.turns = self._conversation.view()
        if kind == "retry":
            self.send(text)
        else:
            self.prompt.fill(text)

    def _submitted(self, text: str) -> None:
        self.send(text)  # the task reports through the status line; nobody awaits it

    def _busy(self) -> bool:
        return self._current is not None and not self._current.done()

    def _show(self, progress: Progress, throttle: bool = False) -> None:
        self.status_line.show(progress, throttle)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = self._tasks.spawn(coro)
        self._loop = self._tasks.loop  # made outside any loop: the first loop that spawns
        return task

    async def _close_client(self) -> None:
        await self._tasks.wait_others()  # outstanding DELETEs need the connection pool
        await self.client.aclose()
