"""`TeacherPanel`: the teacher's view of the class, in a notebook.

    >>> from tlc_widgets import TeacherPanel
    >>> panel = TeacherPanel()                     # the server at TLC_SERVER_URL
    >>> panel                                      # doctest: +SKIP
    >>> panel.close()                              # stops polling

What `/teacher` shows, in JupyterLab: who waits and who runs and for how long; per student
today their prompts, tokens, budget left and errors; a student's conversations (Read);
pause and resume with a message; budgets; the class prompt; cancel a request; export the
class's history to a file beside the notebook. The buttons and the Python API do the same:

    >>> await panel.pause("Chat is paused for the quiz until 10:30")  # doctest: +SKIP
    >>> await panel.export("csv")                                     # doctest: +SKIP

The kernel does the talking (`teacher_sync.py`, with the chat panel's identity); the view
(`teacher.js`, `teacher.css`) only draws the traits and sends actions. A student who opens
it is told, in a sentence, that the view is for teachers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..client.teacher import ClassClient
from .loop import Tasks, on_loop, owner_loop
from .teacher_sync import ClassSync

__all__ = ["TeacherPanel"]

_HERE = Path(__file__).parent
#: Seconds between looks at the class: live enough for a classroom, light on the server
#: (three small GETs per open view).
INTERVAL_S = 2.0


class TeacherPanel(anywidget.AnyWidget):  # type: ignore[misc]
    """The class, live. See the module docstring; the traits are the server's answers."""

    _esm = _HERE / "teacher.js"
    _css = _HERE / "teacher.css"

    #: `/api/class/live`: mode, message, running and waiting requests (for how long).
    live = traitlets.Dict().tag(sync=True)
    #: `/api/class/students`: per user today, and when the budgets reset.
    students = traitlets.Dict().tag(sync=True)
    #: `/api/class`: mode, message, class prompts, budgets, the notice students get.
    klass = traitlets.Dict().tag(sync=True)
    #: The models the server offers, `{id, name}`, for the class prompt's picker.
    models = traitlets.List(traitlets.Dict()).tag(sync=True)
    #: The student being read: `{user, requests}` (newest first), or empty.
    reader = traitlets.Dict().tag(sync=True)
    #: Why the class cannot be shown now (a sentence), or "".
    error = traitlets.Unicode("connecting to the queue server…").tag(sync=True)
    #: The server refused this caller (401/403): the view shows only `error`.
    denied = traitlets.Bool(False).tag(sync=True)
    #: The last action's outcome: `{text, error, path}` (`path`: the file an export wrote).
    notice = traitlets.Dict().tag(sync=True)
    #: When the class was last read (Unix seconds).
    updated = traitlets.Float(0.0).tag(sync=True)

    def __init__(
        self,
        client: ClassClient | None = None,
        *,
        url: str | None = None,
        interval_s: float = INTERVAL_S,
        folder: str | Path | None = None,
    ) -> None:
        if client is not None and url is not None:
            raise ValueError("give a client or a url, not both")
        if interval_s <= 0:
            raise ValueError("interval_s must be more than 0 seconds")
        super().__init__()
        self.add_class("tlc-teacher")
        self.client = client or ClassClient(url)
        self._owns_client = client is None
        # The kernel starts in the notebook's folder: exports land beside the notebook.
        self.folder = Path(folder) if folder is not None else Path.cwd()
        self.sync = ClassSync(self, self.client, interval_s, self.folder)
        self._loop = owner_loop()
        self._tasks = Tasks(self._loop)
        self.on_msg(self._on_view_message)
        if self._loop is not None:  # no loop (a plain script): await `refresh()` yourself
            self._poller: asyncio.Task[Any] | None = self._tasks.spawn(self.sync.poll_forever())
        else:
            self._poller = None

    # ------------------------------------------------------------------ Python API

    def refresh(self) -> asyncio.Task[None]:
        """Read the class now (and poll again if the server had refused this caller)."""
        return self.act({"k": "refresh"})

    def pause(self, message: str) -> asyncio.Task[None]:
        """Refuse students' new requests with `message`; what is in line still runs."""
        return self.act({"k": "pause", "message": message})

    def resume(self) -> asyncio.Task[None]:
        return self.act({"k": "resume"})

    def set_prompt(self, text: str, model: str | None = None) -> asyncio.Task[None]:
        """Instructions for every student request (to `model`, else all); "" removes."""
        return self.act({"k": "prompt", "text": text, "model": model})

    def set_budget(
        self, prompts: int = 0, tokens: int = 0, user: str | None = None
    ) -> asyncio.Task[None]:
        """A daily budget for the class (or one `user`); 0: no limit."""
        return self.act({"k": "budget", "prompts": prompts, "tokens": tokens, "user": user})

    def start_session(self, label: str = "") -> asyncio.Task[None]:
        """Budgets per session: everyone from zero now, until `end_session`."""
        return self.act({"k": "session", "label": label})

    def end_session(self) -> asyncio.Task[None]:
        return self.act({"k": "session_end"})

    def cancel(self, request_id: str) -> asyncio.Task[None]:
        return self.act({"k": "cancel", "id": request_id})

    def read(self, user: str) -> asyncio.Task[None]:
        """Show `user`'s conversations (and keep them in `reader`)."""
        return self.act({"k": "read", "user": user})

    def export(self, fmt: str = "jsonl", since: str | None = None) -> asyncio.Task[None]:
        """Write the class's history (JSON Lines or CSV) to a file beside the notebook;
        its path is in `notice["path"]`."""
        return self.act({"k": "export", "format": fmt, "since": since})

    def act(self, msg: dict[str, Any]) -> asyncio.Task[None]:
        """Run one action (what a button sends) on the panel's loop; the task ends with it."""
        return self._tasks.spawn(self.sync.act(msg))

    def close(self) -> None:
        """Stop polling, close the client (if the panel made it) and the view."""
        on_loop(self._loop, self._stop)
        super().close()

    # ------------------------------------------------------------------ internals

    def _stop(self) -> None:
        for task in list(self._tasks.running):
            task.cancel()
        if self._owns_client and self._loop is not None and not self._loop.is_closed():
            self._tasks.spawn(self.client.aclose())

    def _on_view_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # JupyterLab may deliver this on a subshell's thread: hand it to the panel's loop.
        if isinstance(content, dict):
            on_loop(self._loop, self._start_action, content)

    def _start_action(self, msg: dict[str, Any]) -> None:
        if msg.get("k") == "view" and isinstance(msg.get("on"), bool):
            self.sync.view_shown(msg["on"])  # at once, in order: no task to race another
        elif self._loop is not None:
            self.act(msg)
