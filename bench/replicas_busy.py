"""Upstream busy fraction with 3 `tlc serve --redis` replicas and 1,000 clients (#15).

    $ python -m bench.replicas_busy              # 3 replicas, 1,000 clients, 4 slots, 2 rounds
    $ python -m bench.replicas_busy --smoke      # 30 clients: checks that it runs
    $ python -m bench.replicas_busy --redis redis://127.0.0.1:6379/0   # an existing Redis

One practice model with `--slots` places logs when each request arrives and each slot is
taken and freed (`bench/slotlog.py`); each reply takes a few tenths of a second. Two fronts
stand before it, in the same run, each measured in turns (`--rounds`), so load from
elsewhere on the machine hits both alike:

    embedded    one `tlc serve` (no Redis): the baseline
    replicas    `--replicas` `tlc serve --redis URL` processes sharing one fair line

Each phase submits `--clients` streaming requests at once from `--users` users (client i is
user i mod users, on replica i mod replicas, so every user waits on every replica), each
read to its end by a raw-asyncio client (`bench/raw_clients.py`). The upstream's busy
fraction and refill gaps count while work waits: from the moment one more request than there
are places was accepted to the last start (`bench/saturation_phases.analyse`); also from the
last acceptance on, once nobody is being admitted any more. The peak number of requests in
flight at the upstream (arrived, not ended) must never exceed the slots; every client's
terminal event is counted; each server's CPU seconds (and Redis's) are read per phase.
Without `--redis` a private `redis-server` is started on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import redis
import uvloop

from bench.harness import (
    Result,
    base_parser,
    goal_rows,
    machine,
    machine_lines,
    save_json,
)
from bench.profiling import Profiler, self_by_package, top_frames
from bench.raw_clients import Client, run_client
from bench.replicas_busy_stats import goals, log_summary, report, summarise
from bench.servers import (
    ServerProcess,
    Workspace,
    practice_argv,
    private_redis,
    raise_fd_limit,
    start_queue,
)

__all__ = ["main"]

Fronts = dict[str, list[ServerProcess]]


def main(argv: Sequence[str] | None = None) -> Result:
    ns = parse(argv)
    raise_fd_limit(4 * ns.clients + 256)
    result = Result("replicas_busy", machine())
    print(machine_lines(result.machine))
    with contextlib.ExitStack() as stack:
        redis_url = ns.redis or stack.enter_context(private_redis()).url
        ws = stack.enter_context(Workspace())
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
        fronts = start_fronts(ws, ns, upstream.url + "/v1", redis_url)
        with profiling(ns.profile, fronts) as profiles:
            runs = in_turns(ns, upstream.url, fronts, redis_url)
        logs = {s.name: log_summary(s) for servers in fronts.values() for s in servers}
    phases = {name: summarise(rounds, ns.slots) for name, rounds in runs.items()}
    report(ns, phases, logs)
    result.goals = goals(phases, ns)
    print("\n" + goal_rows(result.goals))
    for name, text in profiles.items():
        print(f"\npy-spy profile of {name}:\n{text}")
    settings = {k: v for k, v in vars(ns).items() if k not in ("json", "profile", "redis")}
    result.data = {"settings": settings, "phases": phases, "logs": logs, "profiles": profiles}
    save_json(ns.json, result)
    return result


def parse(argv: Sequence[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="streaming clients per phase")
    parser.add_argument("--users", type=int, default=100, help="clients are spread over them")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--slots", type=int, default=4, help="the upstream's places")
    parser.add_argument("--tokens-per-second", type=float, default=100)
    parser.add_argument("--first-token-latency", type=float, default=0.05)
    parser.add_argument("--max-tokens", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="embedded and replicas, in turns")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured clients per front")
    parser.add_argument("--redis", help="use this Redis (redis://host:port/db)")
    parser.add_argument(
        "--give-up", type=float, default=600, help="seconds a phase waits for its last client"
    )
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.clients, ns.users, ns.rounds, ns.warmup, ns.tokens_per_second = 30, 10, 1, 4, 400
    return ns


# ---------------------------------------------------------------------------- servers


def start_fronts(ws: Workspace, ns: Any, upstream_v1: str, redis_url: str) -> Fronts:
    """One embedded `tlc serve`, and the replicas on one fresh shared line (its own name)."""
    limit = str(max(ns.clients, 20))  # nobody refused: every client waits
    limits = ("--max-queue", limit, "--max-per-user", limit)
    ns.queue_env.append(f"TLC_REDIS_NAME=bench-{uuid.uuid4().hex[:8]}")
    embedded = start_queue(ws, ns, upstream_v1, *limits, name="embedded")
    replicas = [
        start_queue(ws, ns, upstream_v1, *limits, "--redis", redis_url, name=f"replica-{i + 1}")
        for i in range(ns.replicas)
    ]
    return {"embedded": [embedded], "replicas": replicas}


@contextlib.contextmanager
def profiling(out_dir: Path | None, fronts: Fronts) -> Iterator[dict[str, str]]:
    """py-spy on every queue server for the whole run (`--profile DIR`); each one's hottest
    functions land in the dict yielded, once the run is over."""
    servers = [s for group in fronts.values() for s in group] if out_dir else []
    outs = {s.name: (out_dir or Path()) / f"replicas-busy-{s.name}.txt" for s in servers}
    profiles: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(Profiler(server.pid, outs[server.name]))
        yield profiles
    for name, out in outs.items():
        profiles[name] = self_by_package(out) + "\n" + top_frames(out, top=30)


def redis_stats(url: str) -> tuple[float, Counter[str]]:
    """Redis's own CPU seconds so far (`INFO cpu`), and its calls per command
    (`INFO commandstats`): what a phase asked of it is the difference."""
    with redis.Redis.from_url(url) as client:
        cpu, commands = client.info("cpu"), client.info("commandstats")
    calls = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in commands.items()})
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls


# ---------------------------------------------------------------------------- phases


def in_turns(ns: Any, upstream_url: str, fronts: Fronts, redis_url: str) -> dict[str, list[Any]]:
    """Every front's phase, `--rounds` times in turns, after an unmeasured warm-up each."""
    runs: dict[str, list[Any]] = {name: [] for name in fronts}
    for servers in fronts.values():
        uvloop.run(phase(upstream_url, servers, ns.warmup, ns.users, ns.max_tokens, ns.slots))
    for _ in range(ns.rounds):
        for name, servers in fronts.items():
            cpu0, (redis0, calls0) = [s.cpu_s() for s in servers], redis_stats(redis_url)
            args = (
                upstream_url,
                servers,
                ns.clients,
                ns.users,
                ns.max_tokens,
                ns.slots,
                ns.give_up,
            )
            run = uvloop.run(phase(*args))
            run["cpu_s"] = {s.name: s.cpu_s() - c for s, c in zip(servers, cpu0, strict=True)}
            redis1, calls1 = redis_stats(redis_url)
            run["redis_cpu_s"], run["redis_calls"] = redis1 - redis0, calls1 - calls0
            runs[name].append(run)
            print(f"{name}: {run['endings']} in {run['wall_s']:.1f} s", flush=True)
    return runs


async def phase(
    upstream_url: str,
    servers: list[ServerProcess],
    n: int,
    users: int,
    tokens: int,
    slots: int,
    give_up_s: float = 600.0,
) -> dict[str, Any]:
    """`n` clients at once, round-robin over `servers`, each reading its events to the end."""
    clients = [Client(i, f"user{i % users}", f"Tell me about the Queen (#{i})") for i in range(n)]
    ports = [s.port for s in servers]
    async with httpx.AsyncClient(base_url=upstream_url, timeout=30) as upstream:
        await upstream.post("/bench/slot-log/reset")
        t0 = time.monotonic()
        tasks = [
            asyncio.create_task(run_client(ports[c.index % len(ports)], c, tokens)) for c in clients
        ]
        _, stuck = await asyncio.wait(tasks, timeout=give_up_s)
        for task in stuck:  # a request nobody starts: counted, not waited for all night
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
        wall = time.monotonic() - t0
        for c in clients:
            if not c.ending and not c.error:
                c.error = f"no terminal event after {give_up_s:g} s"
        events = (await upstream.get("/bench/slot-log")).json()["events"]
    accepted = sorted(c.t_accepted for c in clients if c.id)
    return {
        # one more accepted than there are places: from now on work waits
        "t_backlog": accepted[min(slots, len(accepted) - 1)] if accepted else t0,
        "t_submitted": accepted[-1] if accepted else t0,
        "events": events,
        "samples": [],  # `analyse` also reads a sampled busy fraction; not taken here
        "endings": Counter(c.ending or "none" for c in clients),
        "errors": [c.error for c in clients if c.error][:5],
        "wall_s": wall,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
