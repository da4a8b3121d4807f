"""The three scenarios of `bench.fairness`: who starts when, counted in dispatches.

>>> jain([3, 3, 3]), jain([1, 0, 0, 0])
(1.0, 0.25)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.harness import PRACTICE_MODEL

__all__ = ["Light", "Scenario", "burst", "closed_loop", "jain", "staggered"]


def jain(values: Sequence[float]) -> float:
    """Jain's fairness index: (Σx)² / (n·Σx²); 1.0 when all are equal."""
    square_sum = sum(x * x for x in values)
    return sum(values) ** 2 / (len(values) * square_sum) if square_sum else 1.0


@dataclass
class Light:
    user: str
    id: str
    dispatched_before: int  #: requests started when it was submitted
    dispatched_after: int  #: … and when the submission was answered
    waiting_before: int  #: requests waiting when it was submitted (FIFO would serve them first)
    dispatch_no: int | None = None
    waited_s: float | None = None

    @property
    def delay(self) -> int | None:
        """1 = the next request to start after it arrived."""
        return None if self.dispatch_no is None else self.dispatch_no - self.dispatched_before


class Scenario:
    """One queue server, one client, counting submissions so dispatches = sent − waiting."""

    def __init__(self, client: httpx.AsyncClient, max_tokens: int) -> None:
        self.client = client
        self.max_tokens = max_tokens
        self.sent = 0

    async def submit(self, user: str, n: int = 0) -> str:
        body = {
            "prompt": f"Tell me about the White Rabbit ({user} #{n})",
            "model": PRACTICE_MODEL,
            "max_tokens": self.max_tokens,
            "user": user,
        }
        self.sent += 1
        resp = await self.client.post("/api/requests", json=body)
        resp.raise_for_status()
        return str(resp.json()["id"])

    async def queue(self) -> tuple[int, int]:
        """(dispatched so far, waiting now)."""
        snap = (await self.client.get("/api/queue")).json()
        return self.sent - snap["waiting"], snap["waiting"]

    async def wait_dispatched(self, target: int) -> None:
        while True:  # polling: the server is another process
            if (await self.queue())[0] >= target:
                return
            await asyncio.sleep(0.005)

    async def light(self, user: str) -> Light:
        before, waiting = await self.queue()
        request_id = await self.submit(user)
        after, _ = await self.queue()
        return Light(user, request_id, before, after, waiting)

    async def record(self, request_id: str) -> dict[str, Any]:
        return (await self.client.get(f"/api/requests/{request_id}")).json()  # type: ignore[no-any-return]

    async def wait_all(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        while True:
            records = [await self.record(i) for i in ids]
            if all(r["status"] not in ("queued", "running") for r in records):
                return records
            await asyncio.sleep(0.05)

    async def follow(self, request_id: str) -> None:
        async with self.client.stream("GET", f"/api/requests/{request_id}/events") as resp:
            async for _ in resp.aiter_lines():
                pass


async def staggered(s: Scenario, heavy: int, lights: int, every: int) -> dict[str, Any]:
    heavy_ids = [await s.submit("heavy", i) for i in range(heavy)]
    arrived = []
    for j in range(lights):
        await s.wait_dispatched(1 + every * j)
        await asyncio.sleep(0.03)  # well inside a running request: no dispatch races us
        arrived.append(await s.light(f"light{j}"))
    return await _finish(s, heavy_ids, arrived)


async def burst(s: Scenario, heavy: int, lights: int, at: int) -> dict[str, Any]:
    heavy_ids = [await s.submit("heavy", i) for i in range(heavy)]
    await s.wait_dispatched(at)
    await asyncio.sleep(0.03)
    before, waiting = await s.queue()
    ids = await asyncio.gather(*(s.submit(f"light{j}") for j in range(lights)))
    after, _ = await s.queue()
    arrived = [Light(f"light{j}", i, before, after, waiting) for j, i in enumerate(ids)]
    return await _finish(s, heavy_ids, arrived)


async def _finish(s: Scenario, heavy_ids: list[str], arrived: list[Light]) -> dict[str, Any]:
    records = await s.wait_all(heavy_ids + [a.id for a in arrived])
    by_id = {r["id"]: r for r in records}
    for a in arrived:
        a.dispatch_no = by_id[a.id]["dispatch_no"]
        a.waited_s = by_id[a.id]["timings"]["waited_s"]
    return {
        "lights": [a.__dict__ | {"delay": a.delay} for a in arrived],
        "all_done": all(r["status"] == "done" for r in records),
    }


async def closed_loop(s: Scenario, heavy: int, lights: int) -> dict[str, Any]:
    heavy_ids = [await s.submit("heavy", i) for i in range(heavy)]
    mine: dict[str, list[str]] = {f"light{j}": [] for j in range(lights)}
    heavy_waiting = True

    async def user(name: str) -> None:
        n = 0
        while heavy_waiting:
            request_id = await s.submit(name, n)
            mine[name].append(request_id)
            await s.follow(request_id)
            n += 1

    async def watch_heavy() -> None:
        nonlocal heavy_waiting
        while heavy_waiting:
            records = [await s.record(i) for i in heavy_ids[-1:]]
            heavy_waiting = records[0]["status"] == "queued"
            await asyncio.sleep(0.01)

    await asyncio.gather(watch_heavy(), *(user(name) for name in mine))
    ids = heavy_ids + [i for ids in mine.values() for i in ids]
    records = await s.wait_all(ids)
    by_id = {r["id"]: r for r in records}
    window = max(by_id[i]["dispatch_no"] for i in heavy_ids)
    counts, tokens = {}, {}
    for name, user_ids in [("heavy", heavy_ids), *mine.items()]:
        inside = [by_id[i] for i in user_ids if (by_id[i]["dispatch_no"] or window + 1) <= window]
        counts[name] = len(inside)
        tokens[name] = sum(r["tokens"] for r in inside)
    return {
        "window_dispatches": window,
        "dispatches": counts,
        "tokens": tokens,
        "jain_dispatches": jain(list(counts.values())),
        "jain_tokens": jain(list(tokens.values())),
        "all_done": all(r["status"] == "done" for r in records),
    }
