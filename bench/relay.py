"""Relay cost: server CPU per token through the queue and through a bare pass-through proxy.

    >>> relay = measure_relay(ws, ns, 1000.0, streams=4, rounds=2, tokens=2000)  # doctest: +SKIP
    >>> print(relay_table({"paced": relay}))                                     # doctest: +SKIP

Nobody waits (one stream per slot), so no positions are sent: what is left is relaying tokens,
from `bench/fast_upstream.py`, the same upstream for both fronts, measured in the same run.
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any

import uvloop

from bench.harness import table
from bench.profiling import Profiler, self_by_package, top_frames
from bench.raw_clients import FAST_MODEL, Client, run_client, run_openai_client
from bench.servers import Workspace, start_queue, start_uvicorn_app

__all__ = ["measure_relay", "relay_table"]


async def relay_phase(
    port: int, streams: int, rounds: int, tokens: int, openai: bool
) -> dict[str, Any]:
    """`streams` clients, one per slot (nobody waits, so no positions), each sending
    `rounds` requests of `tokens` tokens one after another: the cost of relaying a token."""
    clients = [Client(i, f"user{i}", f"relay {i}") for i in range(streams * rounds)]

    async def one_stream(mine: list[Client]) -> None:
        for client in mine:
            if openai:
                await run_openai_client(port, client, tokens)
            else:
                await run_client(port, client, tokens, model=FAST_MODEL)

    await asyncio.gather(*(one_stream(clients[i::streams]) for i in range(streams)))
    return {
        "requests": len(clients),
        "done": sum(c.ending == "done" for c in clients),
        "tokens_received": sum(len(c.text) for c in clients),
    }


def measure_relay(
    ws: Workspace, ns: Any, tps: float, streams: int, rounds: int, tokens: int
) -> dict[str, dict[str, Any]]:
    """Server CPU per relayed token through the queue (native API) and, as the baseline,
    through the bare pass-through proxy, from the same upstream."""
    upstream = start_uvicorn_app(
        ws, "bench.fast_upstream:app", f"fast-upstream-{tps:g}", {"FAST_UPSTREAM_TPS": str(tps)}
    )
    fronts = {
        "queue": start_queue(
            ws, ns, upstream.url + "/v1", "--slots", str(streams), name=f"queue-relay-{tps:g}"
        ),
        "passthrough": start_uvicorn_app(
            ws,
            "bench.passthrough:app",
            f"passthrough-{tps:g}",
            {"PASSTHROUGH_UPSTREAM": upstream.url + "/v1"},
        ),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, front in fronts.items():
        openai = name == "passthrough"
        uvloop.run(relay_phase(front.port, streams, 1, min(tokens, 64), openai))  # warm-up
        cpu0, t0 = front.cpu_s(), time.monotonic()
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        phase = relay_phase(front.port, streams, rounds, tokens, openai)
        profile = None
        if ns.profile is not None and name == "queue":
            path = ns.profile / f"relay-{tps:g}.txt"
            with Profiler(front.pid, path):
                run = uvloop.run(phase)
            profile = self_by_package(path) + "\n" + top_frames(path, top=40)
        else:
            run = uvloop.run(phase)
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu, wall = front.cpu_s() - cpu0, time.monotonic() - t0
        front.stop()
        client_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
        out[name] = run | {
            "tokens_per_second_per_stream": tps,
            "streams": streams,
            "tokens_per_request": tokens,
            "wall_s": wall,
            "server_cpu_s": cpu,
            "client_cpu_s": client_cpu,
            "server_us_per_token": 1e6 * cpu / max(run["tokens_received"], 1),
            "tokens_per_core_s": run["tokens_received"] / cpu if cpu > 0 else float("inf"),
            "profile": profile,
        }
    upstream.stop()
    return out


def relay_table(relay: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows = []
    for label, fronts in relay.items():
        base = fronts["passthrough"]["server_us_per_token"]
        for name, r in fronts.items():
            rows.append(
                [
                    label,
                    name,
                    f"{r['done']} / {r['requests']}",
                    r["tokens_received"],
                    f"{r['wall_s']:.1f}",
                    f"{r['server_cpu_s']:.2f}",
                    f"{r['server_us_per_token']:.1f}",
                    f"{r['server_us_per_token'] / base:.2f}×",
                    f"{r['tokens_per_core_s']:,.0f}",
                    f"{r['client_cpu_s']:.2f}",
                ]
            )
    headers = [
        "upstream",
        "front",
        "done",
        "tokens",
        "wall s",
        "server CPU s",
        "server µs / token",
        "÷ pass-through",
        "tokens / core-s",
        "client CPU s",
    ]
    return table(headers, rows)
