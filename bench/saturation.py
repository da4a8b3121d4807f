"""Saturation: with a backlog, does the upstream ever wait for the queue?

    $ python -m bench.saturation       # 100 requests, 4 slots, practice model at 100 tok/s
    $ python -m bench.saturation --smoke

A practice model with 4 slots writes at a modest speed. The upstream itself logs when each
slot is taken and freed and when each request arrives (`bench/slotlog.py`), so busy time and
the idle gap between a slot freeing and the next request starting in it are measured where
they happen, to the microsecond. Two phases against the same upstream, in the same run:

    direct   the baseline: 4 closed-loop clients that send their next request the moment the
             previous one ends (the smallest gap any HTTP client can leave)
    queue    100 requests queued at once through the queue server, each followed by a
             client reading its events, like 100 chat panels

`/practice/stats` is sampled too, as a cross-check, and the queue server's records are read
back at the end (every request done, dispatch numbers 1…N without holes).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench.harness import (
    Goal,
    Result,
    base_parser,
    fmt_ms,
    goal_rows,
    machine,
    machine_lines,
    save_json,
    summary,
    table,
)
from bench.profiling import Profiler, self_by_package, top_frames
from bench.servers import Workspace, practice_argv, start_queue
from bench.slotlog import busy_fraction, refills

__all__ = ["main"]

MODEL = "practice-fast"


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
                    "model": MODEL,
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
    return {"t_submitted": t_first, "events": events, "samples": sampler.samples}


async def _follow(client: httpx.AsyncClient, request_id: str) -> str:
    """Read one request's events to the end, like a chat panel; returns the terminal event."""
    last = ""
    async with client.stream("GET", f"/api/requests/{request_id}/events") as resp:
        async for line in resp.aiter_lines():
            if line.startswith("event:"):
                last = line[6:].strip()
    return last


async def queue_phase(
    queue_url: str, upstream_url: str, n: int, users: int, max_tokens: int, follow: bool
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
        for i in range(n):
            body = {
                "prompt": _prompt(i),
                "model": MODEL,
                "max_tokens": max_tokens,
                "user": f"user{i % users}",
            }
            resp = await client.post("/api/requests", json=body)
            resp.raise_for_status()
            ids.append(resp.json()["id"])
            if follow:
                followers.append(asyncio.create_task(_follow(client, ids[-1])))
        t_submitted = time.monotonic()
        endings = list(await asyncio.gather(*followers))
        while not follow:  # nobody follows the events: poll the records until all ended
            if await _all_ended(client, ids):
                break
            await asyncio.sleep(0.1)
        await sampler.stop()
        events = (await upstream.get("/bench/slot-log")).json()["events"]
        records = [(await client.get(f"/api/requests/{i}")).json() for i in ids]
    return {
        "t_first_submit": t_first,
        "t_submitted": t_submitted,
        "endings": endings,
        "events": events,
        "samples": sampler.samples,
        "records": records,
    }


async def _all_ended(client: httpx.AsyncClient, ids: Sequence[str]) -> bool:
    for request_id in ids:
        status = (await client.get(f"/api/requests/{request_id}")).json()["status"]
        if status in ("queued", "running"):
            return False
    return True


# ---------------------------------------------------------------------------- analysis


def analyse(run: dict[str, Any], slots: int) -> dict[str, Any]:
    """Busy fraction and refill gaps while requests waited: from all submitted to last start."""
    events = run["events"]
    starts = sorted(t for t, kind, *_ in events if kind == "start")
    ends = sorted(t for t, kind, *_ in events if kind == "end")
    t0 = run["t_submitted"]
    t1 = starts[-1] if starts else t0
    pairs = refills(events, t0, t1)
    in_window = [a for t, a in run["samples"] if t0 <= t <= t1]
    span = ends[-1] - starts[0] if starts and ends else float("nan")
    return {
        "window_s": t1 - t0,
        "upstream_requests": len(starts),
        "busy_fraction": busy_fraction(events, slots, t0, t1),
        "busy_fraction_sampled": statistics.fmean(in_window) / slots if in_window else None,
        "samples_in_window": len(in_window),
        "gap_s": summary([s - f for f, _, s in pairs]),
        "gap_to_arrival_s": summary([a - f for f, a, _ in pairs]),
        "arrival_to_start_s": summary([s - a for _, a, s in pairs]),
        "gaps_over_1ms": sum(s - f > 0.001 for f, _, s in pairs),
        "throughput_rps": len(starts) / span if span > 0 else None,
    }


def check_records(run: dict[str, Any]) -> dict[str, Any]:
    """What the queue server's own records say: all done, dispatch numbers without holes."""
    records = run["records"]
    dispatch = sorted(r["dispatch_no"] for r in records if r["dispatch_no"] is not None)
    service = [r["timings"]["total_s"] - r["timings"]["waited_s"] for r in records]
    endings: dict[str, int] = {}
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
        "submit_s": run["t_submitted"] - run["t_first_submit"],
    }


def _pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f} %"


def _ms3(s: dict[str, float], key: str) -> str:
    return fmt_ms(s.get(key), 3)


# ---------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> Result:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--tokens-per-second", type=float, default=100)
    parser.add_argument("--first-token-latency", type=float, default=0.05)
    parser.add_argument("--max-tokens", type=int, default=30)
    parser.add_argument(
        "--no-follow",
        action="store_true",
        help="submit only: nobody reads the events (isolates the cost of event streams)",
    )
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.requests, ns.max_tokens, ns.tokens_per_second = 12, 10, 200
    result = Result("saturation", machine())
    print(machine_lines(result.machine))
    with Workspace() as ws:
        upstream = ws.start(
            practice_argv(
                tokens_per_second=ns.tokens_per_second,
                first_token_latency_s=ns.first_token_latency,
                parallel=ns.slots,
                slot_log=True,
            ),
            "/v1/models",
            name="practice",
        )
        limit = str(max(ns.requests, 20))
        queue = start_queue(
            ws, ns, upstream.url + "/v1", "--max-queue", limit, "--max-per-user", limit
        )
        direct = asyncio.run(direct_phase(upstream.url, ns.requests, ns.slots, ns.max_tokens))
        cpu0 = queue.cpu_s()
        coro = queue_phase(
            queue.url, upstream.url, ns.requests, ns.users, ns.max_tokens, not ns.no_follow
        )
        profile_out = ns.profile / "saturation-queue.txt" if ns.profile else None
        if profile_out is not None:
            with Profiler(queue.pid, profile_out):
                queued = asyncio.run(coro)
        else:
            queued = asyncio.run(coro)
        cpu = queue.cpu_s() - cpu0

    phases = {"direct": analyse(direct, ns.slots), "queue": analyse(queued, ns.slots)}
    records = check_records(queued)
    print(
        f"\n{ns.requests} requests, {ns.slots} slots, practice model at "
        f"{ns.tokens_per_second:g} tok/s after {ns.first_token_latency:g} s, "
        f"{ns.max_tokens} tokens each; queue phase: {ns.users} users, "
        f"{'one event reader per request' if not ns.no_follow else 'no event readers'}"
    )
    rows = []
    for name, p in phases.items():
        rows.append(
            [
                name,
                _pct(p["busy_fraction"], 3),
                _pct(p["busy_fraction_sampled"]),
                p["gap_s"]["n"],
                _ms3(p["gap_s"], "median"),
                _ms3(p["gap_s"], "p99"),
                _ms3(p["gap_s"], "max"),
                _ms3(p["gap_to_arrival_s"], "median"),
                _ms3(p["arrival_to_start_s"], "median"),
            ]
        )
    print(
        table(
            [
                "phase",
                "upstream busy",
                "busy (sampled)",
                "refills",
                "gap median ms",
                "gap p99 ms",
                "gap max ms",
                "freed→arrived median ms",
                "arrived→started median ms",
            ],
            rows,
        )
    )
    q, d = phases["queue"], phases["direct"]
    added_gap = q["gap_s"]["median"] - d["gap_s"]["median"]
    print(
        f"\nqueue vs direct: gap median {_ms3(q['gap_s'], 'median')} vs "
        f"{_ms3(d['gap_s'], 'median')} ms (+{fmt_ms(added_gap, 3)} ms); "
        f"idle {_pct(1 - q['busy_fraction'], 3)} vs {_pct(1 - d['busy_fraction'], 3)}"
    )
    print(
        f"queue server records: {records['done']}/{records['requests']} done, dispatch numbers "
        f"without holes: {records['dispatch_contiguous']}, event readers ended with "
        f"{records['followers_ended_with']}, queue server CPU {cpu:.2f} s "
        f"for {records['tokens']} tokens"
    )
    result.goals = [
        Goal(
            "upstream busy while requests wait",
            "≥ 99.5 %",
            _pct(q["busy_fraction"]),
            q["busy_fraction"] >= 0.995,
        ),
        Goal(
            "slot freed → next start",
            "≤ 1 ms median",
            f"{_ms3(q['gap_s'], 'median')} ms",
            q["gap_s"]["median"] <= 0.001,
        ),
    ]
    print("\n" + goal_rows(result.goals))
    profile = None
    if profile_out is not None:
        profile = self_by_package(profile_out) + "\n" + top_frames(profile_out, top=30)
        print("\n" + profile)
    settings = {k: v for k, v in vars(ns).items() if k not in ("json", "profile")}
    result.data = {
        "settings": settings,
        "phases": phases,
        "records": records,
        "queue_cpu_s": cpu,
        "profile": profile,
    }
    save_json(ns.json, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
