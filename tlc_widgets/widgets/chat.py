"""`ChatPanel`: chat with a model through the shared queue, from a notebook.

    >>> panel = ChatPanel()                        # the server at TLC_SERVER_URL
    >>> panel                                      # doctest: +SKIP  (displays the panel)
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
import time
from collections.abc import Coroutine
from contextlib import aclosing
from typing import Any, Literal

import ipywidgets as widgets

from ..client import QueueClient, RequestCancelled, RequestFailed, Submitted, TLCError
from ..errors import error_for
from ..protocol import Cancelled, Delta, Done, ErrorEvent, Queued
from . import inflight
from .conversation import Conversation, download_link
from .loop import on_loop, owner_loop
from .prompt import PromptBox
from .settings import ModelSettings
from .status import Phase, Progress, StatusTracker, status_html
from .transcript import Transcript

__all__ = ["ChatPanel"]

#: Seconds between tries to reach the server while it does not answer.
RETRY_S = 5.0
#: The status line changes at most this often while tokens stream (the text stays exact).
STATUS_EVERY_S = 0.25


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
        self.status_line = widgets.HTML()
        self.status_line.add_class("tlc-status")
        self.prompt = PromptBox()
        self.prompt.on_submit(self._submitted)
        self.stop_button = self._button("Stop", "stop", self.stop)
        self.new_chat_button = self._button("New chat", "plus", self.new_chat)
        self.export_md_button = self._button("Export .md", "download", self._offer_download, "md")
        self.export_json_button = self._button(
            "Export .json", "download", self._offer_download, "json"
        )
        self.downloads = widgets.HTML()
        self.downloads.add_class("tlc-downloads")
        buttons = [self.stop_button, self.new_chat_button, self.export_md_button]
        toolbar = widgets.HBox([*buttons, self.export_json_button, self.downloads])
        super().__init__([self.settings, self.transcript, self.status_line, self.prompt, toolbar])
        self.add_class("tlc-chat")
        self._conversation = Conversation()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._current: asyncio.Task[str] | None = None
        #: The id of the latest request on the server (None before the first is accepted).
        self.request_id: str | None = None
        self._progress = Progress(Phase.IDLE, "ready")
        self._shown_at = 0.0
        self._show(Progress(Phase.IDLE, "connecting to the queue server…"))
        self._models_task: asyncio.Task[None] | None = None
        if self._loop is not None:
            self._models_task = self._spawn(self._watch_models())

    # ------------------------------------------------------------------ Python API

    @property
    def status(self) -> str:
        """The status line's text, e.g. 'queued — position 3 of 7 · ETA ~20 s'."""
        return self._progress.text

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
            self._current.cancel()

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
        settings = self.settings.values()
        system = self.settings.system_prompt
        if fmt == "json":
            return self._conversation.to_json(system, **settings)
        if fmt == "md":
            return self._conversation.to_markdown(system, **settings)
        raise ValueError(f"unknown export format {fmt!r}; use 'md' or 'json'")

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
        if self._models_task is not None:
            self._models_task.cancel()
        if self._owns_client and (self._loop or owner_loop()) is not None:
            self._spawn(self._close_client())

    # ------------------------------------------------------------------ one request

    async def _converse(self, text: str, previous: asyncio.Task[str] | None) -> str:
        if previous is not None:
            await asyncio.wait([previous])  # its last words go in the transcript first
        if not self.settings.loaded:
            await self._try_load_models()  # so the model's preset applies to this prompt
        me = asyncio.current_task()
        chat = self._conversation
        tracker = StatusTracker()

        def show(progress: Progress, throttle: bool = False) -> None:
            if self._current is me:  # a newer prompt or New chat owns the line now
                self._show(progress, throttle)

        chat.add_user(text)
        self.transcript.add_user(text)
        self.prompt.busy = True
        show(tracker.sending())
        content: list[str] = []
        reasoning: list[str] = []
        request_id, note = None, ""
        try:
            submitted = await self._submit(self.messages)
            request_id = self.request_id = submitted.id
            show(tracker.update(Queued(submitted.position, submitted.waiting, submitted.eta_s)))
            self.transcript.begin_reply()
            async with aclosing(self.client.stream(submitted.id)) as events:
                async for event in events:
                    if isinstance(event, Delta):
                        content.append(event.content or "")
                        reasoning.append(event.reasoning or "")
                        self.transcript.add_delta(event.content, event.reasoning)
                    show(tracker.update(event), throttle=isinstance(event, Delta))
                    if isinstance(event, ErrorEvent):
                        raise error_for(event.code, event.message)
                    if isinstance(event, Cancelled):
                        raise RequestCancelled(tracker.progress.text, code="cancelled")
                    if isinstance(event, Done):
                        break
                else:
                    raise RequestFailed("The reply ended without a final event.", code="internal")
        except TLCError as exc:
            note = exc.message
            show(tracker.fail(exc))
            raise
        except asyncio.CancelledError:
            note = "stopped"
            if request_id is not None:  # tell the server, so the slot or the place frees now
                self._spawn(inflight.cancel(self.client, request_id))
                request_id = None
            show(tracker.stopped())
            raise
        finally:
            if request_id is not None:
                inflight.untrack(request_id)  # it ended on the server: nothing to cancel
            if self._current is me:
                self.prompt.busy = False
            reply, thought = "".join(content), "".join(reasoning)
            if chat is self._conversation:  # not after New chat: that transcript is gone
                if reply or thought:
                    chat.add_assistant(reply, thought, note)
                    self.transcript.end_reply(chat.turns[-1])
                else:
                    self.transcript.end_reply(None)
        return reply

    async def _submit(self, messages: list[dict[str, Any]]) -> Submitted:
        """POST the request; shielded, so a Stop meanwhile still learns the id to cancel."""
        values = self.settings.values()
        post = asyncio.ensure_future(self.client.submit(messages=messages, **values))
        try:
            submitted = await asyncio.shield(post)
        except asyncio.CancelledError:
            self._spawn(inflight.cancel_when_accepted(self.client, post))
            raise
        inflight.track(self.client.url, submitted.id)
        return submitted

    # ------------------------------------------------------------------ models

    async def _watch_models(self) -> None:
        """Read the model list; while the server does not answer, say so and try again."""
        while True:
            if await self._try_load_models():
                return
            await asyncio.sleep(RETRY_S)

    async def _try_load_models(self) -> bool:
        try:
            models = await self.load_models()
        except TLCError as exc:
            if not self._busy():
                self._show(Progress(Phase.ERROR, exc.message))
            return False
        if not self._busy():
            if models:
                self._show(Progress(Phase.IDLE, "ready"))
            else:
                sentence = "The queue server lists no models; load one in LM Studio."
                self._show(Progress(Phase.ERROR, sentence))
        return bool(models)

    # ------------------------------------------------------------------ plumbing

    def _button(self, description: str, icon: str, action: Any, *args: Any) -> widgets.Button:
        button = widgets.Button(description=description, icon=icon)
        # Clicks arrive in a comm subshell's thread in JupyterLab 4.6: run them on our loop.
        button.on_click(lambda _: on_loop(self._loop, action, *args))
        return button

    def _submitted(self, text: str) -> None:
        self.send(text)  # the task reports through the status line; nobody awaits it

    def _busy(self) -> bool:
        return self._current is not None and not self._current.done()

    def _show(self, progress: Progress, throttle: bool = False) -> None:
        """Update the status line; while tokens stream, at most every STATUS_EVERY_S."""
        now = time.monotonic()
        same = progress.phase is self._progress.phase
        self._progress = progress
        if throttle and same and now - self._shown_at < STATUS_EVERY_S:
            return
        self._shown_at = now
        self.status_line.value = status_html(progress)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        # Made outside any loop (a script), the panel adopts the first loop that uses it.
        self._loop = self._loop or asyncio.get_running_loop()
        task = self._loop.create_task(coro)
        self._tasks.add(task)  # a task nobody references may be garbage-collected mid-way
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # shown in the status line already; don't log it again

    async def _close_client(self) -> None:
        # Outstanding DELETEs need the connection pool: let them finish first.
        pending = [t for t in self._tasks if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending)
        await self.client.aclose()

    def _offer_download(self, fmt: Literal["md", "json"]) -> None:
        self.downloads.value = download_link(self.export(fmt), fmt)
