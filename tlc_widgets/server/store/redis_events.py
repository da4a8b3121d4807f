"""Each request's event log as a Redis stream, so that any replica can send it to a client.

    >>> import anyio
    >>> async def demo() -> list[bytes]:
    ...     logs = EventLogs(connect("redis://127.0.0.1:6379/0"), name="class-a", replica="r1")
    ...     await logs.open("r-1", user="ann", keep_s=60)
    ...     await logs.append(Job("r-1", 0, [b"event: queued ...", b"event: done ..."], True), 60)
    ...     return [f async for f in logs.frames("r-1", after=1, idle_s=15)]
    >>> anyio.run(demo)  # doctest: +SKIP
    [b'event: done ...']

The replica that holds a request writes its frames (already encoded, `id:` included) to
`tlc:{name}:ev:<id>`, each under the stream id `0-<event id>`: a client's `Last-Event-ID: N`
is the stream position `0-N`, so a resume on any replica is one `XREAD` from there. The last
entry carries `t=1`: a reader stops there. `tlc:{name}:who:<id>` says whose request it is
(user, replica) for the routes' checks, and the hash `tlc:{name}:live` (id -> replica) lists
the requests not ended yet: when a replica stops renewing `tlc:{name}:alive:<replica>`
(killed), a survivor ends each of its requests with one terminal event (`lua/events.lua`,
atomic: never a second terminal event, never one after the holder's own).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from ...sse import KEEPALIVE
from .errors import StoreUnavailable
from .redis_conn import connect, guard, script_text

__all__ = ["EventLogs", "Job", "connect"]

#: how long one XREAD blocks (below the client's 2 s socket timeout)
BLOCK_MS = 1000
#: a reader of the shared log says so every BLOCK_MS; the note lasts this long
WATCH_MS = 5000


@dataclass(slots=True)
class Job:
    """New frames of one request: events `after + 1` …; `last`: the final one is terminal."""

    request_id: str
    after: int
    frames: list[bytes]
    last: bool
    open_as: tuple[str, str] | None = None  #: (user, model): note the request first

    @property
    def next_after(self) -> int:
        return self.after + len(self.frames)


class EventLogs:
    """The event streams of one queue name; `replica` names this process in them."""

    def __init__(self, client: Redis, name: str, replica: str) -> None:
        self.client = client
        self.prefix = f"tlc:{{{name}}}:"
        self.replica = replica
        self.cancel_channel = self.prefix + "cancel"
        self.alive_key = f"{self.prefix}alive:{replica}"  #: set while this replica lives
        self._end = client.register_script(script_text("events.lua"))

    def _key(self, request_id: str) -> str:
        return f"{self.prefix}ev:{request_id}"

    async def open(self, request_id: str, user: str, keep_s: float, model: str = "") -> None:
        """Note a request this replica holds (before its first frame is written)."""
        with guard(self.client):
            async with self.client.pipeline(transaction=True) as pipe:
                self._open_into(pipe, request_id, user, model, keep_s)
                await pipe.execute()

    async def append(self, job: Job, keep_s: float) -> None:
        """Write one job's frames; the log is kept `keep_s` after its terminal one."""
        with guard(self.client):
            async with self.client.pipeline(transaction=False) as pipe:  # one writer per log
                self._append_into(pipe, job, keep_s)
                await pipe.execute()

    def _open_into(
        self, pipe: Pipeline, request_id: str, user: str, model: str, keep_s: float
    ) -> None:
        who = json.dumps({"user": user, "replica": self.replica, "model": model})
        pipe.set(f"{self.prefix}who:{request_id}", who, px=_ms(max(keep_s, 86_400)))
        pipe.hset(f"{self.prefix}live", request_id, self.replica)

    def _append_into(self, pipe: Pipeline, job: Job, keep_s: float) -> None:
        key = self._key(job.request_id)
        for n, data in enumerate(job.frames, start=job.after + 1):
            fields = {"f": data, "t": 1} if job.last and n == job.next_after else {"f": data}
            pipe.xadd(key, fields, id=f"0-{n}")  # type: ignore[arg-type]
        if job.last:
            pipe.pexpire(key, _ms(keep_s))
            pipe.pexpire(f"{self.prefix}who:{job.request_id}", _ms(keep_s))
            pipe.hdel(f"{self.prefix}live", job.request_id)
        elif job.frames:
            pipe.pexpire(key, _ms(max(keep_s, 86_400)))  # a log nobody ends still goes

    async def append_many(self, jobs: Sequence[Job], keep_s: float) -> set[str]:
        """Every job's frames in one round trip (in order within each request); the ids
        whose log another replica had ended already (we were taken for dead)."""
        if not jobs:
            return set()
        spans: list[tuple[str, int, int]] = []
        with guard(self.client):
            async with self.client.pipeline(transaction=False) as pipe:
                for job in jobs:
                    first = len(pipe)
                    if job.open_as is not None:
                        self._open_into(pipe, job.request_id, *job.open_as, keep_s)
                    self._append_into(pipe, job, keep_s)
                    spans.append((job.request_id, first, len(pipe)))
                results = await pipe.execute(raise_on_error=False)
        return {rid for rid, a, b in spans if any(isinstance(r, Exception) for r in results[a:b])}

    async def owner(self, request_id: str) -> dict[str, str] | None:
        """{"user", "replica"} of a request any replica holds, or None (unknown, or expired)."""
        with guard(self.client):
            raw = await self.client.get(f"{self.prefix}who:{request_id}")
        return None if raw is None else dict(json.loads(raw))

    async def logged(self, request_id: str) -> list[bytes]:
        """Every frame of a request's log so far."""
        with guard(self.client):
            entries: Any = await self.client.xrange(self._key(request_id))
        return [fields[b"f"] for _, fields in entries]

    async def ask_cancel(self, request_id: str, by: str) -> None:
        """Ask whichever replica holds the request to cancel it (it writes the ending)."""
        message = json.dumps({"id": request_id, "by": by})
        with guard(self.client):
            await self.client.publish(self.cancel_channel, message)

    async def frames(self, request_id: str, after: int, idle_s: float) -> AsyncIterator[bytes]:
        """The frames after event `after`, then each new one, until the terminal one; a
        keep-alive after `idle_s` without any."""
        key, last, idle, told = self._key(request_id), f"0-{after}", 0.0, 0.0
        while True:
            try:
                if time.monotonic() - told >= BLOCK_MS / 1000:  # its replica must not cancel it
                    told = time.monotonic()
                    await self._watching(request_id)
                with guard(self.client):
                    reply: Any = await self.client.xread({key: last}, count=500, block=BLOCK_MS)
                end = None if reply else await self._ended_before(key, last)
            except StoreUnavailable:  # slow or restarting: the client stays, pings go on
                reply, end = None, None
                await anyio.sleep(BLOCK_MS / 1000)
            if not reply:
                if end is not None:  # its replica died after the client saw more than the log
                    yield end
                    return
                idle += BLOCK_MS / 1000
                if idle >= idle_s:
                    idle = 0.0
                    yield KEEPALIVE
                continue
            idle = 0.0
            entries = reply[0][1]
            yield b"".join(fields[b"f"] for _, fields in entries)
            if b"t" in entries[-1][1]:
                return
            last = entries[-1][0].decode()

    async def _watching(self, request_id: str) -> None:
        with guard(self.client):
            await self.client.set(f"{self.prefix}watch:{request_id}", 1, px=WATCH_MS)

    async def watched(self, request_id: str) -> bool:
        """Whether a client reads this request on some replica (in the last few seconds)."""
        with guard(self.client):
            return bool(await self.client.exists(f"{self.prefix}watch:{request_id}"))

    async def _ended_before(self, key: str, after: str) -> bytes | None:
        """The terminal frame, if the log ended at or before `after`: a survivor ends a dead
        replica's request after the frames the log has, which may be fewer than a client
        saw straight from that replica; without this, that client would wait forever."""
        with guard(self.client):
            tail: Any = await self.client.xrevrange(key, count=1)
        if not tail or b"t" not in tail[0][1]:
            return None
        return bytes(tail[0][1][b"f"])

    async def final(self, request_id: str) -> bytes | None:
        """The terminal frame of a request's log, if it has ended."""
        return await self._ended_before(self._key(request_id), "")

    async def heartbeat(self, ttl_s: float) -> bool:
        """Say this replica is alive for `ttl_s` more; False if it had stopped saying so
        long enough for the others to take it for dead (its key had run out)."""
        with guard(self.client):
            return await self.client.set(self.alive_key, 1, px=_ms(ttl_s), get=True) is not None

    async def holder(self, request_id: str) -> str | None:
        """The replica a live request's log names, or None (ended, or unknown)."""
        with guard(self.client):
            raw: Any = await self.client.hget(f"{self.prefix}live", request_id)  # type: ignore[misc]
        return None if raw is None else str(raw.decode())

    async def end_orphans(self, data: str, keep_s: float) -> list[str]:
        """End, with one `error` event whose JSON is `data`, every live request of replicas
        that stopped saying they are alive; the ids it ended."""
        with guard(self.client):
            raw: Any = await self.client.hgetall(f"{self.prefix}live")  # type: ignore[misc]
            live = {i.decode(): r.decode() for i, r in raw.items()}
            ended: list[str] = []
            for replica in set(live.values()):
                if await self.client.exists(f"{self.prefix}alive:{replica}"):
                    continue
                for request_id in [i for i, r in live.items() if r == replica]:
                    who = f"{self.prefix}who:{request_id}"
                    keys = [self._key(request_id), f"{self.prefix}live", who, self.prefix + "e"]
                    args: list[str | int] = [request_id, replica, data, _ms(keep_s)]
                    if await self._end(keys=keys, args=args):
                        ended.append(request_id)
        return ended


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
