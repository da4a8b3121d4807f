"""Where records live while they matter: by id, forgotten after a while or past a byte budget.

>>> from tlc_widgets.server.records import Record
>>> store = RecordStore(retain_s=900, retain_bytes=10)
>>> store.add(Record.new(user="ada", model="m", messages=[], params={}))
>>> len(store), store.finished_bytes
(1, 0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from .clock import call_later

if TYPE_CHECKING:
    from .records import Record

__all__ = ["RecordStore"]


class RecordStore:
    """Records by id. A finished one is forgotten `retain_s` after it ends, or sooner when
    the finished ones together hold more than `retain_bytes` in memory (`Record.held`: the
    oldest go first; history keeps everything). In memory, behind a small interface
    (add / get / discard / values)."""

    def __init__(self, retain_s: float, retain_bytes: int = 256 * 2**20) -> None:
        self._records: dict[str, Record] = {}
        self._retain_s = retain_s
        self._retain_bytes = retain_bytes
        self._finished: dict[str, int] = {}  # id -> size, oldest first (dicts keep order)
        self.finished_bytes = 0

    def add(self, record: Record) -> None:
        self._records[record.id] = record

    def get(self, request_id: str) -> Record | None:
        return self._records.get(request_id)

    def discard(self, request_id: str) -> None:
        self._records.pop(request_id, None)
        self.finished_bytes -= self._finished.pop(request_id, 0)

    def values(self) -> list[Record]:
        return list(self._records.values())

    def nudge_live(self) -> None:
        """Wake the streams of every live record (the keep-alive clock)."""
        for record in self._records.values():
            if not record.status.terminal:
                record.nudge()

    async def nudge_forever(self, interval_s: float) -> None:
        """`nudge_live` every `interval_s`: an idle stream sends `: ping` (proxies keep it)."""
        while True:
            await anyio.sleep(interval_s)
            self.nudge_live()

    def forget_later(self, record: Record) -> None:
        """`record` has ended: forget it after `retain_s`, and the oldest finished ones now
        if the finished ones hold more than `retain_bytes` together."""
        self._finished[record.id] = held = record.held  # counted once, as it finishes
        self.finished_bytes += held
        while self.finished_bytes > self._retain_bytes and self._finished:
            self.discard(next(iter(self._finished)))
        # The timer holds the id, not the record: a record the budget pushed out must not
        # stay alive in its timer for `retain_s` (it did: 400 × 792 KB replies kept ~800 MB).
        request_id = record.id
        call_later(self._retain_s, lambda: self.discard(request_id))

    def __len__(self) -> int:
        return len(self._records)
