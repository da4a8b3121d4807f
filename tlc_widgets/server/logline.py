r"""One structured log line per state change of a request.

    request id=3xQ… state=done user=ada model=practice-fast upstream=http://…/v1 waited=0.01
    ttft=0.05 tokens=57 tok_s=118.2 outcome=stop

logfmt-style `key=value` pairs: easy to grep, and to parse by any log shipper. Values a
client chose (user, model) go through `logfmt_value`, so a `user` holding a line break, a
quote or `state=done` cannot forge a line or a field:

    >>> logfmt_value("ada"), logfmt_value("ada" + chr(10) + "request id=x state=done")
    ('ada', '"ada\\nrequest id=x state=done"')
"""

from __future__ import annotations

import logging

from .records import Record

__all__ = ["log_change", "logfmt_value"]

log = logging.getLogger("tlc.requests")

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    if c.isprintable():
        return c
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def logfmt_value(value: object) -> str:
    """`value` as one logfmt value: bare if it is plain, else quoted with every line break,
    quote and control character escaped (U+2028, U+0085 and the like included)."""
    text = str(value)
    if text and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return '"' + "".join(_escape(c) for c in text) + '"'


def log_change(record: Record) -> None:
    if not log.isEnabledFor(logging.INFO):
        return  # a quiet server does not even format the line
    timings = record.timings()
    log.info(
        "request id=%s state=%s user=%s model=%s upstream=%s waited=%s ttft=%s tokens=%d "
        "tok_s=%s outcome=%s",
        record.id,
        record.status.value,
        logfmt_value(record.user),
        logfmt_value(record.model),
        record.upstream,
        timings["waited_s"],
        timings["ttft_s"],
        record.tokens,
        timings["tokens_per_s"],
        record.outcome_code or "-",
    )
