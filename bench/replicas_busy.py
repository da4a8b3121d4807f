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
    Goal,
    Result,
    base_parser,
    fmt_ms,
    goal_rows,
    machine,
    machine_lines,
    pct,
    save_json,
    table,
)
from bench.profiling import Profiler, self_by_package, top_frames
from bench.raw_clients import Client, run_client
from bench.saturation_phases import analyse
from bench.servers import (
    ServerProcess,
    Workspace,
    practice_argv,
    private_redis,
    raise_fd_limit,
    start_queue,
)

__all__ = ["main", "peak_in_flight"]

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
        with profiling(ns.profile, fronts):
            runs = in_turns(ns, upstream.url, fronts, redis_url)
    phases = {name: summarise(rounds, ns.slots) for name, rounds in runs.items()}
    report(ns, phases)
    result.goals = goals(phases, ns)
    print("\n" + goal_rows(result.goals))
    profiles = print_profiles(ns.profile, fronts)
    settings = {k: v for k, v in vars(ns).items() if k not in ("json", "profile", "redis")}
    result.data = {"settings": settings, "phases": phases, "profiles": profiles}
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
def profiling(out_dir: Path | None, fronts: Fronts) -> Iterator[None]:
    """py-spy on every queue server for the whole run, with `--profile DIR`."""
    with contextlib.ExitStack() as stack:
        for server in (s for servers in fronts.values() for s in servers) if out_dir else ():
            assert out_dir is not None
            stack.enter_context(Profiler(server.pid, out_dir / f"replicas-busy-{server.name}.txt"))
        yield


def print_profiles(out_dir: Path | None, fronts: Fronts) -> dict[str, str]:
    profiles = {}
    for server in (s for servers in fronts.values() for s in servers) if out_dir else ():
        assert out_dir is not None
        out = out_dir / f"replicas-busy-{server.name}.txt"
        profiles[server.name] = self_by_package(out) + "\n" + top_frames(out, top=30)
        print(f"\npy-spy profile of {server.name}:\n{profiles[server.name]}")
    return profiles


def redis_cpu_s(url: str) -> float:
    """Redis's own CPU time so far (`INFO cpu`: the server's user + system seconds)."""
    with redis.Redis.from_url(url) as client:
        info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# ---------------------------------------------------------------------------- phases


def in_turns(ns: Any, upstream_url: str, fronts: Fronts, redis_url: str) -> dict[str, list[Any]]:
    """Every front's phase, `--rounds` times in turns, after an unmeasured warm-up each."""
    runs: dict[str, list[Any]] = {name: [] for name in fronts}
    for servers in fronts.values():
        uvloop.run(phase(upstream_url, servers, ns.warmup, ns.users, ns.max_tokens, ns.slots))
    for _ in range(ns.rounds):
        for name, servers in fronts.items():
            cpu0, redis0 = [s.cpu_s() for s in servers], redis_cpu_s(redis_url)
            args = (upstream_url, servers, ns.clients, ns.users, ns.max_tokens, ns.slots)
            run = uvloop.run(phase(*args))
            run["cpu_s"] = {s.name: s.cpu_s() - c for s, c in zip(servers, cpu0, strict=True)}
            run["redis_cpu_s"] = redis_cpu_s(redis_url) - redis0
            runs[name].append(run)
            print(f"{name}: {run['endings']} in {run['wall_s']:.1f} s", flush=True)
    return runs


async def phase(
    upstream_url: str, servers: list[ServerProcess], n: int, users: int, tokens: int, slots: int
) -> dict[str, Any]:
    """`n` clients at once, round-robin over `servers`, each reading its events to the end."""
    clients = [Client(i, f"user{i % users}", f"Tell me about the Queen (#{i})") for i in range(n)]
    ports = [s.port for s in servers]
    async with httpx.AsyncClient(base_url=upstream_url, timeout=30) as upstream:
        await upstream.post("/bench/slot-log/reset")
        t0 = time.monotonic()
        await asyncio.gather(*(run_client(ports[c.index % len(ports)], c, tokens) for c in clients))
        wall = time.monotonic() - t0
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


# ---------------------------------------------------------------------------- analysis


def peak_in_flight(events: Sequence[Sequence[Any]]) -> int:
    """Most requests at the upstream at once: arrived there and not yet ended.

    >>> peak_in_flight([[0, "arrive", "a"], [1, "arrive", "b"], [2, "end", ""], [3, "arrive", ""]])
    2
    """
    # at one instant an end counts before an arrival: a slot freed and taken again
    steps = sorted((float(e[0]), e[1] == "arrive") for e in events if e[1] in ("arrive", "end"))
    now = peak = 0
    for _, arrived in steps:
        now += 1 if arrived else -1
        peak = max(peak, now)
    return peak


def summarise(runs: list[dict[str, Any]], slots: int) -> dict[str, Any]:
    endings: Counter[str] = Counter()
    cpu: Counter[str] = Counter()
    for run in runs:
        endings.update(run["endings"])
        cpu.update(run["cpu_s"])
    late = analyse(runs, slots, since="t_submitted")
    return {
        **analyse(runs, slots),
        "busy_fraction_after_last_accept": late["busy_fraction"],
        "window_after_last_accept_s": late["window_s"],
        "gap_after_last_accept_s": late["gap_s"],
        "peak_in_flight": max(peak_in_flight(run["events"]) for run in runs),
        "endings": dict(endings),
        "errors": [e for run in runs for e in run["errors"]][:5],
        "cpu_s": dict(cpu),
        "redis_cpu_s": sum(run["redis_cpu_s"] for run in runs),
        "wall_s": sum(run["wall_s"] for run in runs),
    }


def report(ns: Any, phases: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n{ns.rounds} × {ns.clients} clients per front ({ns.users} users), {ns.slots} slots, "
        f"practice model at {ns.tokens_per_second:g} tok/s after {ns.first_token_latency:g} s, "
        f"{ns.max_tokens} tokens each; replicas: {ns.replicas}"
    )
    headers = ["front", "upstream busy", "after last accept", "refills", "gap median ms"]
    headers += ["gap p99 ms", "gap max ms", "freed→arrived median ms", "arrived→started median"]
    headers += ["peak in flight", "endings"]
    print(table(headers, [_row(name, p) for name, p in phases.items()]))
    cpu_rows = [
        [front, name, f"{seconds:.1f}", f"{1000 * seconds / p['upstream_requests']:.2f}"]
        for front, p in phases.items()
        for name, seconds in [*p["cpu_s"].items(), ("redis-server", p["redis_cpu_s"])]
        if front != "embedded" or name != "redis-server"
    ]
    print("\n" + table(["front", "process", "CPU s", "CPU ms per request"], cpu_rows))
    for name, p in phases.items():
        if p["errors"]:
            print(f"{name}: first errors: {p['errors']}")


def _row(name: str, p: dict[str, Any]) -> list[Any]:
    gap = p["gap_s"]
    return [
        name,
        pct(p["busy_fraction"]),
        pct(p["busy_fraction_after_last_accept"]),
        gap["n"],
        fmt_ms(gap["median"], 3),
        fmt_ms(gap.get("p99"), 3),
        fmt_ms(gap.get("max"), 3),
        fmt_ms(p["gap_to_arrival_s"]["median"], 3),
        fmt_ms(p["arrival_to_start_s"]["median"], 3),
        p["peak_in_flight"],
        ", ".join(f"{k} {v}" for k, v in sorted(p["endings"].items())),
    ]


def goals(phases: dict[str, dict[str, Any]], ns: Any) -> list[Goal]:
    r, e = phases["replicas"], phases["embedded"]
    every = ns.rounds * ns.clients
    return [
        Goal(
            f"upstream busy while work waits, {ns.replicas} replicas, {ns.clients:,} clients",
            "≥ 95 %",
            f"{pct(r['busy_fraction'])} (embedded {pct(e['busy_fraction'])})",
            r["busy_fraction"] >= 0.95,
        ),
        Goal(
            "requests in flight at the upstream, at most",
            f"≤ {ns.slots} (its slots)",
            f"{r['peak_in_flight']} (embedded {e['peak_in_flight']})",
            max(r["peak_in_flight"], e["peak_in_flight"]) <= ns.slots,
        ),
        Goal(
            "every client ends with `done`",
            f"{every:,} of {every:,} per front",
            f"replicas {r['endings'].get('done', 0):,}, embedded {e['endings'].get('done', 0):,}",
            r["endings"] == e["endings"] == {"done": every},
        ),
    ]


if __name__ == "__main__":
    main(sys.argv[1:])
