"""What `bench.replicas_busy` measured: busy fraction, refill gaps, peaks, endings, tables.

A slot freed at 2.001 s and taken again at 2 s is a refill the log noted out of order:

>>> log = [[0, "arrive", ""], [1, "arrive", ""], [2.001, "end", ""], [2, "arrive", ""]]
>>> peak_in_flight(log), peak_in_flight(log, tolerance_s=0)
(2, 3)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bench.harness import Goal, fmt_ms, pct, table
from bench.saturation_phases import analyse
from bench.servers import ServerProcess

__all__ = ["goals", "log_summary", "peak_in_flight", "report", "summarise"]


def log_summary(server: ServerProcess) -> dict[str, Any]:
    """Warnings and errors in a server's log, the most frequent first (ids left out)."""
    lines = server.log_path.read_text("utf-8", "replace").splitlines()
    noted = [line[24:] for line in lines if line[24:].startswith(("WARNING", "ERROR"))]
    same = Counter(_no_ids(m) for m in noted)
    crashed = any("Traceback" in line for line in lines)
    raised = Counter(_no_ids(m.group(1)) for line in lines if (m := _RAISED.match(line)))
    return {
        "warnings": len(noted),
        "crashed": crashed,
        "most": same.most_common(3),
        "raised": raised.most_common(3),  # the exceptions of the tracebacks, if any
    }


def _no_ids(message: str) -> str:
    return re.sub(r"request \S+|\d+ requests", "request …", message)[:160]


#: the last line of a traceback, also inside an exception group's `|` frame
_RAISED = re.compile(r"^[\s|+-]*((?:[\w.]+Error|[\w.]*Exception\w*): .*)$")


def peak_in_flight(events: Sequence[Sequence[Any]], tolerance_s: float = 0.005) -> int:
    """Most requests at the upstream at once: arrived there and not yet ended. The practice
    server notes an end only after its last byte went out, and a queue that reads that byte
    may send the next request first: an end noted up to `tolerance_s` after an arrival
    counts as before it (0: the raw count)."""
    steps = sorted(
        (float(t) - tolerance_s, False) if kind == "end" else (float(t), True)
        for t, kind, *_ in events
        if kind in ("arrive", "end")
    )
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
        "peak_in_flight_raw": max(peak_in_flight(run["events"], 0) for run in runs),
        "endings": dict(endings),
        "errors": [e for run in runs for e in run["errors"]][:5],
        "cpu_s": dict(cpu),
        "redis_cpu_s": sum(run["redis_cpu_s"] for run in runs),
        "redis_calls": dict(sum((Counter(run["redis_calls"]) for run in runs), Counter())),
        "wall_s": sum(run["wall_s"] for run in runs),
    }


def report(ns: Any, phases: dict[str, dict[str, Any]], logs: dict[str, Any]) -> None:
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
        [front, name, f"{seconds:.1f}", f"{1000 * seconds / max(1, p['upstream_requests']):.2f}"]
        for front, p in phases.items()
        for name, seconds in [*p["cpu_s"].items(), ("redis-server", p["redis_cpu_s"])]
        if front != "embedded" or name != "redis-server"
    ]
    print("\n" + table(["front", "process", "CPU s", "CPU ms per request"], cpu_rows))
    for name, p in phases.items():
        if p["errors"]:
            print(f"{name}: first errors: {p['errors']}")
    calls = Counter(phases["replicas"]["redis_calls"])
    started = max(1, phases["replicas"]["upstream_requests"])
    top = ", ".join(f"{name} {count / started:.1f}" for name, count in calls.most_common(8))
    total = sum(calls.values()) / started
    print(f"\nRedis calls per request started, replicas: {total:.1f} ({top})")
    rows = [[n, g["warnings"], _raised(g), _most(g)] for n, g in logs.items()]
    headers = ["server", "warnings", "raised (tracebacks)", "most frequent warnings"]
    print("\n" + table(headers, rows))


def _raised(log: dict[str, Any]) -> str:
    return "; ".join(f"{n} × {message[:70]}" for message, n in log["raised"]) or "no"


def _most(log: dict[str, Any]) -> str:
    return "; ".join(f"{count} × {message[:90]}…" for message, count in log["most"][:2]) or "–"


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
        f"{p['peak_in_flight']} (raw {p['peak_in_flight_raw']})",
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
            f"requests in flight at the upstream, {ns.replicas} replicas",
            f"≤ {ns.slots} (its slots)",
            # one process counts its slots itself: what it shows above the slots is the
            # slot log's own lag (an end noted late), the yardstick for the replicas'
            f"{r['peak_in_flight']} (embedded {e['peak_in_flight']})",
            r["peak_in_flight"] <= ns.slots,
        ),
        Goal(
            "every client ends with `done`",
            f"{every:,} of {every:,} per front",
            f"replicas {r['endings'].get('done', 0):,}, embedded {e['endings'].get('done', 0):,}",
            r["endings"] == e["endings"] == {"done": every},
        ),
    ]
