"""The teacher's view, kernel side: poll `/api/class/*` into traits, and carry out the
actions the view sends (pause, budgets, the class prompt, cancel, read, export).

    >>> unique_path(Path("no-such-folder"), "tlc-class-2026-11-29.csv").name
    'tlc-class-2026-11-29.csv'
    >>> check_action({"k": "budget", "prompts": "20", "tokens": 0})
    'Budgets are whole numbers of 0 or more (0: no limit).'

The browser never calls the queue server itself: a page inside JupyterLab is another origin,
and the server's guard refuses cross-origin calls that change something (as it must). The
kernel calls it instead, with the chat panel's identity (`TLC_SERVER_URL`, `TLC_API_KEY` or
the Hub token), and writes what it read into the widget's traits; the view's buttons come
back as custom messages `{"k": action, …}`.

Errors are sentences: the server's `message` in `error` (the poll) or `notice` (an action).
A 401/403 sets `denied` and stops polling until the view asks again (`{"k": "refresh"}`):
a student who opens the view is told why, once, not every two seconds. Each view says when
it appears and goes (`{"k": "view", "on": …}`): with none on screen — its output cleared, the
cell re-run, the notebook closed — the kernel stops polling until one is back.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Protocol

from ..client import AccessDenied, TLCError
from ..client.teacher import ClassClient, ExportFormat, export_name

__all__ = ["ClassSync", "TraitSink", "check_action", "unique_path"]

#: What each action needs besides `k`, and of which type.
ACTIONS: dict[str, dict[str, type]] = {
    "refresh": {},
    "view": {"on": bool},
    "pause": {"message": str},
    "resume": {},
    "prompt": {"text": str},
    "budget": {"prompts": int, "tokens": int},
    "budget_reset": {"user": str},
    "session": {"label": str},
    "session_end": {},
    "cancel": {"id": str},
    "read": {"user": str},
    "export": {"format": str},
}


class TraitSink(Protocol):
    """The traits `ClassSync` writes (`TeacherPanel`'s)."""

    live: dict[str, Any]
    students: dict[str, Any]
    klass: dict[str, Any]
    models: list[dict[str, Any]]
    reader: dict[str, Any]
    error: str
    denied: bool
    notice: dict[str, Any]
    updated: float


def check_action(msg: dict[str, Any]) -> str | None:
    """None if `msg` is an action this view knows, with the fields it needs; else why not."""
    fields = ACTIONS.get(str(msg.get("k")))
    if fields is None:
        return f"The teacher's view does not know the action {msg.get('k')!r}."
    for name, kind in fields.items():
        value = msg.get(name)
        if kind is int and (type(value) is not int or value < 0):
            return "Budgets are whole numbers of 0 or more (0: no limit)."
        if kind is bool and type(value) is not bool:
            return f"The action {msg['k']!r} needs true or false in {name!r}."
        if kind is str and not isinstance(value, str):
            return f"The action {msg['k']!r} needs a text {name!r}."
        if name in ("user", "id") and not str(value).strip():
            return f"The action {msg['k']!r} needs a {name}: it is empty."
    if msg["k"] == "export" and msg["format"] not in ("jsonl", "csv"):
        return "Export as 'jsonl' or 'csv'."
    return None


def unique_path(folder: Path, name: str) -> Path:
    """`folder/name`, or `name` with -2, -3 … before its suffix: an export never overwrites."""
    path = folder / name
    stem, suffix = path.stem, path.suffix
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}{suffix}"
    return path


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1000 else f"{n / 1000:.1f} kB"


class ClassSync:
    """Polls every `interval_s` into `view`; `act(msg)` runs one action, then polls."""

    def __init__(
        self, view: TraitSink, client: ClassClient, interval_s: float, folder: Path
    ) -> None:
        self.view, self.client, self.interval_s, self.folder = view, client, interval_s, folder
        self._again = asyncio.Event()
        #: Views on screen, once the first has said so (None: no frontend, e.g. a script).
        self.views: int | None = None
        self._watched = asyncio.Event()
        self._watched.set()
        self._started = self._shown = 0

    async def poll_forever(self) -> None:
        """Poll until cancelled; while denied, wait until the view asks again; while no
        view is on screen (its output cleared, its notebook closed), wait for one."""
        while True:
            await self._watched.wait()
            if not await self.poll() and self.view.denied:
                self._again.clear()
                await self._again.wait()
                continue
            await asyncio.sleep(self.interval_s)

    async def poll(self) -> bool:
        """One look at the class; False (and a sentence in `error`) if it failed."""
        # Polls overlap (the timer's, an action's): one that started earlier and answers
        # later must not put the class back as it was before the action.
        self._started += 1
        n = self._started
        try:
            live, students, klass = await asyncio.gather(
                self.client.live(), self.client.students(), self.client.state()
            )
        except AccessDenied as exc:
            sentence = await self._denied(exc)
            if self._latest(n):
                self.view.error, self.view.denied = sentence, True
            return False
        except TLCError as exc:
            if self._latest(n):
                self.view.error = exc.message
            return False
        if self._latest(n):
            self.view.live, self.view.students, self.view.klass = live, students, klass
            self.view.error, self.view.denied = "", False
            self.view.updated = round(time.time(), 3)
        if not self.view.models:  # once, when the server first answers
            await self._load_models()
        return True

    def _latest(self, n: int) -> bool:
        """Whether poll `n` is newer than what is shown (and now shows it)."""
        if n < self._shown:
            return False
        self._shown = n
        return True

    async def _load_models(self) -> None:
        try:
            models = await self.client.models()
        except TLCError:
            return  # the next poll tries again
        self.view.models = [
            {"id": m["id"], "name": m.get("display_name") or m["id"]} for m in models
        ]

    async def _denied(self, exc: AccessDenied) -> str:
        """Why this kernel may not see the class, in words: who the server takes it for."""
        if exc.code != "forbidden":
            return (
                f"{exc.message} The teacher's view needs a teacher's key: set TLC_API_KEY "
                "in the notebook's environment (on a JupyterHub, your Hub login is used)."
            )
        try:
            me = await self.client.me()
            who = f"{me.get('user')}, a {me.get('role')}"
        except TLCError:
            who = "someone without the teacher's role"
        return (
            f"The teacher's view is for teachers and admins: the queue server knows you as "
            f"{who} (403 forbidden). Ask your teacher or admin if you need it."
        )

    def view_shown(self, on: bool) -> None:
        """A view appeared (`on`) or went; polling waits while none is on screen."""
        self.views = max(0, (self.views or 0) + (1 if on else -1))
        if self.views:
            self._watched.set()  # polls at once if it was waiting
        else:
            self._watched.clear()

    # ------------------------------------------------------------------ actions

    async def act(self, msg: dict[str, Any]) -> None:
        """Run one action from the view; its outcome (or why it failed) goes in `notice`."""
        problem = check_action(msg)
        if problem:
            self._say(problem, error=True)
            return
        if msg["k"] == "view":
            self.view_shown(msg["on"])
            return
        if msg["k"] == "refresh":
            self._again.set()  # a denied view polls again
            await self.poll()
            return
        try:
            text = await self._run(msg)
        except TLCError as exc:
            self._say(exc.message, error=True)
            return
        except OSError as exc:  # an export the folder refuses (read-only, full, gone)
            self._say(f"Could not write the export in {self.folder}: {exc.strerror}.", True)
            return
        if text:
            self._say(text)
        await self.poll()

    async def _run(self, msg: dict[str, Any]) -> str:
        c, k = self.client, msg["k"]
        user = str(msg.get("user") or "").strip() or None
        if k == "pause":
            await c.pause(msg["message"])
            return "Paused: students' new requests are refused with your message."
        if k == "resume":
            await c.resume()
            return "Open again: students can chat."
        if k == "prompt":
            model = msg.get("model") or None
            await c.set_prompt(msg["text"], model if isinstance(model, str) else None)
            what = "removed" if not msg["text"] else "set"
            return f"Class prompt {what} for {model or 'all models'}."
        if k == "budget":
            await c.set_budget(msg["prompts"], msg["tokens"], user)
            return f"Daily budget set for {user or 'the class'}."
        if k == "budget_reset":
            assert user is not None, "check_action: budget_reset needs a user"
            await c.reset_budget(user)
            return f"{user} is back on the class's budget."
        if k in ("session", "session_end"):
            if k == "session":
                await c.start_session(msg["label"])
                return "Session started: budgets count from zero until you end it."
            await c.end_session()
            return "Back to daily budgets."
        if k == "cancel":
            cancelled = await c.cancel_any(msg["id"])
            return "Request cancelled." if cancelled else "That request had already ended."
        if k == "read":
            assert user is not None, "check_action: read needs a user"
            limit = msg.get("limit")
            limit = limit if type(limit) is int and 1 <= limit <= 1000 else 20
            requests = await c.student_history(user, limit=limit)
            self.view.reader = {"user": user, "requests": requests}
            return ""
        since = msg.get("since")
        return await self._export(msg["format"], since if isinstance(since, str) else None)

    async def _export(self, fmt: str, since: str | None) -> str:
        """Write the file, say where (in full: the folder need not be the notebook's)."""
        kind: ExportFormat = "jsonl" if fmt == "jsonl" else "csv"  # check_action: one of two
        path = unique_path(self.folder, export_name(kind))
        size = await self.client.export(kind, path, (since or "").strip() or None)
        self._say(f"Exported the class's history ({_size(size)}) to {path.name}:", path=str(path))
        return ""

    def _say(self, text: str, error: bool = False, path: str = "") -> None:
        """The last action's outcome; `path`: the file an export wrote (shown in full)."""
        self.view.notice = {"text": text, "error": error, "path": path}
