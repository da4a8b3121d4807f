"""Reaching the queue server from a panel: say why not, try again, and clear the red line
by itself once the server answers.

    >>> async def models(): return [{"id": "m"}]
    >>> watch = ServerWatch(models, StatusLine(), busy=lambda: False)
    >>> await watch.try_load(), watch.line.text                  # doctest: +SKIP
    (True, 'ready')

Used by `ChatPanel`: at start (the model list), and after a send that found the server (or
its model server) gone — so a student who restarts `tlc lab` sees the panel recover without
sending anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import TLCError
from .status import Phase, Progress
from .status_line import StatusLine

__all__ = ["RETRY_S", "ServerWatch"]

#: Seconds between tries to reach the server while it does not answer.
RETRY_S = 5.0

NO_MODELS = "The queue server lists no models; load one in LM Studio."
BACK = "ready — the queue server answers again"


class ServerWatch:
    """`load()` reads the model list (and raises `TLCError` when it cannot); the line shows
    the outcome unless `busy()` says a request owns it."""

    def __init__(
        self,
        load: Callable[[], Awaitable[list[dict[str, Any]]]],
        line: StatusLine,
        busy: Callable[[], bool],
        retry_s: float = RETRY_S,
    ) -> None:
        self.load, self.line, self.busy, self.retry_s = load, line, busy, retry_s

    async def try_load(self) -> bool:
        """One try: True if the server answered with at least one model."""
        try:
            models = await self.load()
        except TLCError as exc:
            if not self.busy():
                self.line.show(Progress(Phase.ERROR, exc.message))
            return False
        if not self.busy():
            if models:
                self.line.show(Progress(Phase.IDLE, "ready"))
            else:
                self.line.show(Progress(Phase.ERROR, NO_MODELS))
        return bool(models)

    async def until_loaded(self) -> None:
        """Try every `retry_s` until the model list arrives."""
        while True:
            if await self.try_load():
                return
            await asyncio.sleep(self.retry_s)

    async def clear_when_back(self, shown: Progress) -> None:
        """`shown` is the red line of a send that could not reach the server: once it
        answers, replace it (unless something else was shown meanwhile)."""
        while self.line.progress is shown:
            await asyncio.sleep(self.retry_s)
            try:
                await self.load()
            except TLCError:
                continue
            if self.line.progress is shown:
                self.line.show(Progress(Phase.IDLE, BACK))
