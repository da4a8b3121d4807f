"""Overhead: what the queue adds to one request when nobody else is waiting.

    $ python -m bench.overhead                  # 300 requests per path, with LiteLLM
    $ python -m bench.overhead --smoke          # a handful, no LiteLLM

Time to first token (TTFT) and total time, one request after another from one client
process, against a practice model that writes with no delay, along five paths measured in
turn, in a shuffled order every round, so load that comes and goes hits them alike:

    direct        the upstream itself (POST /v1/chat/completions, stream)
    passthrough   bench/passthrough.py: FastAPI + httpx forwarding bytes, no queue
    queue-openai  the queue server's OpenAI door (POST /v1/chat/completions, stream)
    queue-native  the queue server's own API (POST /api/requests, then GET …/events)
    litellm       the LiteLLM proxy (in its own venv, bench/.venv-litellm)

"Added" is a path's median minus the direct median; the goals compare those.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    Goal,
    Result,
    base_parser,
    fmt_ms,
    goal_rows,
    machine,
    machine_lines,
    save_json,
    summary,
    table,
)
from bench.overhead_paths import (
    MAX_TOKENS,
    MODEL,
    PathRun,
    litellm_auth,
    native,
    openai_stream,
    run_rounds,
    start_litellm,
)
from bench.profiling import Profiler, top_frames
from bench.servers import ServerProcess, Workspace, practice_argv, start_queue, start_uvicorn_app

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> Result:
    ns = parse(argv)
    result = Result("overhead", machine())
    print(machine_lines(result.machine))
    with Workspace() as ws, contextlib.ExitStack() as clients:
        upstream = ws.start(practice_argv(), "/v1/models", name="practice")
        up_v1 = upstream.url + "/v1"
        queue = start_queue(ws, ns, up_v1)
        passthrough = start_uvicorn_app(
            ws, "bench.passthrough:app", "passthrough", {"PASSTHROUGH_UPSTREAM": up_v1}
        )
        litellm, litellm_note = None, "left out (--no-litellm / --smoke)"
        if not ns.no_litellm:
            litellm, litellm_note = start_litellm(ws, up_v1)
            if litellm is None:
                print(f"overhead: LiteLLM not measured: {litellm_note}")

        def client(server: ServerProcess) -> httpx.Client:
            return clients.enter_context(httpx.Client(base_url=server.url, timeout=30.0))

        n = ns.max_tokens
        paths = [
            PathRun("direct", openai_stream(client(upstream), MODEL, None, n), upstream),
            PathRun("passthrough", openai_stream(client(passthrough), MODEL, None, n), passthrough),
            PathRun("queue-openai", openai_stream(client(queue), MODEL, None, n), queue),
            PathRun("queue-native", native(client(queue), n), queue),
        ]
        if litellm is not None:
            lite = openai_stream(client(litellm), f"openai/{MODEL}", litellm_auth(), n)
            paths.append(PathRun("litellm", lite, litellm))
        run_rounds(paths, ns.warmup, seed=1, record=False)
        cpu0, load = {p.name: p.server.cpu_s() for p in paths if p.server}, [_load()]
        started = time.perf_counter()
        run_rounds(paths, ns.requests, seed=2, record=True)
        wall = time.perf_counter() - started
        cpu = {p.name: p.server.cpu_s() - cpu0[p.name] for p in paths if p.server}
        load.append(_load())
        profile = _profile(ns.profile, queue, paths, ns.requests) if ns.profile else None
    data = summarise(paths, cpu, ns.requests)
    print(
        f"\n{ns.requests} sequential requests per path ({ns.max_tokens} tokens each), "
        f"{wall:.1f} s; load {load[0]} → {load[1]}"
    )
    print(path_table(data))
    result.goals = goals(data)
    print("\n" + goal_rows(result.goals))
    if "litellm" not in data:
        print(f"LiteLLM: not measured ({litellm_note})")
    if profile:
        print("\n" + profile)
    result.data = {
        "requests": ns.requests,
        "warmup": ns.warmup,
        "max_tokens": ns.max_tokens,
        "wall_s": wall,
        "load": load,
        "litellm": litellm_note,
        "paths": data,
        "profile": profile,
    }
    save_json(ns.json, result)
    return result


def parse(argv: Sequence[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="measured requests per path")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per path")
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="tokens per reply")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.requests, ns.warmup, ns.no_litellm = 5, 2, True
    return ns


def summarise(
    paths: Sequence[PathRun], cpu: dict[str, float], requests: int
) -> dict[str, dict[str, Any]]:
    """Per path: TTFT and total, added over direct, server CPU per request."""
    # A server's CPU time is split over every request it served: the practice model serves
    # every path, the queue server two.
    served: dict[str, int] = {paths[0].server.name: len(paths)} if paths[0].server else {}
    for path in paths[1:]:
        assert path.server is not None
        served[path.server.name] = served.get(path.server.name, 0) + 1
    direct, direct_total = summary(paths[0].ttft), summary(paths[0].total)
    data: dict[str, dict[str, Any]] = {}
    for path in paths:
        assert path.server is not None
        ttft, total = summary(path.ttft), summary(path.total)
        data[path.name] = {
            "ttft": ttft,
            "total": total,
            "added_ttft_s": ttft["median"] - direct["median"],
            "added_total_s": total["median"] - direct_total["median"],
            "ttft_ratio": ttft["median"] / direct["median"],
            "server_cpu_ms_per_request": cpu[path.name]
            / served[path.server.name]
            / requests
            * 1000,
            "distinct_texts": len(path.texts),
            "text": min(path.texts) if path.texts else "",
        }
    return data


def path_table(data: dict[str, dict[str, Any]]) -> str:
    headers = [
        "path",
        "TTFT median ms",
        "TTFT p99 ms",
        "total median ms",
        "total p99 ms",
        "added TTFT ms",
        "TTFT ÷ direct",
        "server CPU ms/req",
    ]
    rows = [
        [
            name,
            fmt_ms(p["ttft"]["median"]),
            fmt_ms(p["ttft"]["p99"]),
            fmt_ms(p["total"]["median"]),
            fmt_ms(p["total"]["p99"]),
            "" if name == "direct" else f"+{fmt_ms(p['added_ttft_s'])}",
            f"{p['ttft_ratio']:.2f}×",
            f"{p['server_cpu_ms_per_request']:.2f}",
        ]
        for name, p in data.items()
    ]
    return table(headers, rows)


def goals(data: dict[str, dict[str, Any]]) -> list[Goal]:
    pt = data["passthrough"]["added_ttft_s"]
    lite_added = data.get("litellm", {}).get("added_ttft_s")
    out: list[Goal] = []
    for name in ("queue-openai", "queue-native"):
        added = data[name]["added_ttft_s"]
        out.append(
            Goal(f"{name}: added TTFT", "≤ 2 ms median", f"{fmt_ms(added)} ms", added <= 0.002)
        )
        ratio = added / pt if pt > 0 else float("inf")
        out.append(Goal(f"{name}: ÷ pass-through's added", "≤ 1.5×", f"{ratio:.3f}×", ratio <= 1.5))
        if lite_added is None:
            out.append(Goal(f"{name}: ÷ LiteLLM's added", "≤ 0.2×", "not measured", None))
        else:
            r = added / lite_added
            out.append(Goal(f"{name}: ÷ LiteLLM's added", "≤ 0.2×", f"{r:.3f}×", r <= 0.2))
    return out


def _profile(out_dir: Path, queue: ServerProcess, paths: Sequence[PathRun], n: int) -> str:
    """py-spy on the queue server while only the two queue paths run (numbers not kept)."""
    queue_paths = [p for p in paths if p.server is queue]
    out = out_dir / "overhead-queue.txt"
    with Profiler(queue.pid, out):
        run_rounds(queue_paths, n, seed=3, record=False)
    return f"py-spy profile of the queue server ({out}):\n" + top_frames(out, top=30)


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main(sys.argv[1:])
