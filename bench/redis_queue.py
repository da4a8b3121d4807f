"""The shared store's cost per step: the Redis queue and leases against the embedded ones.

    $ python -m bench.redis_queue            # 5,000 waiting requests from 200 users
    $ python -m bench.redis_queue --smoke    # a few hundred: checks that it runs
    $ python -m bench.redis_queue --redis redis://127.0.0.1:6379/0   # an existing Redis

Both stores get the same work in the same run: push N requests from U users (three
priority classes, two models), compute the full order for positions a few times, start
them all with `pop_next` (one model busy half the time), and take and give back a slot
lease K times. Each step is timed on its own (a loopback round trip plus the Lua step for
Redis; a method call for the embedded store), and the table gives the median and p99 per
step in microseconds. Without `--redis` a private `redis-server` is started on a free
loopback port (no persistence) and stopped at the end.
"""

from __future__ import annotations

import shutil
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from bench.harness import (
    Result,
    base_parser,
    machine,
    machine_lines,
    save_json,
    summary,
    table,
)
from tlc_widgets.server.scheduler import Entry
from tlc_widgets.server.store import EmbeddedQueue, EmbeddedSlots, FairQueue, SlotLeases
from tlc_widgets.server.store.redis_queue import RedisQueue, connect
from tlc_widgets.server.store.redis_slots import RedisSlots

__all__ = ["main"]

STEPS = [
    "push",
    "order (all)",
    "order (one model)",
    "pop_next",
    "lease + release",
    "pop_and_lease + release",
]


async def timed(samples: list[float], step: Callable[[], Awaitable[Any]]) -> Any:
    start = time.perf_counter()
    out = await step()
    samples.append(time.perf_counter() - start)
    return out


async def run(
    queue: FairQueue, slots: SlotLeases, n: int, users: int, leases: int
) -> dict[str, list[float]]:
    t: dict[str, list[float]] = {step: [] for step in STEPS}
    for i in range(n):
        entry = Entry(f"r{i}", f"user{i % users}", "m" if i % 3 else "n", priority=i % 7 // 3)
        await timed(t["push"], lambda e=entry: queue.push(e))  # type: ignore[misc]
    for _ in range(max(3, n // 500)):
        await timed(t["order (all)"], queue.order)
        await timed(t["order (one model)"], lambda: queue.order("m"))
    popped = 0
    while popped < n:
        eligible = {"m", "n"} if popped % 2 else {"m"}
        entry = await timed(t["pop_next"], lambda el=eligible: queue.pop_next(el))  # type: ignore[misc]
        if entry is None:
            entry = await timed(t["pop_next"], queue.pop_next)
        popped += entry is not None
    for _ in range(leases):

        async def lease_and_release() -> None:
            lease = await slots.acquire("box|m", 4)
            assert lease is not None
            await slots.release(lease)

        await timed(t["lease + release"], lease_and_release)
    for i in range(leases):
        await queue.push(Entry(f"s{i}", f"user{i % users}", "m"))
    pools = {"m": [("box|m", 4), ("other|m", 4)]}
    for _ in range(leases):

        async def start_and_release() -> None:
            got = await queue.pop_and_lease(slots, pools)
            assert got is not None
            await slots.release(got[1])

        await timed(t["pop_and_lease + release"], start_and_release)
    return t


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}"


def main(argv: Sequence[str] | None = None) -> Result:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests pushed and popped")
    parser.add_argument("--users", type=int, default=200, help="distinct users among them")
    parser.add_argument("--leases", type=int, default=2000, help="lease + release pairs")
    parser.add_argument(
        "--redis", help="use this Redis (redis://host:port/db) instead of a private one"
    )
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.requests, ns.users, ns.leases = 300, 20, 200
    result = Result("redis_queue", machine())
    print(machine_lines(result.machine))

    server = None
    url = ns.redis
    if url is None:
        from tests.redis_fixture import RedisServer

        executable = shutil.which("redis-server")
        if executable is None:
            sys.exit("redis_queue: redis-server is not installed (apt-get install -y redis-server)")
        server = RedisServer(executable)
        server.start()
        url = server.url

    async def both() -> dict[str, dict[str, list[float]]]:
        client = connect(url)
        name = f"bench-{uuid.uuid4().hex[:8]}"
        try:
            args = (ns.requests, ns.users, ns.leases)
            return {
                "embedded": await run(EmbeddedQueue(), EmbeddedSlots(ttl_s=30), *args),
                "redis": await run(RedisQueue(client, name), RedisSlots(client, name, 30), *args),
            }
        finally:
            await RedisQueue(client, name).clear()
            await client.aclose()

    try:
        timings = anyio.run(both)
    finally:
        if server is not None:
            server.stop()
    rows = []
    for step in STEPS:
        e, r = summary(timings["embedded"][step]), summary(timings["redis"][step])
        result.data[step] = {"embedded": e, "redis": r}
        rows.append([step, e["n"], us(e["median"]), us(e["p99"]), us(r["median"]), us(r["p99"])])
    print(f"\n{ns.requests} requests from {ns.users} users, {ns.leases} leases; µs per step\n")
    print(
        table(["step", "n", "embedded median", "embedded p99", "Redis median", "Redis p99"], rows)
    )
    save_json(ns.json, result)
    return result


if __name__ == "__main__":
    main()
