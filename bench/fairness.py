"""Fairness: one heavy user with 20 queued prompts must not hold up five light users.

    $ python -m bench.fairness
    $ python -m bench.fairness --smoke

One slot (a practice model with `--parallel 1`, ~0.11 s per answer), a fresh queue server
per scenario, so dispatch numbers count from 1:

    staggered    heavy queues 20; light user j sends one prompt while heavy's request
                 1 + 3j is running
    burst        heavy queues 20; all five light users send one prompt at the same moment
    closed-loop  heavy queues 20; each light user keeps one prompt in the queue (sends the next
                 as soon as the last is done) until heavy's last prompt has started: all six
                 are backlogged the whole time, so each should get a sixth of the dispatches

A light request's delay is counted in dispatches: 1 means it was the next request to start
after it arrived. "FIFO" is where a first-come-first-served queue would have started it (the
baseline). Jain's index over the six users' dispatches in the closed-loop window is 1.0 when
all got the same, 1/6 when one got everything.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.harness import (
    Goal,
    Result,
    base_parser,
    goal_rows,
    machine,
    machine_lines,
    save_json,
    table,
)
from bench.servers import Workspace, practice_argv, start_queue

__all__ = ["jain", "main"]

MODEL = "practice-fast"


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
            "model": MODEL,
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


def main(argv: Sequence[str] | None = None) -> Result:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--heavy", type=int, default=20)
    parser.add_argument("--lights", type=int, default=5)
    parser.add_argument("--every", type=int, default=3, help="staggered: dispatches apart")
    parser.add_argument("--tokens-per-second", type=float, default=200)
    parser.add_argument("--first-token-latency", type=float, default=0.01)
    parser.add_argument("--max-tokens", type=int, default=20)
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.heavy, ns.lights, ns.every, ns.max_tokens = 6, 2, 2, 8
    result = Result("fairness", machine())
    print(machine_lines(result.machine))
    runs: dict[str, dict[str, Any]] = {}
    with Workspace() as ws:
        upstream = ws.start(
            practice_argv(
                tokens_per_second=ns.tokens_per_second,
                first_token_latency_s=ns.first_token_latency,
                parallel=1,
            ),
            "/v1/models",
            name="practice",
        )
        limit = str(ns.heavy + 10)
        scenarios = {
            "staggered": lambda s: staggered(s, ns.heavy, ns.lights, ns.every),
            "burst": lambda s: burst(s, ns.heavy, ns.lights, at=3),
            "closed-loop": lambda s: closed_loop(s, ns.heavy, ns.lights),
        }
        for name, scenario in scenarios.items():
            queue = start_queue(
                ws, ns, upstream.url + "/v1", "--max-per-user", limit, name=f"queue-{name}"
            )

            async def run(url: str = queue.url, scenario: Any = scenario) -> dict[str, Any]:
                async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                    return await scenario(Scenario(client, ns.max_tokens))  # type: ignore[no-any-return]

            started = time.monotonic()
            runs[name] = asyncio.run(run())
            runs[name]["wall_s"] = time.monotonic() - started
            queue.stop()

    print(
        f"\n1 slot; heavy user queues {ns.heavy}, {ns.lights} light users; practice model at "
        f"{ns.tokens_per_second:g} tok/s after {ns.first_token_latency:g} s, "
        f"{ns.max_tokens} tokens per answer"
    )
    rows = []
    delays: list[int] = []
    for name in ("staggered", "burst"):
        for light in runs[name]["lights"]:
            delays.append(light["delay"] if light["delay"] is not None else 10**6)
            raced = light["dispatched_after"] != light["dispatched_before"]
            rows.append(
                [
                    name,
                    light["user"],
                    f"{light['dispatched_before']}{' (raced)' if raced else ''}",
                    light["dispatch_no"],
                    light["delay"],
                    light["dispatched_before"] + light["waiting_before"] + 1,
                    f"{1000 * (light['waited_s'] or 0):.0f}",
                ]
            )
    print(
        table(
            [
                "scenario",
                "light user",
                "arrived after dispatch",
                "started as dispatch",
                "dispatches until it started",
                "FIFO would start it as",
                "waited ms",
            ],
            rows,
        )
    )
    loop = runs["closed-loop"]
    print(f"\nclosed loop: the {loop['window_dispatches']} dispatches until heavy's last start")
    print(
        table(
            ["user", "dispatches", "tokens"],
            [[u, loop["dispatches"][u], loop["tokens"][u]] for u in loop["dispatches"]],
        )
    )
    print(
        f"Jain's index: {loop['jain_dispatches']:.4f} (dispatches), "
        f"{loop['jain_tokens']:.4f} (tokens)"
    )
    worst = max(delays) if delays else None
    result.goals = [
        Goal(
            "each light request starts within the next 5 dispatches",
            "≤ 5",
            f"worst {worst}",
            worst is not None and worst <= 5,
        ),
        Goal(
            "Jain's index, backlogged users",
            "≥ 0.99",
            f"{loop['jain_dispatches']:.4f}",
            loop["jain_dispatches"] >= 0.99,
        ),
    ]
    print("\n" + goal_rows(result.goals))
    settings = {k: v for k, v in vars(ns).items() if k not in ("json", "profile")}
    result.data = {"settings": settings, "scenarios": runs}
    save_json(ns.json, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
