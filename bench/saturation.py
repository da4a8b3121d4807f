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

The phases run `--rounds` times in turns, so load from elsewhere on the machine hits both
alike. Busy time and gaps count from the moment work waits (the closed loop: from its start;
the queue: once one more request than there are slots was accepted) to the last start.
`/practice/stats` is sampled too, as a cross-check, and the queue server's records are read
back at the end (every request done, dispatch numbers 1…N without holes). `--trace` runs the
queue server under `bench/trace_refill.py` and splits its refill gap into steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import (
    Goal,
    Result,
    base_parser,
    fmt_ms,
    goal_rows,
    machine,
    machine_lines,
    pct,
    percentile,
    save_json,
    table,
)
from bench.profiling import Profiler, self_by_package, top_frames
from bench.saturation_phases import analyse, check_records, direct_phase, queue_phase
from bench.servers import PYTHON, Workspace, practice_argv, start_queue
from bench.trace_refill import breakdown

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> Result:
    ns = parse(argv)
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
        trace = ws.dir / "refill-trace.log"
        if ns.trace:  # the same server, noting each upstream stream's start and end
            ns.queue_cmd = f"{PYTHON} -m bench.trace_refill"
            ns.queue_env.append(f"TRACE_REFILL={trace}")
        queue = start_queue(
            ws, ns, upstream.url + "/v1", "--max-queue", limit, "--max-per-user", limit
        )
        cpu0 = queue.cpu_s()
        profile_out = ns.profile / "saturation-queue.txt" if ns.profile else None
        with Profiler(queue.pid, profile_out) if profile_out else contextlib.nullcontext():
            direct, queued = in_turns(ns, upstream.url, queue.url)
        cpu = queue.cpu_s() - cpu0
        steps = refill_steps(queued, trace) if ns.trace else {}
    phases = {"direct": analyse(direct, ns.slots), "queue": analyse(queued, ns.slots)}
    late = analyse(queued, ns.slots, since="t_submitted")
    records = check_records(queued)
    report(ns, phases | {"queue, from the last submission": late}, records, cpu)
    if steps:
        print("\nwhere the queue's refill gap went (bench/trace_refill.py):")
        print(table(["step", "n", "median ms", "p90 ms"], steps.values()))
    result.goals = goals(phases)
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
        "refill_steps": steps,
        "queue_from_last_submission": late,
        "profile": profile,
    }
    save_json(ns.json, result)
    return result


def in_turns(
    ns: Any, upstream_url: str, queue_url: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The direct and the queue phase, `--rounds` times in turns, so load from elsewhere on
    the machine hits both alike."""
    direct: list[dict[str, Any]] = []
    queued: list[dict[str, Any]] = []
    for _ in range(ns.rounds):
        direct.append(asyncio.run(direct_phase(upstream_url, ns.requests, ns.slots, ns.max_tokens)))
        follow = not ns.no_follow
        queued.append(
            asyncio.run(
                queue_phase(
                    queue_url,
                    upstream_url,
                    ns.requests,
                    ns.slots,
                    ns.users,
                    ns.max_tokens,
                    follow,
                )
            )
        )
    return direct, queued


def refill_steps(runs: list[dict[str, Any]], trace: Path) -> dict[str, list[Any]]:
    """Median and p90 of each step of a refill, from the slot log and the queue's trace."""
    noted = [(float(t), kind) for t, kind in (line.split() for line in trace.open())]
    steps: dict[str, list[float]] = {}
    for run in runs:  # each round on its own: a round's last refill is not the next's first
        t0, t1 = run["t_backlog"], max(float(e[0]) for e in run["events"])
        events = [e for e in run["events"] if e[0] >= t0]
        for step, values in breakdown(events, [n for n in noted if t0 <= n[0] <= t1]).items():
            steps.setdefault(step, []).extend(values)
    return {
        step: [step, len(v), fmt_ms(percentile(v, 50), 3), fmt_ms(percentile(v, 90), 3)]
        for step, v in steps.items()
    }


def parse(argv: Sequence[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--tokens-per-second", type=float, default=100)
    parser.add_argument("--first-token-latency", type=float, default=0.05)
    parser.add_argument("--max-tokens", type=int, default=30)
    parser.add_argument(
        "--trace", action="store_true", help="split the queue's refill gap into its steps"
    )
    parser.add_argument("--rounds", type=int, default=3, help="direct and queue phases, in turns")
    parser.add_argument(
        "--no-follow",
        action="store_true",
        help="submit only: nobody reads the events (isolates the cost of event streams)",
    )
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.requests, ns.max_tokens, ns.tokens_per_second, ns.rounds = 12, 10, 200, 1
    return ns


def _ms3(s: dict[str, float], key: str) -> str:
    return fmt_ms(s.get(key), 3)


def report(ns: Any, phases: dict[str, dict[str, Any]], records: dict[str, Any], cpu: float) -> None:
    print(
        f"\n{ns.rounds} × {ns.requests} requests per phase, {ns.slots} slots, practice model at "
        f"{ns.tokens_per_second:g} tok/s after {ns.first_token_latency:g} s, "
        f"{ns.max_tokens} tokens each; queue phase: {ns.users} users, "
        f"{'one event reader per request' if not ns.no_follow else 'no event readers'}"
    )
    headers = [
        "phase",
        "upstream busy",
        "busy (sampled)",
        "refills",
        "gap median ms",
        "gap p99 ms",
        "gap max ms",
        "freed→arrived median ms",
        "arrived→started median ms",
    ]
    rows = [
        [
            name,
            pct(p["busy_fraction"], 3),
            pct(p["busy_fraction_sampled"]),
            p["gap_s"]["n"],
            _ms3(p["gap_s"], "median"),
            _ms3(p["gap_s"], "p99"),
            _ms3(p["gap_s"], "max"),
            _ms3(p["gap_to_arrival_s"], "median"),
            _ms3(p["arrival_to_start_s"], "median"),
        ]
        for name, p in phases.items()
    ]
    print(table(headers, rows))
    q, d = phases["queue"], phases["direct"]
    added_gap = q["gap_s"]["median"] - d["gap_s"]["median"]
    print(
        f"\nqueue vs direct: gap median {_ms3(q['gap_s'], 'median')} vs "
        f"{_ms3(d['gap_s'], 'median')} ms ({added_gap * 1000:+.3f} ms); "
        f"idle {pct(1 - q['busy_fraction'], 3)} vs {pct(1 - d['busy_fraction'], 3)}"
    )
    print(
        f"queue server records: {records['done']}/{records['requests']} done, dispatch numbers "
        f"without holes: {records['dispatch_contiguous']}, event readers ended with "
        f"{records['followers_ended_with']}, queue server CPU {cpu:.2f} s "
        f"for {records['tokens']} tokens"
    )


def goals(phases: dict[str, dict[str, Any]]) -> list[Goal]:
    q, d = phases["queue"], phases["direct"]
    added = q["gap_s"]["median"] - d["gap_s"]["median"]
    return [
        Goal(
            "upstream busy while requests wait",
            "≥ 99.5 %",
            f"{pct(q['busy_fraction'])} (direct {pct(d['busy_fraction'])})",
            q["busy_fraction"] >= 0.995,
        ),
        Goal(
            "refill gap (slot freed → next start), median, over a direct client's",
            "≤ +0.5 ms",
            f"{added * 1000:+.3f} ms ({_ms3(q['gap_s'], 'median')} vs "
            f"{_ms3(d['gap_s'], 'median')} ms)",
            added <= 0.0005,
        ),
    ]


if __name__ == "__main__":
    main(sys.argv[1:])
