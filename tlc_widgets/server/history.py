"""Every request, kept in SQLite: what was asked, what came back so far, how it ended.

    >>> import anyio
    >>> from tlc_widgets.server.records import Record
    >>> async def demo() -> list[str]:
    ...     history = History(":memory:")
    ...     await history.open()  # marks rows a killed server left queued/running `interrupted`
    ...     history.record_changed(Record.new(user="ada", model="m", messages=[], params={}))
    ...     await history.close()  # writes what is pending
    ...     return [history.enabled, history.path]
    >>> anyio.run(demo)
    [True, ':memory:']

One writer thread owns the one connection and is fed by a queue: the event loop never waits
for the disk. Changes are gathered on the loop for `COALESCE_S` (50 ms) and handed over as
one job, which the thread writes in one transaction, keeping only the newest state of each
request — one transaction per batch of requests, not three or more per request.
Reads are jobs on the same queue, so a read sees every write put before it. WAL mode with
`synchronous=NORMAL`: a committed batch survives the process being killed (`kill -9`).

**Retention** (`history_days`, `TLC_HISTORY_DAYS`, `tlc serve --history-days`): the writer
thread deletes rows older than that many days when it opens the file and every day after.

A running request's text so far is saved at every state change and, while it streams, at
most every `flush_s` (0.5 s) — never per token.

`History("")` keeps nothing; `History(":memory:")` keeps this run only.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import anyio

from ..config import Settings
from ..protocol import Status
from .clock import Timer, call_later, wait_future
from .history_rows import (
    SCHEMA,
    USAGE_SINCE,
    delete_older,
    mark_interrupted,
    row_as_json,
    row_snapshot,
    write_batch,
)
from .records import Record

__all__ = ["History"]

log = logging.getLogger("tlc.history")
T = TypeVar("T")

_BATCH = 512  #: most queue items handled per transaction
COALESCE_S = 0.05  #: changes gathered this long on the loop before one hand-over
_STOP = object()
PURGE_EVERY_S = 86_400.0  #: with retention on, old rows are deleted this often
RETRY_S = 1.0  #: while writes fail (a full disk), unsaved rows are tried again this often


class History:
    def __init__(self, path: str, flush_s: float = 0.5, days: int = 0) -> None:
        special = path in ("", ":memory:")
        self.path = path if special else str(Path(path).expanduser())
        self.enabled = path != ""
        self.flush_s = flush_s
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: True while writes fail (a full disk): `/readyz` says so; nothing is dropped
        self.failing = False
        # Rows the writer thread has not saved yet; kept across failed writes, newest state
        # of each request only, and tried again until the disk takes them.
        self._unsaved: tuple[list[tuple[Any, ...]], dict[str, tuple[Any, ...]]] = ([], {})
        self._thread: threading.Thread | None = None
        self._running: dict[str, tuple[Record, int]] = {}  # id -> (record, tokens saved)
        self._new: dict[str, Record] = {}  # born since the last hand-over: rows to insert
        self._changed: dict[str, Record] = {}  # changed since the last hand-over
        self._handover: Timer | None = None
        self.interrupted = 0  #: rows `open()` found left queued/running by a stopped server
        self.days = days  #: retention: rows older than this are deleted (0: keep all)
        self.purged = 0  #: rows deleted by the retention so far
        self._next_purge = 0.0  #: (monotonic) when the writer thread next deletes old rows

    @classmethod
    def from_settings(cls, settings: Settings) -> History:
        return cls(settings.history_path, settings.history_flush_s, settings.history_days)

    # ------------------------------------------------------------------ life

    async def open(self) -> None:
        """Start the writer thread; mark what a stopped server left behind `interrupted`."""
        if not self.enabled:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        ready: Future[int] = Future()
        self._thread = threading.Thread(
            target=self._write_forever, args=(ready,), name="tlc-history", daemon=True
        )
        self._thread.start()
        try:
            self.interrupted = await wait_future(ready)
        except (OSError, sqlite3.Error) as exc:
            self._thread = None
            raise RuntimeError(
                f"history: cannot open {self.path!r} ({exc}); set TLC_HISTORY_PATH to a "
                "writable file, or to an empty value to keep no history"
            ) from exc
        if self.interrupted:
            log.warning("history: %d requests were cut off by a stop; marked interrupted",
                        self.interrupted)  # fmt: skip

    async def close(self) -> None:
        """Write what is pending, then stop the thread."""
        if self._thread is None:
            return
        if self._handover is not None:
            self._handover.cancel()
        self._hand_over()
        self._jobs.put(_STOP)
        await anyio.to_thread.run_sync(self._thread.join)
        self._thread = None

    # ------------------------------------------------------------------ writing (event loop)

    def record_changed(self, record: Record) -> None:
        """Save the record's state now (called on every status change)."""
        if self._thread is None:
            return
        if record.status is Status.QUEUED:  # its first change: the row is born
            self._new[record.id] = record
        self._changed[record.id] = record
        if record.status is Status.RUNNING:
            self._running[record.id] = (record, record.tokens)
        elif record.status.terminal:
            self._running.pop(record.id, None)
        if self._handover is None:
            self._handover = call_later(COALESCE_S, self._hand_over)

    def _hand_over(self) -> None:
        """Give the writer thread the newest state of everything that changed, as one job."""
        self._handover = None
        inserts = [
            (r.id, r.user, r.model, r.messages, r.params, r.priority, r.created_wall)
            for r in self._new.values()
        ]
        updates = [row_snapshot(r) for r in self._changed.values()]
        self._new, self._changed = {}, {}
        if inserts or updates:
            self._jobs.put(("many", inserts, updates))

    def flush_running(self) -> int:
        """Save the text so far of every running request that got tokens since its last save."""
        saved = 0
        for request_id, (record, tokens) in list(self._running.items()):
            if record.tokens != tokens and not record.status.terminal:
                self._running[request_id] = (record, record.tokens)
                self._changed[request_id] = record
                saved += 1
        if saved and self._handover is None:
            self._hand_over()
        return saved

    async def flush_forever(self) -> None:
        while self.enabled:
            await anyio.sleep(self.flush_s)
            self.flush_running()

    # ------------------------------------------------------------------ reading

    async def recent(self, user: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` requests, of `user` (None: of everyone), newest first."""
        where, args = ("WHERE user = ?", (user,)) if user is not None else ("", ())
        sql = f"SELECT * FROM requests {where} ORDER BY created DESC LIMIT ?"
        return await self._select(sql, (*args, limit))

    async def since(self, created: float) -> list[dict[str, Any]]:
        """Everyone's requests created at or after `created`, oldest first (the export)."""
        sql = "SELECT * FROM requests WHERE created >= ? ORDER BY created"
        return await self._select(sql, (created,))

    async def usage_since(self, created: float) -> list[dict[str, Any]]:
        """Per user since `created`: prompts, reply tokens, errors (to rebuild budgets)."""
        if self._thread is None:
            return []

        def select(db: sqlite3.Connection) -> list[dict[str, Any]]:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute(USAGE_SINCE, (created,))]

        return await self._call(select)

    async def get(self, request_id: str) -> dict[str, Any] | None:
        rows = await self._select("SELECT * FROM requests WHERE id = ?", (request_id,))
        return rows[0] if rows else None

    async def _select(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        if self._thread is None:
            return []

        def select(db: sqlite3.Connection) -> list[dict[str, Any]]:
            db.row_factory = sqlite3.Row
            return [row_as_json(row) for row in db.execute(sql, args)]

        return await self._call(select)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # Hand over what is still gathering first: a read sees every change made before it.
        if self._handover is not None:
            self._handover.cancel()
            self._hand_over()
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        return await wait_future(future)

    # ------------------------------------------------------------------ the writer thread

    def _write_forever(self, ready: Future[int]) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # durable across a killed process
            db.executescript(SCHEMA)
            self._purge(db)
            ready.set_result(mark_interrupted(db))
        except Exception as exc:
            ready.set_exception(exc)
            return
        try:
            while not self._handle(db, self._take()):
                self._purge(db)
        finally:
            db.close()

    def _purge(self, db: sqlite3.Connection) -> None:
        """Delete rows past the retention, at most once per `PURGE_EVERY_S`."""
        if self.days and time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + PURGE_EVERY_S
            deleted = delete_older(db, time.time() - self.days * 86_400)
            self.purged += deleted
            if deleted:
                log.info("history: deleted %d requests older than %d days", deleted, self.days)

    def _take(self) -> list[Any]:
        # With retention on, wake up for the daily purge even when nothing is written; with
        # rows unsaved after a failed write, wake up to try them again.
        wait = max(0.0, self._next_purge - time.monotonic()) if self.days else None
        if self.failing:
            wait = RETRY_S if wait is None else min(wait, RETRY_S)
        try:
            batch = [self._jobs.get(timeout=wait)]
        except queue.Empty:
            return []
        while len(batch) < _BATCH:
            try:
                batch.append(self._jobs.get_nowait())
            except queue.Empty:
                break
        return batch

    def _handle(self, db: sqlite3.Connection, batch: list[Any]) -> bool:
        """Run one batch; True once told to stop."""
        inserts, updates = self._unsaved  # only the newest state of each request
        for job in batch:
            if job is _STOP or callable(job[0]):
                self._save(db)
                if job is _STOP:
                    return True
                fn, future = job
                try:
                    future.set_result(fn(db))
                except Exception as exc:  # the caller gets it, the thread lives on
                    future.set_exception(exc)
            else:  # ("many", inserts, updates): one hand-over from the loop
                inserts.extend(job[1])
                updates.update((update[-1], update) for update in job[2])
        self._save(db)
        return False

    def _save(self, db: sqlite3.Connection) -> None:
        """Write what is unsaved in one transaction; if the disk refuses, keep it all for
        the next try (every `RETRY_S`) and say so once, not once a second."""
        inserts, updates = self._unsaved
        if write_batch(db, inserts, updates):
            inserts.clear()
            updates.clear()
            if self.failing:
                log.warning("history: writing again; nothing was lost")
            self.failing = False
        elif not self.failing:
            self.failing = True
            log.error("history: writes fail (disk full?); keeping rows and trying again")
