"""`QueueMonitor`: the shared queue at a glance — big numbers and a chart of the last minutes.

    >>> monitor = QueueMonitor()                   # the server at TLC_SERVER_URL
    >>> monitor                                    # doctest: +SKIP
    >>> monitor.close()                            # stops following the queue

It follows `/api/queue/events` in an asyncio task (the kernel stays free) and shows waiting,
running, slots in use per upstream, requests served, mean wait and tokens/s, plus an SVG
sparkline of queue length and throughput drawn by `monitor.js`. Made to be readable on a
projector: the numbers are large.

Wire cost: each snapshot (a few hundred bytes) lands in the `snapshot` trait and the
browser adds it to its chart; the history is sent only to a view that asks for it when it
appears (a re-run cell, a second view), never per update.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..client import QueueClient, TLCError
from .loop import on_loop, owner_loop

__all__ = ["QueueMonitor"]

_HERE = Path(__file__).parent
#: Seconds between reconnects while the server does not answer.
RETRY_S = 3.0
#: The server sends a snapshot when the queue changes; tokens/s also decays while nothing
#: changes, so a snapshot older than this is refreshed with a plain GET.
REFRESH_S = 2.0


class QueueMonitor(anywidget.AnyWidget):  # type: ignore[misc]
    """A live view of the queue. `snapshot` is the latest `/api/queue` answer (+ `t`)."""

    _esm = _HERE / "monitor.js"
    _css = _HERE / "monitor.css"

    #: The latest `/api/queue` snapshot, with `t`: when it arrived (Unix seconds).
    snapshot = traitlets.Dict().tag(sync=True)
    #: A sentence when the server does not answer; "" while the view is live.
    message = traitlets.Unicode("connecting to the queue server…").tag(sync=True)
    #: How many seconds the chart spans.
    window_s = traitlets.Float(300.0).tag(sync=True)

    def __init__(
        self,
        client: QueueClient | None = None,
        *,
        url: str | None = None,
        window_s: float = 300.0,
    ) -> None:
        if client is not None and url is not None:
            raise ValueError("give a client or a url, not both")
        super().__init__(window_s=window_s)
        self.add_class("tlc-monitor")
        self.client = client or QueueClient(url)
        self._owns_client = client is None
        #: (t, waiting, running, tokens/s) for the chart, oldest first
        self.history: deque[tuple[float, int, int, float]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_msg(self._on_view_message)
        self._loop = owner_loop()
        if self._loop is None:
            return  # no loop (a plain script): call `update()` yourself
        for work in (self._follow(), self._refresh()):
            task = self._loop.create_task(work)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def update(self, snapshot: dict[str, Any], now: float | None = None) -> None:
        """Show `snapshot` (an `/api/queue` answer) and add it to the chart."""
        now = time.time() if now is None else now
        self.message = ""
        self.history.append(
            (
                round(now, 2),
                int(snapshot.get("waiting") or 0),
                int(snapshot.get("running") or 0),
                float(snapshot.get("tokens_per_s") or 0.0),
            )
        )
        while self.history and self.history[0][0] < now - self.window_s:
            self.history.popleft()
        self.snapshot = {**snapshot, "t": round(now, 2)}

    def close(self) -> None:
        """Stop following the queue and close the view."""
        on_loop(self._loop, self._stop_following)
        super().close()

    def _stop_following(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._owns_client and self._loop is not None and not self._loop.is_closed():
            closing = self._loop.create_task(self.client.aclose())
            self._tasks.add(closing)
            closing.add_done_callback(self._tasks.discard)

    async def _follow(self) -> None:
        """Snapshots as the queue changes; across restarts and outages of the server."""
        while True:
            try:
                async for snapshot in self.client.queue_events():
                    self.update(snapshot)
            except TLCError as exc:
                self.message = exc.message
            await asyncio.sleep(RETRY_S)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            age = time.time() - float(self.snapshot.get("t", 0))
            if not self.message and age >= REFRESH_S:
                try:
                    self.update(await self.client.queue())
                except TLCError as exc:
                    self.message = exc.message

    def _on_view_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("k") == "sync":
            on_loop(self._loop, self._send_history)

    def _send_history(self) -> None:
        self.send({"k": "history", "s": [list(point) for point in self.history]})
