"""The two phases of `bench.saturation`, against one upstream that logs its slots, and
what they measured: busy fraction and refill gaps while work waited.

    >>> run = {"t_backlog": 0.0, "samples": [], "events": [  # one slot, one refill
    ...     [0.0, "arrive", ""], [0.0, "start", ""], [1.0, "end", ""],
    ...     [1.002, "arrive", ""], [1.003, "start", ""], [2.0, "end", ""]]}
    >>> phase = analyse([run], slots=1)
    >>> round(phase["gap_s"]["median"] * 1000, 3), phase["upstream_requests"]
    (3.0, 2)
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench.harness import PRACTICE_MODEL, summary
from bench.slotlog import busy_fraction, refills

__all__ = ["analyse", "check_records", "direct_phase", "queue_phase"]


def _prompt(i: int) -> str:
    return f"Tell me about the White Rabbit (#{i})"


class Sampler:
    """Polls `/practice/stats` every 10 ms: (time, active slots)."""

    def __init__(self, upstream: httpx.AsyncClient) -> None:
        self.upstream = upstream
        self.samples: list[tuple[float, int]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while not self._stop.is_set():
            stats = (await self.upstream.get("/practice/stats")).json()
            self.samples.append((time.monotonic(), int(stats["active"])))
            await asyncio.sleep(0.01)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


# ---------------------------------------------------------------------------- phases


async def direct_phase(upstream_url: str, n: int, slots: int, max_tokens: int) -> dict[str, Any]:
    """`slots` clients, each sending its next request as soon as its last one ended."""
    counter = itertools.count()
    async with httpx.AsyncClient(base_url=upstream_url, timeout=120) as client:
        await client.post("/bench/slot-log/reset")
        sampler = Sampler(client)
        sampler.start()

        async def worker() -> None:
            while (i := next(counter)) < n:
                body = {
                    "model": PRACTICE_MODEL,
                    "messages": [{"role": "user", "content": _prompt(i)}],
                    "max_tokens": max_tokens,
                    "stream": True,
                }
                async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                    async for _ in resp.aiter_raw():
                        pass

        t_first = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(slots)))
        await sampler.stop()
        events = (await client.get("/bench/slot-log")).json()["events"]
    # A closed loop always has its next request ready: work waits from the start.
    return {"t_backlog": t_first, "events": events, "samples": sampler.samples}


async def _follow(client: httpx.AsyncClient, request_id: str) -> str:
    """Read one request's events to the end, like a chat panel; returns the terminal event."""
    last = ""
    async with client.stream("GET", f"/api/requests/{request_id}/events") as resp:
        async for line in resp.aiter_lines():
            if line.startswith("event:"):
                last = line[6:].strip()
    return last


async def queue_phase(
    queue_url: str,
    upstream_url: str,
    n: int,
    slots: int,
    users: int,
    max_tokens: int,
    follow: bool,
) -> dict[str, Any]:
    """`n` requests submitted at once through the queue, each followed by an event reader."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with (
        httpx.AsyncClient(base_url=queue_url, timeout=120, limits=limits) as client,
        httpx.AsyncClient(base_url=upstream_url, timeout=10) as upstream,
    ):
        await upstream.post("/bench/slot-log/reset")
        sampler = Sampler(upstream)
        sampler.start()
        ids: list[str] = []
        followers: list[asyncio.Task[str]] = []
        t_first = time.monotonic()
        t_backlog = None
        for i in range(n):
            body = {
                "prompt": _prompt(i),
                "model": PRACTICE_MODEL,
                "max_tokens": max_tokens,
                "user": f"user{i % users}",
            }
            resp = await client.post("/api/requests", json=body)
            resp.raise_for_status()
            ids.append(resp.json()["id"])
            if i == slots:  # one more than the slots: from now on work waits
                t_backlog = time.monotonic()
            if follow:
                followers.append(asyncio.create_task(_follow(client, ids[-1])))
        t_submitted = time.monotonic()
        t_backlog = t_backlog or t_submitted
        endings = list(await asyncio.gather(*followers))
        while not follow:  # nobody follows the events: poll the records until all ended
            if await _all_ended(client):
                break
            await asyncio.sleep(0.05)
        await sampler.stop()
        events = (await upstream.get("/bench/slot-log")).json()["events"]
        records = [(await client.get(f"/api/requests/{i}")).json() for i in ids]
    return {
        "t_first_submit": t_first,
        "t_submitted": t_submitted,
        "t_backlog": t_backlog,
        "endings": endings,
        "events": events,
        "samples": sampler.samples,
        "records": records,
    }


async def _all_ended(client: httpx.AsyncClient) -> bool:
    # One small GET: polling every record would load the server being measured.
    snapshot = (await client.get("/api/queue")).json()
    return bool(snapshot["waiting"] == 0 and snapshot["running"] == 0)


# ---------------------------------------------------------------------------- analysis


def analyse(runs: Sequence[dict[str, Any]], slots: int, since: str = "t_backlog") -> dict[str, Any]:
    """Busy fraction and refill gaps while requests waited (from the moment more requests
    were accepted than there are slots, to the last start), pooled over rounds: busy time
    over window time, and every refill gap. `since="t_submitted"`: from the last submission
    instead (how this benchmark measured before it ran in rounds)."""
    busy = window = 0.0
    pairs: list[tuple[float, float, float]] = []
    sampled: list[int] = []
    requests = 0
    for run in runs:
        events = run["events"]
        starts = sorted(t for t, kind, *_ in events if kind == "start")
        t0 = run.get(since, run["t_backlog"])
        t1 = starts[-1] if starts else t0
        if t1 > t0:
            busy += busy_fraction(events, slots, t0, t1) * (t1 - t0)
            window += t1 - t0
        pairs += refills(events, t0, t1)
        sampled += [a for t, a in run["samples"] if t0 <= t <= t1]
        requests += len(starts)
    return {
        "rounds": len(runs),
        "window_s": window,
        "upstream_requests": requests,
        "busy_fraction": busy / window if window > 0 else float("nan"),
        "busy_fraction_sampled": statistics.fmean(sampled) / slots if sampled else None,
        "samples_in_window": len(sampled),
        "gap_s": summary([s - f for f, _, s in pairs]),
        "gap_to_arrival_s": summary([a - f for f, a, _ in pairs]),
        "arrival_to_start_s": summary([s - a for _, a, s in pairs]),
        "gaps_over_1ms": sum(s - f > 0.001 for f, _, s in pairs),
    }


def check_records(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the queue server's own records say: all done, dispatch numbers without holes."""
    records = [r for run in runs for r in run["records"]]
    dispatch = sorted(r["dispatch_no"] for r in records if r["dispatch_no"] is not None)
    service = [r["timings"]["total_s"] - r["timings"]["waited_s"] for r in records]
    endings: dict[str, int] = {}
    for run in runs:
        for name in run["endings"]:
            endings[name] = endings.get(name, 0) + 1
    return {
        "requests": len(records),
        "done": sum(r["status"] == "done" for r in records),
        "tokens": sum(r["tokens"] for r in records),
        "followers_ended_with": endings,
        "dispatch_contiguous": bool(dispatch)
        and dispatch == list(range(dispatch[0], dispatch[0] + len(dispatch))),
        "mean_service_s": statistics.fmean(service) if service else None,
        "submit_s": statistics.fmean(r["t_submitted"] - r["t_first_submit"] for r in runs),
    }
