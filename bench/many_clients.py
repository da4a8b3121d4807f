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

import asyncio
import json
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvloop

from bench.common import (
    PYTHON,
    Goal,
    Profiler,
    Result,
    Workspace,
    base_parser,
    fmt_ms,
    goal_rows,
    machine,
    machine_lines,
    percentile,
    practice_argv,
    raise_fd_limit,
    save_json,
    self_by_package,
    start_queue,
    summary,
    table,
    top_frames,
)
from bench.slotlog import busy_fraction, refills

__all__ = ["main"]

MODEL = "practice-fast"
FAST_MODEL = "fast"  #: bench/fast_upstream.py
HOST = "127.0.0.1"


@dataclass
class Client:
    """One chat panel: what it sent, and every event with the time it arrived."""

    index: int
    user: str
    prompt: str
    id: str = ""
    t_sent: float = 0.0
    t_accepted: float = 0.0
    t_started: float | None = None
    t_ended: float | None = None
    ending: str = ""
    text: list[str] = field(default_factory=list)
    queued: list[tuple[float, int]] = field(default_factory=list)  #: (arrival, position)
    error: str | None = None


# ---------------------------------------------------------------------------- raw HTTP/1.1


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return status, headers


async def run_client(port: int, client: Client, max_tokens: int, model: str = MODEL) -> None:
    """Submit, then read the event stream (chunked) to its end, on one connection."""
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError as exc:
        client.error = f"connect: {exc}"
        return
    try:
        body = json.dumps(
            {"prompt": client.prompt, "model": model, "max_tokens": max_tokens, "user": client.user}
        ).encode()
        client.t_sent = time.monotonic()
        writer.write(
            b"POST /api/requests HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        status, headers = await _head(reader)
        answer = json.loads(await reader.readexactly(int(headers["content-length"])))
        if status != 202:
            client.error = f"submit: HTTP {status} {answer}"
            return
        client.t_accepted = time.monotonic()
        client.id = answer["id"]
        writer.write(f"GET {answer['events']} HTTP/1.1\r\nhost: bench\r\n\r\n".encode())
        status, headers = await _head(reader)
        if status != 200:
            client.error = f"events: HTTP {status}"
            return
        await _read_events(reader, client)
    except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as exc:
        client.error = f"{type(exc).__name__}: {exc}"
    finally:
        writer.close()


async def _read_events(reader: asyncio.StreamReader, client: Client) -> None:
    buffer = b""
    while True:
        size = int((await reader.readline()).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readline()
            return
        buffer += (await reader.readexactly(size + 2))[:-2]
        now = time.monotonic()
        *events, buffer = buffer.split(b"\n\n")
        for raw in events:
            name, data = "", b""
            for line in raw.split(b"\n"):
                if line.startswith(b"event: "):
                    name = line[7:].decode()
                elif line.startswith(b"data: "):
                    data = line[6:]
            if name == "delta":
                client.text.append(json.loads(data).get("content") or "")
            elif name == "queued":
                client.queued.append((now, int(json.loads(data)["position"])))
            elif name == "started":
                client.t_started = now
            elif name in ("done", "error", "cancelled"):
                client.t_ended, client.ending = now, name


# ---------------------------------------------------------------------------- one size


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


# ---------------------------------------------------------------------------- relay cost


async def run_openai_client(port: int, client: Client, max_tokens: int) -> None:
    """One streaming `POST /v1/chat/completions` (OpenAI's shape), read to its end."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        body = json.dumps(
            {
                "model": FAST_MODEL,
                "messages": [{"role": "user", "content": client.prompt}],
                "max_tokens": max_tokens,
                "stream": True,
            }
        ).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        status, _ = await _head(reader)
        if status != 200:
            client.error = f"HTTP {status}"
            return
        buffer = b""
        while size := int((await reader.readline()).split(b";", 1)[0], 16):
            buffer += (await reader.readexactly(size + 2))[:-2]
            *events, buffer = buffer.split(b"\n\n")
            for raw in events:
                data = raw.removeprefix(b"data: ")
                if data == b"[DONE]":
                    client.ending = "done"
                elif data.startswith(b"{"):
                    for choice in json.loads(data).get("choices") or ():
                        if content := (choice.get("delta") or {}).get("content"):
                            client.text.append(content)
        await reader.readline()
    finally:
        writer.close()


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
    upstream = ws.start(
        [PYTHON, "-m", "uvicorn", "bench.fast_upstream:app", "--log-level", "warning"],
        "/v1/models",
        name=f"fast-upstream-{tps:g}",
        env={"FAST_UPSTREAM_TPS": str(tps)},
    )
    fronts = {
        "queue": start_queue(
            ws, ns, upstream.url + "/v1", "--slots", str(streams), name=f"queue-relay-{tps:g}"
        ),
        "passthrough": ws.start(
            [PYTHON, "-m", "uvicorn", "bench.passthrough:app", "--log-level", "warning"],
            "/v1/models",
            name=f"passthrough-{tps:g}",
            env={"PASSTHROUGH_UPSTREAM": upstream.url + "/v1"},
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


# ---------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> Result:
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
    ns = parser.parse_args(argv)
    sizes = ns.clients or [100, 500, 1000]
    relay_rounds = 2
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
            if ns.profile is not None:
                out = ns.profile / f"many-clients-{n}.txt"
                with Profiler(queue.pid, out):
                    run = uvloop.run(coro)
                profiles[n] = self_by_package(out) + "\n" + top_frames(out, top=40)
            else:
                run = uvloop.run(coro)
            stats = analyse(run, ns.slots)
            stats["server_cpu_s"] = queue.cpu_s() - cpu0
            stats["upstream_cpu_s"] = upstream.cpu_s() - up0
            stats["server_peak_rss_mb"] = queue.peak_rss_mb()
            rows[n] = stats
            queue.stop()
            print(_line(n, stats), flush=True)
        relay: dict[str, dict[str, dict[str, Any]]] = {}
        if not ns.no_relay:
            # paced: each token arrives on its own, as from a real model; no delay: tokens
            # arrive in bursts and are relayed in batches (more rounds: enough CPU to time)
            for label, tps, rounds in (
                ("paced, 1 ms apart", 1000.0, relay_rounds),
                ("no delay", 0.0, 4 * relay_rounds),
            ):
                relay[label] = measure_relay(ws, ns, tps, ns.slots, rounds, ns.relay_tokens)

    print(
        f"\n{ns.users} users, {ns.slots} slots, practice model at {ns.tokens_per_second:g} tok/s "
        f"after {ns.first_token_latency:g} s, {ns.max_tokens} tokens per request"
    )
    print(_table(rows))
    if relay:
        print(
            f"\nrelay cost: {ns.slots} streams, one per slot (nobody waits), "
            f"{relay_rounds} × {ns.relay_tokens}-token replies each, bench/fast_upstream.py"
        )
        print(_relay_table(relay))
    biggest = rows[max(rows)]
    per_core = _tokens_per_core(biggest)
    fresh = biggest["freshness_all_clients_s"]["p99"]
    result.goals = [
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
        result.goals.append(
            Goal(
                f"relayed tokens per core-second, relay only ({label})",
                "≥ 50,000",
                f"{r['tokens_per_core_s']:,.0f} (pass-through "
                f"{fronts['passthrough']['tokens_per_core_s']:,.0f})",
                r["tokens_per_core_s"] >= 50_000,
            )
        )
    print("\n" + goal_rows(result.goals))
    for n, text in profiles.items():
        print(f"\npy-spy profile of the queue server, {n} clients:\n{text}")
    for label, fronts in relay.items():
        if fronts["queue"]["profile"]:
            print(f"\npy-spy profile of the queue server, relay ({label}):")
            print(fronts["queue"]["profile"])
    settings = {k: v for k, v in vars(ns).items() if k not in ("json", "profile")}
    result.data = {"settings": settings, "sizes": rows, "relay": relay, "profiles": profiles}
    save_json(ns.json, result)
    return result


def _tokens_per_core(stats: dict[str, Any]) -> float:
    cpu = stats["server_cpu_s"]
    return stats["tokens"] / cpu if cpu > 0 else float("inf")


def _relay_table(relay: dict[str, dict[str, dict[str, Any]]]) -> str:
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


def _line(n: int, s: dict[str, Any]) -> str:
    return (
        f"{n} clients: {s['done']} done, {s['lost']} lost, {s['wall_s']:.1f} s, "
        f"RSS {s['server_peak_rss_mb']:.0f} MB, busy {100 * s['busy_fraction']:.1f} %, "
        f"freshness p99 {fmt_ms(s['freshness_all_clients_s']['p99'], 0)} ms"
    )


def _table(rows: dict[int, dict[str, Any]]) -> str:
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
                f"{_tokens_per_core(s):,.0f}",
                f"{s['client_cpu_s']:.2f}",
            ]
        )
    return table(headers, out)


if __name__ == "__main__":
    main(sys.argv[1:])
