"""A replica taken for dead while it lived: its waiting requests that another replica
adopted are followed from the shared log, for the clients still reading them here.

    >>> from tlc_widgets.protocol import Queued, event_data, event_name
    >>> from tlc_widgets.sse import frame
    >>> events = [Queued(1, 1, None), Started("m", "http://b/v1", 2.5), Delta("Hi"), Done("stop")]
    >>> log = [frame(event_name(e), event_data(e), n) for n, e in enumerate(events, start=1)]
    >>> rec = Record.new(user="ada", model="m", messages=[], params={})
    >>> rec.emit(events[0])  # what it had here before another replica adopted it
    >>> [follow_chunk(rec, chunk) for chunk in log[1:]]
    [False, False, True]
    >>> rec.status.value, rec.text, rec.upstream, rec.last_id
    ('done', 'Hi', 'http://b/v1', 4)

With `--redis`, a replica that stops saying it is alive for a lease time (a stall, a
network pause to Redis) looks dead to the others: they adopt its waiting requests and run
them (`shared_fill.py`). When it finds out (its heartbeat's key had run out), it puts back
in the line only the requests whose log still names it; each one another replica adopted
(or a survivor ended) leaves its line — so no request ever runs twice — and its record here
follows the shared log from the adopter's start on (`follow_chunk`), so a client still
reading here gets the reply and one ending. The record's own counts stay the adopter's.
"""

from __future__ import annotations

from ..protocol import Cancelled, Delta, Done, ErrorEvent, Started, parse_event
from ..sse import decode_text
from .records import Record

__all__ = ["follow_chunk"]


def follow_chunk(record: Record, chunk: bytes) -> bool:
    """Apply one chunk of the shared log to `record` (what the adopter wrote from its start
    on; the waiting events before it are this record's own already). True at its end."""
    for sse in decode_text(chunk.decode()):
        event = parse_event(sse.event, sse.data)
        if isinstance(event, Started):
            record.start(event.upstream)
        elif isinstance(event, Delta) and not record.status.terminal and record.started:
            record.add_delta(event)
        elif isinstance(event, Done | ErrorEvent | Cancelled):
            record.finish(event)
            return True
    return False
