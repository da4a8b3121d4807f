"""The class's history as a file: JSON Lines (everything) or CSV (one row per request).

    >>> row = {"id": "r1", "user": "ada", "model": "m", "created": 0.0, "status": "done",
    ...        "outcome": "stop", "message": None, "text": "Hi!", "reasoning": "",
    ...        "tokens": 2, "upstream": None, "priority": 0, "params": {}, "updated": 0.0,
    ...        "messages": [{"role": "user", "content": "Hello"}],
    ...        "timings": {"waited_s": 0.1, "ttft_s": 0.2, "total_s": 0.3, "tokens_per_s": 9.0}}
    >>> print("".join(csv_lines([row])), end="")
    id,user,model,created,status,outcome,message,prompt,reply,tokens,waited_s,ttft_s,total_s
    r1,ada,m,1970-01-01T00:00:00Z,done,stop,,Hello,Hi!,2,0.1,0.2,0.3
    >>> next(jsonl_lines([row]))[:30]
    '{"id": "r1", "user": "ada", "m'

The teacher's page downloads these from `GET /api/class/export?format=jsonl|csv&since=…`;
`tlc export --format jsonl|csv [--since DATE] [--history PATH]` reads the SQLite file itself
(read-only, safe while the server writes it), so a term's history can be taken off a machine
whose server is stopped. JSONL keeps every field (messages as sent upstream, with the class
prompt); CSV keeps one line per request for a spreadsheet: the last user message as
`prompt`, the reply, the outcome and the timings.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .history_rows import row_as_json

__all__ = ["CSV_FIELDS", "csv_lines", "jsonl_lines", "parse_since", "read_rows"]

CSV_FIELDS = (
    "id user model created status outcome message prompt reply tokens waited_s ttft_s total_s"
).split()


def jsonl_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def line(values: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(CSV_FIELDS)
    for row in rows:
        timings = row.get("timings") or {}
        flat = {
            **row,
            "created": _iso(row["created"]),
            "prompt": _last_user_text(row.get("messages") or []),
            "reply": row.get("text", ""),
            **{k: timings.get(k) for k in ("waited_s", "ttft_s", "total_s")},
        }
        yield line(["" if flat.get(k) is None else flat[k] for k in CSV_FIELDS])


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(str(p.get("text", "")) for p in content)
            return str(content or "")
    return ""


def parse_since(text: str | None) -> float:
    """`--since` / `since=`: a Unix time, or an ISO date or date-time (local if no zone).

    >>> parse_since("1700000000")
    1700000000.0
    >>> parse_since(None)
    0.0
    """
    if not text:
        return 0.0
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(
            f"since: {text!r} is neither a date (2026-09-01), a date-time "
            "(2026-09-01T08:00) nor a Unix time"
        ) from None


def read_rows(path: Path, since: float = 0.0) -> Iterator[dict[str, Any]]:
    """The history file's rows created at or after `since`, oldest first (read-only)."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        sql = "SELECT * FROM requests WHERE created >= ? ORDER BY created"
        for row in db.execute(sql, (since,)):
            yield row_as_json(row)
    finally:
        db.close()
