"""One writer per replica for every request's shared event log: one round trip per gather.

    >>> Job("r1", after=2, frames=[b"a", b"b"], last=False).next_after  # events 3 and 4
    4

With `--redis`, each request this replica holds has its frames copied to a Redis stream.
A class of a thousand waiting students gets a `queued` event each, several times a
second; a round trip per request per event would be thousands of writes a second on the
event loop that also serves this replica's clients. So each request only notes that it has
new frames (a tiny task waiting on its record, as any stream reader does), and one writer
gathers for `GATHER_S`, then writes everything new, for every request, in one pipeline.
Order within a request is kept (a request's frames are written in order, one batch after
the other); nothing is skipped (a batch Redis did not take is tried again, whole).
"""

from __future__ import annotations

import logging

import anyio
from anyio.abc import TaskGroup

from .records import Record
from .store.errors import StoreUnavailable
from .store.redis_events import EventLogs, Job

__all__ = ["GATHER_S", "Job", "LogWriter"]

log = logging.getLogger("tlc.replica")

#: seconds the writer gathers new frames before one pipeline writes them: the log on
#: other replicas lags this much behind a request's own replica
GATHER_S = 0.01
RETRY_S = 0.5  #: a batch Redis did not take is tried again this often
FINAL_S = 2.0  #: at most this long for the last write, when the replica stops


class LogWriter:
    def __init__(self, logs: EventLogs, keep_s: float, task_group: TaskGroup) -> None:
        self.logs = logs
        self.keep_s = keep_s
        self._tg = task_group
        self._records: dict[str, Record] = {}  # followed, not ended in the log yet
        self._written: dict[str, int] = {}  # request id -> frames in its log
        self._unopened: set[str] = set()  # its `who` note still to write
        self._dirty: dict[str, None] = {}  # ids with new frames, in order of change
        self._wake = anyio.Event()

    def follow(self, record: Record, opened: bool, written: int = 0) -> None:
        """Copy `record`'s frames to its log from now on (`opened`: its note is written;
        `written`: its first frames are in the log already — a dead replica's, adopted)."""
        self._records[record.id] = record
        self._written[record.id] = written
        if not opened:
            self._unopened.add(record.id)
        self._tg.start_soon(self._watch, record, name=f"log {record.id}")

    async def _watch(self, record: Record) -> None:
        seen = 0
        while record.id in self._records:
            await record.wait_beyond(seen)
            seen = len(record.frames)
            self._dirty[record.id] = None
            self._wake.set()
            if record.status.terminal:
                return

    async def run(self) -> None:
        """Write what changed, every `GATHER_S` while something does."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await anyio.sleep(GATHER_S)
            batch, self._dirty = self._dirty, {}
            await self._write(batch)

    async def flush(self) -> None:
        """Write everything not written yet, once (`FINAL_S` at most), even when cancelled:
        at a stop, which ends every request first, those endings must reach the log."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(FINAL_S):
            await self._write(dict.fromkeys(self._records), final=True)

    async def _write(self, batch: dict[str, None], final: bool = False) -> None:
        jobs = [job for job in map(self._job, batch) if job is not None]
        try:
            ended = await self.logs.append_many(jobs, self.keep_s)
        except StoreUnavailable as down:
            log.warning("event logs wait: %s", down)
            if not final:
                self._dirty = {**batch, **self._dirty}  # again, first, in the same order
                self._wake.set()
                await anyio.sleep(RETRY_S)
            return
        for job in jobs:
            self._unopened.discard(job.request_id)
            self._written[job.request_id] = job.next_after
            if job.last or job.request_id in ended:
                if job.request_id in ended:  # a survivor ended it: thought dead
                    log.warning("request %s was ended by another replica", job.request_id)
                self.forget(job.request_id)

    def _job(self, request_id: str) -> Job | None:
        record = self._records.get(request_id)
        if record is None:
            return None
        after = self._written[request_id]
        last = record.status.terminal  # then the terminal frame is the last of them
        frames = record.frames[after:]
        who = (record.user, record.model) if request_id in self._unopened else None
        return Job(request_id, after, frames, last, who) if frames or who else None

    def forget(self, request_id: str) -> None:
        """Write nothing more for this request (another replica writes its log now)."""
        self._records.pop(request_id, None)
        self._written.pop(request_id, None)
        self._unopened.discard(request_id)
