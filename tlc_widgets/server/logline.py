"""One structured log line per state change of a request.

    request id=3xQ… state=done user=ada model=practice-fast upstream=http://…/v1 waited=0.01
    ttft=0.05 tokens=57 tok_s=118.2 outcome=stop

logfmt-style `key=value` pairs: easy to grep, and to parse by any log shipper.
"""

from __future__ import annotations

import logging

from .records import Record

__all__ = ["log_change"]

log = logging.getLogger("tlc.requests")


def log_change(record: Record) -> None:
    if not log.isEnabledFor(logging.INFO):
        return  # a quiet server does not even format the line
    timings = record.timings()
    log.info(
        "request id=%s state=%s user=%s model=%s upstream=%s waited=%s ttft=%s tokens=%d "
        "tok_s=%s outcome=%s",
        record.id,
        record.status.value,
        record.user,
        record.model,
        record.upstream,
        timings["waited_s"],
        timings["ttft_s"],
        record.tokens,
        timings["tokens_per_s"],
        record.outcome_code or "-",
    )
