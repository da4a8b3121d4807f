"""What `bench.hold` measured: each client's place, freshness, memory, CPU; tables, goals.

    >>> per_second([10.0, 10.5, 11.0, 11.5])  # three more accepted in 1.5 s
    2.0

A client's place is its last position before the queue resumed (the line was complete and
paused: positions 1…N, checked by `bench.hold`). The k-th start after the resume moves a
client at place P to P − k; `bench.many_clients_stats.freshness` measures when each client
heard of it, from copies of the clients that hold only what arrived while the queue ran.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from bench.harness import Goal, fmt_ms, summary, table
from bench.many_clients_stats import freshness
from bench.raw_clients import Client

__all__ = ["analyse", "goals", "per_second", "report"]


def analyse(run: dict[str, Any], ns: Any) -> dict[str, Any]:
    clients: list[Client] = run["clients"]
    t_resume, t_cancel = run["t_resume"], run["t_cancel"]
    accepted = [c for c in clients if c.id]
    # Each client's place once the line was complete: its last position before the resume.
    waiting = [c for c in accepted if c.queued and (c.t_ended is None or c.t_ended > t_resume)]
    place = {c.id: [p for t, p in c.queued if t < t_resume][-1] for c in waiting}
    arrived = {str(tag): t for t, kind, tag in run["log"] if kind == "arrive"}
    dispatch_t, out_of_order = {}, 0
    for c in accepted:
        number = run["dispatch_no"].get(c.id)
        if number is None:
            continue
        out_of_order += number != ns.warmup + place.get(c.id, -1)
        dispatch_t[number] = min(t for t in (arrived.get(c.prompt), c.t_started) if t is not None)
    # As seen from the resume: what each client was told while the queue ran.
    seen = [
        dataclasses.replace(
            c,
            t_accepted=t_resume,
            queued=[(t, p) for t, p in c.queued if t_resume < t < t_cancel],
            t_started=c.t_started if c.t_started and c.t_started < t_cancel else None,
        )
        for c in accepted
    ]
    lines = {c.id: {"dispatch_no": ns.warmup + place[c.id]} for c in accepted if c.id in place}
    fresh = freshness(seen, lines, dispatch_t)
    starts = sorted(n for n in dispatch_t)
    window, told = run["phases"]["queue runs"], sum(len(c.queued) for c in seen)
    owed = sum(sum(1 for n in starts if n < line["dispatch_no"]) for line in lines.values())
    accepts = sorted(c.t_accepted for c in accepted)
    tenth = max(2, len(accepts) // 10)
    mb = run["rss_mb"]
    return {
        "clients": len(clients),
        "connected": len(accepted),
        "connect_errors": dict(Counter(str(c.error)[:80] for c in clients if not c.id)),
        "waiting": len(place),
        "accepted_per_s": [per_second(accepts[:tenth]), per_second(accepts[-tenth:])],
        "settled_s": run["settled_s"],
        "rss_mb": mb,
        "kb_per_client": 1024 * (mb["waiting"] - mb["baseline"]) / max(len(place), 1),
        "server_fds_waiting": run["server_fds_waiting"],
        "events_per_client_at_resume": summary(run["events_per_client_at_resume"]),
        "phases": {k: {n: v for n, v in p.items() if n != "t0"} for k, p in run["phases"].items()},
        "starts": len(starts),
        "out_of_order": out_of_order,
        "queued_events_per_s": told / window["wall_s"],
        # Everything the server did while the queue ran, over what it delivered: an upper bound.
        "server_us_per_event": 1e6 * window["server_cores"] * window["wall_s"] / max(told, 1),
        "freshness_pairs_s": fresh["freshness_pairs_s"]
        | {"max": fresh["freshness_all_clients_s"].get("max", float("nan"))},
        "freshness_worst_per_start_s": fresh["freshness_all_clients_s"],
        "never_told": owed - fresh["freshness_pairs_s"]["n"],
        "told_before_start_estimate": fresh["told_before_dispatch_estimate"],
        "cancels": run["cancels"],
        "endings": dict(Counter(c.ending or "no ending" for c in clients)),
        "terminals": dict(Counter(f"{c.terminals}" for c in clients)),
        "errors": [c.error for c in clients if c.error][:5],
    }


def per_second(times: list[float]) -> float:
    """How many came after the first, per second, over sorted arrival times."""
    if len(times) < 2 or times[-1] <= times[0]:
        return float("nan")
    return (len(times) - 1) / (times[-1] - times[0])


def report(f: dict[str, Any]) -> str:
    """The figures as one Markdown table, then the CPU of each phase as another."""
    mb, fresh, worst = f["rss_mb"], f["freshness_pairs_s"], f["freshness_worst_per_start_s"]
    first, last = f["accepted_per_s"]
    rows = [
        ["clients connected / waiting at the resume", f"{f['connected']:,} / {f['waiting']:,}"],
        ["accepted per second, first / last tenth", f"{first:,.0f} / {last:,.0f}"],
        ["server RSS MB: baseline / N waiting", f"{mb['baseline']} / {mb['waiting']}"],
        ["server RSS MB: peak / after the end", f"{mb['peak']} / {mb['after']}"],
        ["server RSS per waiting client", f"{f['kb_per_client']:.1f} KB"],
        ["server open files with N waiting", f"{f['server_fds_waiting']:,}"],
        [
            "events each client had received (frames its record keeps), mean / max",
            f"{f['events_per_client_at_resume']['mean']:,.0f} / "
            f"{f['events_per_client_at_resume']['max']:,.0f}",
        ],
        ["starts while the queue ran (out of line order)", f"{f['starts']} ({f['out_of_order']})"],
        ["`queued` events received per second", f"{f['queued_events_per_s']:,.0f}"],
        ["server CPU per `queued` event delivered", f"{f['server_us_per_event']:.0f} µs"],
        [
            "position freshness p50 / p99 / max ms",
            " / ".join(fmt_ms(fresh[k], 0) for k in ("median", "p99", "max")),
        ],
        [
            "the last client to hear of a start, p50 / p99 ms",
            " / ".join(fmt_ms(worst[k], 0) for k in ("median", "p99")),
        ],
        ["(client, start) pairs measured / never told", f"{fresh['n']:,} / {f['never_told']:,}"],
        ["endings", ", ".join(f"{v:,} {k}" for k, v in f["endings"].items())],
        [
            "terminal events per client",
            ", ".join(f"{v:,} × {k}" for k, v in f["terminals"].items()),
        ],
    ]
    cpu = [
        [k, f"{p['wall_s']:.1f}", f"{p['client_cores']:.2f}", f"{p['server_cores']:.2f}"]
        for k, p in f["phases"].items()
    ]
    return (
        table(["figure", "measured"], rows)
        + "\n\n"
        + table(["phase", "wall s", "client CPU (cores)", "server CPU (cores)"], cpu)
    )


def goals(f: dict[str, Any], n: int) -> list[Goal]:
    mb, fresh, window = f["rss_mb"], f["freshness_pairs_s"], f["phases"]["queue runs"]
    once = f["terminals"].get("1", 0)
    return [
        Goal(
            "waiting streaming clients in one process",
            "10,000",
            f"{f['waiting']:,} of {n:,}",
            f["waiting"] >= 10_000,
        ),
        Goal("server peak RSS", "≤ 500 MB", f"{mb['peak']:.0f} MB", mb["peak"] <= 500),
        Goal(
            "position freshness p99 (every client, every start)",
            "≤ 250 ms",
            f"{fmt_ms(fresh['p99'], 0)} ms, {f['never_told']} never told",
            fresh["p99"] <= 0.25 and f["never_told"] == 0,
        ),
        Goal(
            "client CPU while the queue ran (not the bottleneck)",
            "< 1 core",
            f"{window['client_cores']:.2f} cores",
            window["client_cores"] < 1,
        ),
        Goal("every client ends with exactly one terminal event", f"{n:,}", f"{once:,}", once == n),
    ]
