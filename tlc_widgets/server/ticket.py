"""A waiting request's ticket: what another replica needs to run it if its own replica dies.

    >>> rec = Record.new(user="ada", model="m", messages=[{"role": "user", "content": "hi"}],
    ...                  params={"max_tokens": 8}, priority=1)
    >>> again, role = from_ticket(rec.id, ticket(rec, Role.STUDENT), frames=[b"event: queued"])
    >>> (again.user, again.messages, again.params, again.priority, role.value)
    ('ada', [{'role': 'user', 'content': 'hi'}], {'max_tokens': 8}, 1, 'student')
    >>> again.id == rec.id, again.last_id  # its events go on after those already logged
    (True, 1)

With `--redis`, a request's ticket is written beside its place in the shared line (one JSON
string, `tlc:{name}:b:<id>`, kept as long as it may wait) and deleted when it starts or
leaves. A survivor that adopts a dead replica's waiting request (`shared_line.py`) rebuilds
the record from it, with the frames the dead replica had logged, so event ids continue and
a client's `Last-Event-ID` resumes on the survivor as it would have on its own replica.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from .identity import Role
from .records import Record
from .upstream_call import Call

__all__ = ["from_ticket", "ticket"]


def ticket(record: Record, role: Role) -> str:
    """`record`'s request as JSON: its fields as the upstream will get them, and its role."""
    fields = {
        "user": record.user,
        "model": record.model,
        "messages": record.messages,
        "params": record.params,
        "priority": record.priority,
        "call": asdict(record.call),
        "role": role.value,
        "created_wall": record.created_wall,
    }
    return json.dumps(fields, separators=(",", ":"))


def from_ticket(request_id: str, text: str | bytes, frames: list[bytes]) -> tuple[Record, Role]:
    """The record again, still waiting, with the `frames` already logged as its first events."""
    fields = json.loads(text)
    waited = max(0.0, time.time() - fields["created_wall"])
    record = Record(
        id=request_id,
        user=fields["user"],
        model=fields["model"],
        messages=fields["messages"],
        params=fields["params"],
        priority=fields["priority"],
        call=Call(**fields["call"]),
        created=time.monotonic() - waited,  # its wait counts from its first arrival
        created_wall=fields["created_wall"],
    )
    record.frames.extend(frames)
    return record, Role(fields["role"])
