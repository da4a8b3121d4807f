"""Run browser-triggered callbacks on the loop that owns the widget.

    self._loop = owner_loop()                                  # in __init__ (a cell)
    button.on_click(lambda _: on_loop(self._loop, self.stop))  # a click: run on that loop

Why: JupyterLab 4.6 sends widget comm messages over a kernel *subshell* (its setting
`commsOverSubshells`, default "perCommTarget"), and ipykernel 7 runs each subshell in a
thread of its own, with an asyncio loop of its own. So a button's `on_click`, a custom
message from a widget's JavaScript, or a trait the browser changed is handled in *that*
thread, while the panel's tasks and its HTTP client live on the main kernel loop, where the
cell that made the widget ran. A task made from a handler with `get_running_loop()` would
land on the wrong loop; awaiting across loops then hangs. `on_loop` hands the call over
with `call_soon_threadsafe` (or calls it at once when already on the owner loop, as in
tests and in nbval, which have no frontend).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Tasks", "on_loop", "owner_loop"]


def owner_loop() -> asyncio.AbstractEventLoop | None:
    """The running loop (the kernel's, in a notebook cell), or None outside any loop."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def on_loop(loop: asyncio.AbstractEventLoop | None, fn: Callable[..., Any], *args: Any) -> None:
    """Call `fn(*args)` on `loop`: now if we are on it (or it is None/closed), else soon."""
    if loop is None or loop.is_closed() or owner_loop() is loop:
        fn(*args)
    else:
        loop.call_soon_threadsafe(fn, *args)


class Tasks:
    """The tasks a widget starts, each referenced until it ends (a task nobody references
    may be garbage-collected mid-way), on the widget's loop.

    >>> tasks = Tasks(None)           # made outside a loop: adopts the first that spawns
    >>> len(tasks.running)
    0
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.running: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        self.loop = self.loop or asyncio.get_running_loop()
        task = self.loop.create_task(coro)
        self.running.add(task)
        task.add_done_callback(self._forget)
        return task

    async def wait_others(self) -> None:
        """Wait for every task but the current one (e.g. DELETEs before closing a client)."""
        pending = [t for t in self.running if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        if not task.cancelled():
            task.exception()  # reported where it happened (a status line); not logged again
