"""The history table: what one row holds, and the SQL that writes and reads it.

    >>> from tlc_widgets.server.records import Record
    >>> row_snapshot(Record.new(user="ada", model="m", messages=[], params={}))[:2]
    ('queued', None)

Only the writer thread of `history.py` runs these against the database; `row_snapshot` runs on
the event loop, where records change, so it reads them without races.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

from ..protocol import ErrorEvent, HistoryStatus
from .records import Record

__all__ = [
    "SCHEMA",
    "USAGE_SINCE",
    "delete_older",
    "mark_interrupted",
    "row_as_json",
    "row_snapshot",
    "write_batch",
]

log = logging.getLogger("tlc.history")

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    model TEXT NOT NULL,
    messages TEXT NOT NULL,          -- JSON, as sent upstream
    params TEXT NOT NULL,            -- JSON: temperature, max_tokens …
    priority INTEGER NOT NULL,
    created REAL NOT NULL,           -- Unix time
    status TEXT NOT NULL,            -- protocol.HistoryStatus
    outcome TEXT,                    -- error code, finish_reason, who cancelled, interrupted
    message TEXT,                    -- the error's sentence
    text TEXT NOT NULL,
    reasoning TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    upstream TEXT,
    waited_s REAL, ttft_s REAL, total_s REAL, tokens_per_s REAL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_by_user ON requests (user, created);
CREATE INDEX IF NOT EXISTS requests_by_time ON requests (created);
"""
_UPDATE_FIELDS = (
    "status outcome message text reasoning tokens upstream waited_s ttft_s total_s "
    "tokens_per_s updated"
).split()
_INSERT = (
    "INSERT OR IGNORE INTO requests (id, user, model, messages, params, priority, created, "
    + ", ".join(_UPDATE_FIELDS)
    + ") VALUES ("
    + ", ".join("?" * (7 + len(_UPDATE_FIELDS)))
    + ")"
)
_UPDATE = "UPDATE requests SET " + ", ".join(f"{f} = ?" for f in _UPDATE_FIELDS) + " WHERE id = ?"
_INTERRUPTED = (
    "The queue server stopped while this request was queued or running; the text so far is kept."
)


def write_batch(
    db: sqlite3.Connection, inserts: list[tuple[Any, ...]], updates: dict[str, tuple[Any, ...]]
) -> bool:
    """Insert and update in one transaction; False (rolled back) if SQLite refused."""
    if not inserts and not updates:
        return True
    rows = [
        (rid, user, model, json.dumps(messages), json.dumps(params), priority, created)
        for rid, user, model, messages, params, priority, created in inserts
    ]
    try:
        db.execute("BEGIN")
        # An insert carries the queued state; the updates after it carry the newest one.
        placeholder = ("queued", None, None, "", "", 0, None, None, None, None, None, time.time())
        db.executemany(_INSERT, [(*row, *placeholder) for row in rows])
        db.executemany(_UPDATE, updates.values())
        db.execute("COMMIT")
    except sqlite3.OperationalError as exc:  # a full disk, I/O: kept by the caller, retried
        log.debug("history: could not save %d requests: %s", len(rows) + len(updates), exc)
        if db.in_transaction:
            db.execute("ROLLBACK")
        return False
    except Exception:  # a row SQLite can never take: retrying would block the rest for good
        log.exception("history: could not save %d requests", len(rows) + len(updates))
        if db.in_transaction:
            db.execute("ROLLBACK")
    return True


def row_snapshot(record: Record) -> tuple[Any, ...]:
    """The record's changing fields, in `_UPDATE` order (read on the event loop: no races)."""
    message = record.outcome.message if isinstance(record.outcome, ErrorEvent) else None
    t = record.timings()
    return (
        record.status.value,
        record.outcome_code,
        message,
        record.text,
        "".join(record.reasoning),
        record.tokens,
        record.upstream,
        t["waited_s"],
        t["ttft_s"],
        t["total_s"],
        t["tokens_per_s"],
        time.time(),
        record.id,
    )


#: Per user since a time: what the budgets count (prompts, reply tokens, errors).
USAGE_SINCE = (
    "SELECT user, COUNT(*) AS prompts, COALESCE(SUM(tokens), 0) AS tokens, "
    "SUM(status = 'error') AS errors FROM requests WHERE created >= ? GROUP BY user"
)


def delete_older(db: sqlite3.Connection, created: float) -> int:
    """Delete the rows created before `created`; how many went."""
    return db.execute("DELETE FROM requests WHERE created < ?", (created,)).rowcount


def mark_interrupted(db: sqlite3.Connection) -> int:
    cursor = db.execute(
        "UPDATE requests SET status = ?, outcome = ?, message = ?, updated = ? "
        "WHERE status IN (?, ?)",
        (
            HistoryStatus.INTERRUPTED.value,
            HistoryStatus.INTERRUPTED.value,
            _INTERRUPTED,
            time.time(),
            HistoryStatus.QUEUED.value,
            HistoryStatus.RUNNING.value,
        ),
    )
    return cursor.rowcount


def row_as_json(row: sqlite3.Row) -> dict[str, Any]:
    """A row as the API answers it: JSON fields parsed, timings grouped like the live view."""
    item = dict(row)
    item["messages"] = json.loads(item["messages"])
    item["params"] = json.loads(item["params"])
    item["timings"] = {k: item.pop(k) for k in ("waited_s", "ttft_s", "total_s", "tokens_per_s")}
    return item
