"""What one size of `bench.many_clients` measured: runs, per-client analysis, tables.

>>> freshness([], {}, {})["dispatches_measured"]
0
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench.harness import fmt_ms, percentile, summary, table
from bench.raw_clients import Client, run_client
from bench.slotlog import busy_fraction, refills

__all__ = ["analyse", "freshness", "line", "run_size", "size_table", "tokens_per_core"]


async def run_size(
    queue_url: str, upstream_url: str, port: int, n: int, users: int, max_tokens: int
) -> dict[str, Any]:
    clients = [
        Client(i, f"user{i % users}", f"Tell me about the White Rabbit (client {i})")
        for i in range(n)
    ]
    async with httpx.AsyncClient(base_url=upstream_url, timeout=30) as upstream:
        await upstream.post("/bench/slot-log/reset")
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        await asyncio.gather(*(run_client(port, c, max_tokens) for c in clients))
        wall = time.monotonic() - t0
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        events = (await upstream.get("/bench/slot-log")).json()["events"]
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=queue_url, timeout=30, limits=limits) as queue:
        records = await asyncio.gather(
            *(queue.get(f"/api/requests/{c.id}") for c in clients if c.id)
        )
    by_id = {r.json()["id"]: r.json() for r in records}
    client_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {
        "clients": clients,
        "records": by_id,
        "events": events,
        "wall": wall,
        "client_cpu": client_cpu,
    }


def analyse(run: dict[str, Any], slots: int) -> dict[str, Any]:
    clients: list[Client] = run["clients"]
    records: dict[str, dict[str, Any]] = run["records"]
    events = run["events"]
    errors = [c.error for c in clients if c.error]
    done = [c for c in clients if c.ending == "done"]
    mismatched = [c for c in done if "".join(c.text) != records.get(c.id, {}).get("text")]
    tokens = sum(records[c.id]["tokens"] for c in clients if c.id in records)

    starts = sorted(t for t, kind, *_ in events if kind == "start")
    t_busy0 = starts[min(slots, len(starts)) - 1] if starts else 0.0
    t_busy1 = starts[-1] if starts else 0.0
    busy = busy_fraction(events, slots, t_busy0, t_busy1)
    gaps = [s - f for f, _, s in refills(events, t_busy0, t_busy1)]

    # Dispatch times, by dispatch number.
    arrival_of = {str(tag): t for t, kind, tag in events if kind == "arrive"}
    dispatch_t: dict[int, float] = {}
    for c in clients:
        record = records.get(c.id)
        if record is None or record["dispatch_no"] is None:
            continue
        seen = [t for t in (arrival_of.get(c.prompt), c.t_started) if t is not None]
        if seen:
            dispatch_t[record["dispatch_no"]] = min(seen)
    fresh = freshness(clients, records, dispatch_t)
    return {
        "clients": len(clients),
        "done": len(done),
        "lost": len(clients) - len(done),
        "errors": errors[:5],
        "error_count": len(errors),
        "text_mismatches": len(mismatched),
        "tokens": tokens,
        "wall_s": run["wall"],
        "client_cpu_s": run["client_cpu"],
        "busy_fraction": busy,
        "busy_window_s": t_busy1 - t_busy0,
        "gap_s": summary(gaps),
        "queued_events_per_client": statistics.fmean(len(c.queued) for c in clients),
        **fresh,
    }


def freshness(
    clients: Sequence[Client], records: dict[str, dict[str, Any]], dispatch_t: dict[int, float]
) -> dict[str, Any]:
    """Per dispatch after the last acceptance: time until every waiting client knew.

    After the last acceptance positions only fall: a `queued` event with a position at most
    D − n can only have been made after dispatch n. If it arrived before our (slightly late)
    estimate of the dispatch time, the client knew at once: the delay counts as 0.
    """
    accepted_all = max((c.t_accepted for c in clients), default=0.0)
    numbers = sorted(n for n, t in dispatch_t.items() if t > accepted_all)
    per_dispatch: dict[int, float] = {}
    pairs: list[float] = []
    before_estimate = 0
    for c in clients:
        record = records.get(c.id)
        if record is None or record["dispatch_no"] is None:
            continue
        mine = record["dispatch_no"]
        # What this client learnt after the last acceptance, in arrival order; "started"
        # counts as position 0.
        knew = [(t, p) for t, p in c.queued if t > accepted_all]
        if c.t_started is not None:
            knew.append((c.t_started, 0))
        k = 0
        for n in numbers:
            if n >= mine:
                break
            while k < len(knew) and knew[k][1] > mine - n:
                k += 1
            if k == len(knew):
                break  # never told (the stream broke): counted as lost elsewhere
            delay = knew[k][0] - dispatch_t[n]
            if delay < 0:
                before_estimate += 1
                delay = 0.0
            pairs.append(delay)
            per_dispatch[n] = max(per_dispatch.get(n, 0.0), delay)
    worst = list(per_dispatch.values())
    return {
        "dispatches_measured": len(worst),
        "freshness_all_clients_s": summary(worst),
        "freshness_pairs_s": {
            "n": len(pairs),
            "median": statistics.median(pairs) if pairs else float("nan"),
            "p99": percentile(pairs, 99),
        },
        "told_before_dispatch_estimate": before_estimate,
    }


def tokens_per_core(stats: dict[str, Any]) -> float:
    cpu = stats["server_cpu_s"]
    return stats["tokens"] / cpu if cpu > 0 else float("inf")


def line(n: int, s: dict[str, Any]) -> str:
    return (
        f"{n} clients: {s['done']} done, {s['lost']} lost, {s['wall_s']:.1f} s, "
        f"RSS {s['server_peak_rss_mb']:.0f} MB, busy {100 * s['busy_fraction']:.1f} %, "
        f"freshness p99 {fmt_ms(s['freshness_all_clients_s']['p99'], 0)} ms"
    )


def size_table(rows: dict[int, dict[str, Any]]) -> str:
    headers = [
        "clients",
        "done / lost / wrong text",
        "wall s",
        "server peak RSS MB",
        "upstream busy",
        "refill gap median / p99 ms",
        "freshness p50 / p99 ms (all waiting)",
        "freshness p99 ms (per client)",
        "queued events per client",
        "server CPU s",
        "tokens",
        "server µs / token",
        "tokens / core-s",
        "client CPU s",
    ]
    out = []
    for n, s in rows.items():
        fresh = s["freshness_all_clients_s"]
        out.append(
            [
                n,
                f"{s['done']} / {s['lost']} / {s['text_mismatches']}",
                f"{s['wall_s']:.1f}",
                f"{s['server_peak_rss_mb']:.0f}",
                f"{100 * s['busy_fraction']:.1f} %",
                f"{fmt_ms(s['gap_s']['median'], 1)} / {fmt_ms(s['gap_s']['p99'], 1)}",
                f"{fmt_ms(fresh['median'], 0)} / {fmt_ms(fresh['p99'], 0)}",
                fmt_ms(s["freshness_pairs_s"]["p99"], 0),
                f"{s['queued_events_per_client']:.1f}",
                f"{s['server_cpu_s']:.2f}",
                s["tokens"],
                f"{1e6 * s['server_cpu_s'] / max(s['tokens'], 1):.0f}",
                f"{tokens_per_core(s):,.0f}",
                f"{s['client_cpu_s']:.2f}",
            ]
        )
    return table(headers, out)
