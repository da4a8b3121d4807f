"""What one queue server can hold: 10,000 waiting streaming clients, its memory, fresh positions.

    $ python -m bench.hold                      # 10,000 clients, each a user of its own
    $ python -m bench.hold --n 2000 --users 200
    $ python -m bench.hold --smoke

A practice model with 4 slots and slow replies (~1 s each) behind one `tlc serve`, so that
nearly every client waits. The queue is paused, then N clients connect, each submitting one
request and reading its event stream on the same connection (`bench.raw_clients.Waiter`: a
protocol object per connection, no JSON decoding, so the client stays light). Once each
holds its place (the positions are exactly 1…N), the queue resumes for `--hold-s` seconds,
is paused again, and every client still waiting is cancelled (`DELETE /api/requests/{id}`):
draining 10,000 requests at 4 a second would take 40 minutes, and ending them by cancel also
shows that N waiting streams all end cleanly. Every client must see exactly one terminal
event (`cancelled`, or `done` for those that ran).

Measured:

* the server's RSS at baseline (after a warm-up, settled), with N waiting (settled), at its
  peak (sampled every 20 ms, `bench.rss.Rss`) and after the end; its open file descriptors;
* position freshness: for every start while the queue ran, the time from the line changing
  to each waiting client receiving a `queued` event that reflects it. The line changes
  when a request starts: the upstream's slot log (`bench.slotlog`, one monotonic clock for
  every process) or its own client's `started`, whichever came first — a little after the
  real start, so never flattering by more than that. A client at place P has place P − k
  after the k-th start (`bench.many_clients_stats.freshness`); p50 / p99 / max over every
  (client, start) pair, and the (client, start) pairs never told before the cancels;
* the client's and the server's CPU, in cores, over each phase: a client using well under
  a core was not what limited the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import resource
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import uvloop

from bench.harness import Result, base_parser, goal_rows, machine, machine_lines, save_json
from bench.hold_figures import analyse, goals, report
from bench.profiling import Profiler, self_by_package, top_frames
from bench.raw_clients import Client, Waiter, open_waiter, run_client
from bench.rss import Rss, fds, run_many, send, status_of
from bench.servers import ServerProcess, Workspace, practice_argv, raise_fd_limit, start_queue

__all__ = ["main"]

HEADROOM = 512  #: file descriptors beyond one per client: cancels, logs, the upstream


def main(argv: Sequence[str] | None = None) -> Result:
    ns = parse(argv)
    fd_limit = raise_fd_limit(ns.n + HEADROOM)
    if fd_limit < ns.n + HEADROOM:
        print(
            f"open-file hard limit {fd_limit} is too low for {ns.n:,} clients: measuring "
            f"{fd_limit - HEADROOM:,} (raise `ulimit -Hn` to measure more)"
        )
        ns.n = fd_limit - HEADROOM
    result = Result("hold", machine())
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
        limit = str(ns.n)
        ns.queue_env[:0] = [
            f"TLC_MAX_CONNECTIONS={ns.n + HEADROOM}",
            f"TLC_MAX_STREAMS_PER_USER={limit}",
        ]
        queue = start_queue(
            ws, ns, upstream.url + "/v1", "--max-queue", limit, "--max-per-user", limit
        )
        run = uvloop.run(hold(ns, queue, upstream))
    figures = analyse(run, ns)
    print(
        f"\n{ns.n:,} clients from {ns.users:,} users; practice model with {ns.slots} slots at "
        f"{ns.tokens_per_second:g} tok/s after {ns.first_token_latency:g} s, {ns.max_tokens} "
        f"tokens a reply; the queue ran for {ns.hold_s:g} s, then the waiting were cancelled"
    )
    print(report(figures))
    result.goals = goals(figures, ns.n)
    print("\n" + goal_rows(result.goals))
    for name, text in run["profiles"].items():
        print(f"\npy-spy profile of the queue server, {name}:\n{text}")
    settings = {k: v for k, v in vars(ns).items() if k not in ("json", "profile")}
    result.data = {"settings": settings, **figures, "profiles": run["profiles"]}
    save_json(ns.json, result)
    return result


def parse(argv: Sequence[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="waiting clients")
    parser.add_argument("--users", type=int, help="users they belong to (default: one each)")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--tokens-per-second", type=float, default=20)
    parser.add_argument("--first-token-latency", type=float, default=0.2)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--hold-s", type=float, default=30, help="how long the queue runs")
    parser.add_argument("--connect-concurrency", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=8, help="requests run before the baseline")
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.n, ns.hold_s, ns.users = 40, 3.0, ns.users or 10
    ns.users = ns.users or ns.n
    return ns


# ---------------------------------------------------------------------------- the run


async def hold(ns: Any, queue: ServerProcess, upstream: ServerProcess) -> dict[str, Any]:
    port, profiles = queue.port, dict[str, str]()
    warm = [Client(i, f"warm{i}", f"Warming up ({i})") for i in range(ns.warmup)]
    await asyncio.gather(*(run_client(port, c, ns.max_tokens) for c in warm))
    rss = Rss(queue.pid)
    mb = {"baseline": await asyncio.to_thread(rss.settled, 2.0)}
    await send(port, "POST", "/api/admin/pause")
    clients = [
        Client(i, f"user{i % ns.users}", f"Waiting in line (client {i})") for i in range(ns.n)
    ]
    phases: dict[str, dict[str, float]] = {}
    with rss:
        async with phase(phases, "connect", queue), profiled(ns, queue, "connect", profiles):
            gate = asyncio.Semaphore(ns.connect_concurrency)
            trim = asyncio.create_task(keep_latest(clients))
            waiters = await asyncio.gather(*(connect(port, c, ns, gate) for c in clients))
            trim.cancel()
        async with phase(phases, "settle", queue):
            settled = await settle(clients)
        mb["waiting"] = await asyncio.to_thread(rss.settled, 2.0)
        events = [w.events for w in waiters]  # every one is a frame the server keeps
        open_fds = fds(queue.pid)
        await send(upstream.port, "POST", "/bench/slot-log/reset")
        async with phase(phases, "queue runs", queue), profiled(ns, queue, "queue runs", profiles):
            await send(port, "POST", "/api/admin/resume")
            await asyncio.sleep(ns.hold_s)
            await send(port, "POST", "/api/admin/pause")
        await asyncio.sleep(1.0)  # the last starts' positions reach everyone before the cancels
        log = _json(await send(upstream.port, "GET", "/bench/slot-log"))["events"]
        async with phase(phases, "cancel", queue):
            ended = await end_all(port, clients, waiters)
    mb["peak"] = rss.peak
    mb["after"] = await asyncio.to_thread(rss.settled, 2.0)
    started = [c for c in clients if c.t_started is not None]
    views = await asyncio.gather(*(send(port, "GET", f"/api/requests/{c.id}") for c in started))
    dispatch_no = {c.id: _json(v)["dispatch_no"] for c, v in zip(started, views, strict=True)}
    return {
        "clients": clients,
        "settled_s": settled,
        "rss_mb": {k: round(v, 1) for k, v in mb.items()},
        "server_fds_waiting": open_fds,
        "events_per_client_at_resume": events,
        "phases": phases,
        "t_resume": phases["queue runs"]["t0"],
        "t_cancel": phases["cancel"]["t0"],
        "log": log,
        "dispatch_no": dispatch_no,
        "cancels": ended,
        "profiles": profiles,
    }


async def connect(port: int, client: Client, ns: Any, gate: asyncio.Semaphore) -> Waiter:
    """One client in line; at most `gate`'s worth still connecting at once (a burst of
    10,000 SYNs would overflow the listening socket's backlog)."""
    async with gate:
        return await open_waiter(port, client, ns.max_tokens)


async def keep_latest(clients: Sequence[Client]) -> None:
    """Drop all but each client's latest place, every second while the line fills: only the
    place at the resume counts, and every newcomer changes `waiting` for everyone (10,000
    clients would otherwise keep millions of updates)."""
    while True:
        await asyncio.sleep(1.0)
        for c in clients:
            del c.queued[:-1]


async def settle(clients: Sequence[Client], timeout_s: float = 120.0) -> float:
    """Seconds until every waiting client's latest position is its place: 1…N, once each
    (a client whose request already ended, e.g. `upstream_unavailable`, no longer waits)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        places = sorted(c.queued[-1][1] for c in clients if c.queued and not c.ending)
        if places == list(range(1, len(places) + 1)):
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    raise RuntimeError(f"positions did not settle to 1…N within {timeout_s:g} s")


async def end_all(
    port: int, clients: Sequence[Client], waiters: Sequence[Waiter], timeout_s: float = 120.0
) -> dict[str, int]:
    """Cancel every client still waiting; wait until every connection has closed."""

    async def cancel(request_id: str) -> str:
        return str(status_of(await send(port, "DELETE", f"/api/requests/{request_id}")))

    waiting = [c.id for c in clients if c.id and c.t_started is None and not c.ending]
    answers = await run_many([functools.partial(cancel, r) for r in waiting], concurrency=32)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(w.ended.wait() for w in waiters)), timeout_s)
    return {f"HTTP {k}": v for k, v in answers.items()}


@contextlib.asynccontextmanager
async def phase(
    out: dict[str, dict[str, float]], name: str, queue: ServerProcess
) -> AsyncIterator[None]:
    """Wall time, and the client's and the server's CPU (in cores) over one phase."""
    usage0, cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), queue.cpu_s(), time.monotonic()
    yield
    usage1, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - t0
    client = usage1.ru_utime - usage0.ru_utime + usage1.ru_stime - usage0.ru_stime
    out[name] = {
        "t0": t0,
        "wall_s": wall,
        "client_cores": client / wall,
        "server_cores": (queue.cpu_s() - cpu0) / wall,
    }


@contextlib.asynccontextmanager
async def profiled(
    ns: Any, queue: ServerProcess, name: str, out: dict[str, str]
) -> AsyncIterator[None]:
    """py-spy on the queue server over one phase, with `--profile DIR`."""
    if ns.profile is None:
        yield
        return
    path = ns.profile / f"hold-{name.replace(' ', '-')}.txt"
    profiler = Profiler(queue.pid, path)
    await asyncio.to_thread(profiler.__enter__)  # it waits for py-spy to attach
    try:
        yield
    finally:
        await asyncio.to_thread(profiler.__exit__)
    out[name] = self_by_package(path) + "\n" + top_frames(path, top=40)


def _json(response: bytes) -> Any:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


if __name__ == "__main__":
    main(sys.argv[1:])
