"""Many waiting clients: 100, 500 and 1,000 chat panels streaming from one queue server.

    $ python -m bench.many_clients                 # 100, 500, 1000 clients from 50 users
    $ python -m bench.many_clients --clients 1000  # one size
    $ python -m bench.many_clients --smoke

Every client submits one request (`POST /api/requests`) and reads its events to the end on
the same keep-alive connection, noting when each event arrives; all start at once. The
upstream is a practice model with 4 slots at ~0.1 s per request that logs when requests
arrive and slots are taken and freed (`bench/slotlog.py`). A fresh queue server is started
for every size, so its peak RSS (`VmHWM`) and CPU time (`/proc/<pid>/stat`) are its own.

Measured per size:

* done: every client's concatenated deltas equal the text `GET /api/requests/{id}` holds;
* upstream busy: slot time used ÷ slot time available, from the 4th start to the last;
* position freshness: for every dispatch after the last client was accepted, the time until
  each still-waiting client holds its new position. After the last arrival nobody can jump
  ahead, so after the n-th dispatch a client that will be dispatched as D is at D − n; a
  client holds it once a `queued` event with a position ≤ D − n (or `started`) arrived. The
  dispatch time is when the request reached the upstream or when its own client saw
  `started`, whichever was first (both a little after the real dispatch: conservative by
  well under a millisecond when the server is not overloaded);
* CPU per relayed token: the server's CPU time over the run ÷ tokens it relayed.

The client is one asyncio process (uvloop) on raw streams: httpx costs several times more
CPU per stream, and the client shares the machine's two cores with both servers. Its own
CPU time is reported beside the server's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import uvloop

from bench.harness import (
    Goal,
    Result,
    base_parser,
    fmt_ms,
    goal_rows,
    machine,
    machine_lines,
    save_json,
)
from bench.many_clients_stats import analyse, line, run_size, size_table, tokens_per_core
from bench.profiling import Profiler, self_by_package, top_frames
from bench.relay import measure_relay, relay_table
from bench.servers import ServerProcess, Workspace, practice_argv, raise_fd_limit, start_queue

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> Result:
    ns = parse(argv)
    sizes, relay_rounds = ns.clients or [100, 500, 1000], 2
    if ns.smoke:
        sizes, ns.users, ns.relay_tokens, relay_rounds = [20], 5, 100, 1
    raise_fd_limit(4 * max(sizes) + 256)
    result = Result("many_clients", machine())
    print(machine_lines(result.machine))
    rows: dict[int, dict[str, Any]] = {}
    profiles: dict[int, str] = {}
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
        for n in sizes:
            rows[n], profile = one_size(ws, ns, upstream, n)
            if profile:
                profiles[n] = profile
            print(line(n, rows[n]), flush=True)
        # paced: each token arrives on its own, as from a real model; no delay: tokens
        # arrive in bursts and are relayed in batches (more rounds: enough CPU to time)
        relay = {
            label: measure_relay(ws, ns, tps, ns.slots, rounds, ns.relay_tokens)
            for label, tps, rounds in (
                ("paced, 1 ms apart", 1000.0, relay_rounds),
                ("no delay", 0.0, 4 * relay_rounds),
            )
            if not ns.no_relay
        }
    print(
        f"\n{ns.users} users, {ns.slots} slots, practice model at {ns.tokens_per_second:g} tok/s "
        f"after {ns.first_token_latency:g} s, {ns.max_tokens} tokens per request"
    )
    print(size_table(rows))
    if relay:
        print(
            f"\nrelay cost: {ns.slots} streams, one per slot (nobody waits), "
            f"{relay_rounds} × {ns.relay_tokens}-token replies each, bench/fast_upstream.py"
        )
        print(relay_table(relay))
    result.goals = goals(rows, relay)
    print("\n" + goal_rows(result.goals))
    print_profiles(profiles, relay)
    settings = {k: v for k, v in vars(ns).items() if k not in ("json", "profile")}
    result.data = {"settings": settings, "sizes": rows, "relay": relay, "profiles": profiles}
    save_json(ns.json, result)
    return result


def parse(argv: Sequence[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, action="append", help="sizes (default 100 500 1000)")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--tokens-per-second", type=float, default=400)
    parser.add_argument("--first-token-latency", type=float, default=0.02)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--relay-tokens", type=int, default=2000, help="tokens per request in the relay runs"
    )
    parser.add_argument("--no-relay", action="store_true", help="skip the relay-cost runs")
    return parser.parse_args(argv)


def one_size(
    ws: Workspace, ns: Any, upstream: ServerProcess, n: int
) -> tuple[dict[str, Any], str | None]:
    """`n` clients against a fresh queue server (its peak RSS is this size's own)."""
    limit = str(2 * n)
    queue = start_queue(
        ws,
        ns,
        upstream.url + "/v1",
        "--max-queue",
        limit,
        "--max-per-user",
        limit,
        name=f"queue-{n}",
    )
    cpu0, up0 = queue.cpu_s(), upstream.cpu_s()
    coro = run_size(queue.url, upstream.url, queue.port, n, ns.users, ns.max_tokens)
    profile = None
    if ns.profile is not None:
        out = ns.profile / f"many-clients-{n}.txt"
        with Profiler(queue.pid, out):
            run = uvloop.run(coro)
        profile = self_by_package(out) + "\n" + top_frames(out, top=40)
    else:
        run = uvloop.run(coro)
    stats = analyse(run, ns.slots)
    stats["server_cpu_s"] = queue.cpu_s() - cpu0
    stats["upstream_cpu_s"] = upstream.cpu_s() - up0
    stats["server_peak_rss_mb"] = queue.peak_rss_mb()
    queue.stop()
    return stats, profile


def goals(
    rows: dict[int, dict[str, Any]], relay: dict[str, dict[str, dict[str, Any]]]
) -> list[Goal]:
    biggest = rows[max(rows)]
    per_core = tokens_per_core(biggest)
    fresh = biggest["freshness_all_clients_s"]["p99"]
    out = [
        Goal(
            f"{max(rows)} clients all finish with the right text",
            "none lost",
            f"{biggest['done']} done, {biggest['lost']} lost, "
            f"{biggest['text_mismatches']} wrong texts",
            biggest["lost"] == 0 and biggest["text_mismatches"] == 0 and max(rows) >= 1000,
        ),
        Goal(
            "server peak RSS",
            "≤ 200 MB",
            f"{biggest['server_peak_rss_mb']:.0f} MB",
            biggest["server_peak_rss_mb"] <= 200,
        ),
        Goal(
            "upstream busy (clients on the same cores)",
            "≥ 90 %",
            f"{100 * biggest['busy_fraction']:.1f} %",
            biggest["busy_fraction"] >= 0.9,
        ),
        Goal(
            "position freshness p99 (all waiting clients)",
            "≤ 250 ms",
            f"{fmt_ms(fresh, 0)} ms",
            fresh <= 0.25,
        ),
        Goal(
            f"relayed tokens per core-second, whole run ({max(rows)} clients)",
            "≥ 50,000",
            f"{per_core:,.0f}",
            per_core >= 50_000,
        ),
    ]
    for label, fronts in relay.items():
        r = fronts["queue"]
        out.append(
            Goal(
                f"relayed tokens per core-second, relay only ({label})",
                "≥ 50,000",
                f"{r['tokens_per_core_s']:,.0f} (pass-through "
                f"{fronts['passthrough']['tokens_per_core_s']:,.0f})",
                r["tokens_per_core_s"] >= 50_000,
            )
        )
    return out


def print_profiles(profiles: dict[int, str], relay: dict[str, dict[str, dict[str, Any]]]) -> None:
    for n, text in profiles.items():
        print(f"\npy-spy profile of the queue server, {n} clients:\n{text}")
    for label, fronts in relay.items():
        if fronts["queue"]["profile"]:
            print(f"\npy-spy profile of the queue server, relay ({label}):")
            print(fronts["queue"]["profile"])


if __name__ == "__main__":
    main(sys.argv[1:])
