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

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    ROOT,
    Goal,
    Result,
    base_parser,
    fmt_ms,
    goal_rows,
    iter_sse,
    machine,
    machine_lines,
    save_json,
    summary,
    table,
)
from bench.profiling import Profiler, top_frames
from bench.servers import PYTHON, ServerProcess, Workspace, practice_argv, start_queue

__all__ = ["main"]

PROMPT = "Tell me about the White Rabbit"
MAX_TOKENS = 32
MODEL = "practice-fast"
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
LITELLM_KEY = "sk-bench"

Measure = Callable[[], tuple[float, float, str]]  #: () -> (ttft s, total s, text)


# ---------------------------------------------------------------------------- one request


def openai_stream(
    client: httpx.Client,
    model: str,
    headers: dict[str, str] | None = None,
    max_tokens: int = MAX_TOKENS,
) -> Measure:
    """A streaming chat completion; TTFT is the first chunk with content."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "stream": True,
    }

    def measure() -> tuple[float, float, str]:
        parts: list[str] = []
        first = None
        t0 = time.perf_counter()
        with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp:
            resp.raise_for_status()
            for _, data in iter_sse(resp.iter_lines()):
                if data == "[DONE]":
                    continue  # read on to the end of the body: the connection is reused
                for choice in json.loads(data).get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if first is None:
                            first = time.perf_counter()
                        parts.append(content)
        end = time.perf_counter()
        assert first is not None, "no content came back"
        return first - t0, end - t0, "".join(parts)

    return measure


def native(client: httpx.Client, max_tokens: int = MAX_TOKENS) -> Measure:
    """The queue's own API: submit, then read the request's events; TTFT is the first delta."""
    body = {"prompt": PROMPT, "model": MODEL, "max_tokens": max_tokens, "user": "bench"}

    def measure() -> tuple[float, float, str]:
        parts: list[str] = []
        first = None
        t0 = time.perf_counter()
        accepted = client.post("/api/requests", json=body)
        accepted.raise_for_status()
        with client.stream("GET", accepted.json()["events"]) as resp:
            resp.raise_for_status()
            for name, data in iter_sse(resp.iter_lines()):
                if name == "delta":
                    if first is None:
                        first = time.perf_counter()
                    parts.append(json.loads(data).get("content") or "")
                elif name in ("error", "cancelled"):
                    raise RuntimeError(f"request ended with {name}: {data}")
        end = time.perf_counter()
        assert first is not None, "no delta came back"
        return first - t0, end - t0, "".join(parts)

    return measure


# ---------------------------------------------------------------------------- LiteLLM


def litellm_executable(log: Path) -> tuple[Path | None, str]:
    """LiteLLM's proxy from its own venv, made on first use; (None, why) if it can't be had."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe, "installed"
    print(f"overhead: installing litellm[proxy] into {LITELLM_VENV} (first run only) …")
    with log.open("ab") as out:
        steps = [
            [PYTHON, "-m", "venv", str(LITELLM_VENV)],
            [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"],
        ]
        for step in steps:
            try:
                code = subprocess.run(step, stdout=out, stderr=out, timeout=1200).returncode
            except (OSError, subprocess.TimeoutExpired) as exc:
                return None, f"{' '.join(step[:3])} failed: {exc}"
            if code != 0:
                tail = log.read_text("utf-8", "replace").strip().splitlines()[-1:]
                return None, f"{' '.join(step[:3])} exited {code}: {' '.join(tail)}"
    return (exe, "installed now") if exe.exists() else (None, "no litellm after install")


def start_litellm(ws: Workspace, upstream: str) -> tuple[ServerProcess | None, str]:
    exe, why = litellm_executable(ws.dir / "litellm-install.log")
    if exe is None:
        return None, why
    env = {
        "LITELLM_MASTER_KEY": LITELLM_KEY,  # the proxy refuses to start without one
        "OPENAI_API_KEY": "sk-unused",  # the practice model ignores it; the client wants one
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the cost map from the internet
    }
    argv = [str(exe), "--model", f"openai/{MODEL}", "--api_base", upstream, "--host", "127.0.0.1"]
    try:
        server = ws.start(argv, "/health/liveliness", name="litellm", env=env, timeout_s=180)
    except RuntimeError as exc:
        return None, f"litellm did not start: {str(exc).splitlines()[0]}"
    return server, why


# ---------------------------------------------------------------------------- the run


@dataclass
class PathRun:
    name: str
    measure: Measure
    server: ServerProcess | None  #: whose CPU time per request is reported
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    texts: set[str] = field(default_factory=set)


def run_rounds(paths: Sequence[PathRun], rounds: int, seed: int, record: bool) -> None:
    order = list(paths)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for path in order:
            ttft, total, text = path.measure()
            if record:
                path.ttft.append(ttft)
                path.total.append(total)
                path.texts.add(text)


def main(argv: Sequence[str] | None = None) -> Result:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="measured requests per path")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per path")
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="tokens per reply")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.requests, ns.warmup, ns.no_litellm = 5, 2, True
    result = Result("overhead", machine())
    print(machine_lines(result.machine))

    with Workspace() as ws:
        upstream = ws.start(practice_argv(), "/v1/models", name="practice")
        up_v1 = upstream.url + "/v1"
        queue = start_queue(ws, ns, up_v1)
        passthrough = ws.start(
            [PYTHON, "-m", "uvicorn", "bench.passthrough:app", "--log-level", "warning"],
            "/v1/models",
            name="passthrough",
            env={"PASSTHROUGH_UPSTREAM": up_v1},
        )
        litellm, litellm_note = (None, "left out (--no-litellm / --smoke)")
        if not ns.no_litellm:
            litellm, litellm_note = start_litellm(ws, up_v1)
            if litellm is None:
                print(f"overhead: LiteLLM not measured: {litellm_note}")

        clients: list[httpx.Client] = []

        def client(base: str) -> httpx.Client:
            clients.append(httpx.Client(base_url=base, timeout=30.0))
            return clients[-1]

        try:
            n = ns.max_tokens
            paths = [
                PathRun("direct", openai_stream(client(upstream.url), MODEL, None, n), upstream),
                PathRun(
                    "passthrough",
                    openai_stream(client(passthrough.url), MODEL, None, n),
                    passthrough,
                ),
                PathRun("queue-openai", openai_stream(client(queue.url), MODEL, None, n), queue),
                PathRun("queue-native", native(client(queue.url), n), queue),
            ]
            if litellm is not None:
                auth = {"Authorization": f"Bearer {LITELLM_KEY}"}
                lite = openai_stream(client(litellm.url), f"openai/{MODEL}", auth, n)
                paths.append(PathRun("litellm", lite, litellm))
            run_rounds(paths, ns.warmup, seed=1, record=False)
            cpu_before = {p.name: p.server.cpu_s() for p in paths if p.server}
            load_before = _load()
            started = time.perf_counter()
            run_rounds(paths, ns.requests, seed=2, record=True)
            wall = time.perf_counter() - started
            cpu_after = {p.name: p.server.cpu_s() for p in paths if p.server}
            load_after = _load()
            profile = None
            if ns.profile is not None:
                profile = _profile(ns.profile, queue, paths, ns.requests)
        finally:
            for c in clients:
                c.close()

    # A server's CPU time is split over every request it served: the practice model serves
    # every path, the queue server two.
    served: dict[str, int] = {upstream.name: len(paths)}
    for path in paths[1:]:
        assert path.server is not None
        served[path.server.name] = served.get(path.server.name, 0) + 1
    direct = summary(paths[0].ttft)
    rows: list[list[str]] = []
    data: dict[str, dict[str, Any]] = {}
    for path in paths:
        ttft, total = summary(path.ttft), summary(path.total)
        assert path.server is not None
        share = served[path.server.name]
        cpu_ms = (cpu_after[path.name] - cpu_before[path.name]) / share / ns.requests * 1000
        added = ttft["median"] - direct["median"]
        data[path.name] = {
            "ttft": ttft,
            "total": total,
            "added_ttft_s": added,
            "added_total_s": total["median"] - summary(paths[0].total)["median"],
            "server_cpu_ms_per_request": cpu_ms,
            "distinct_texts": len(path.texts),
            "text": min(path.texts) if path.texts else "",
        }
        rows.append(
            [
                path.name,
                fmt_ms(ttft["median"]),
                fmt_ms(ttft["p99"]),
                fmt_ms(total["median"]),
                fmt_ms(total["p99"]),
                "" if path is paths[0] else f"+{fmt_ms(added)}",
                f"{ttft['median'] / direct['median']:.2f}×",
                f"{cpu_ms:.2f}",
            ]
        )
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
    # direct: the practice model's own CPU per request (it serves every path)
    print(
        f"\n{ns.requests} sequential requests per path ({ns.max_tokens} tokens each), "
        f"{wall:.1f} s; load {load_before} → {load_after}"
    )
    print(table(headers, rows))
    pt = data["passthrough"]["added_ttft_s"]
    lite_added = data.get("litellm", {}).get("added_ttft_s")
    goals: list[Goal] = []
    for name in ("queue-openai", "queue-native"):
        added = data[name]["added_ttft_s"]
        goals.append(
            Goal(f"{name}: added TTFT", "≤ 2 ms median", f"{fmt_ms(added)} ms", added <= 0.002)
        )
        ratio = added / pt if pt > 0 else float("inf")
        goals.append(
            Goal(f"{name}: ÷ pass-through's added", "≤ 1.5×", f"{ratio:.3f}×", ratio <= 1.5)
        )
        if lite_added is None:
            goals.append(Goal(f"{name}: ÷ LiteLLM's added", "≤ 0.2×", "not measured", None))
        else:
            r = added / lite_added
            goals.append(Goal(f"{name}: ÷ LiteLLM's added", "≤ 0.2×", f"{r:.3f}×", r <= 0.2))
    print("\n" + goal_rows(goals))
    if lite_added is None:
        print(f"LiteLLM: not measured ({litellm_note})")
    if profile:
        print("\n" + profile)
    result.data = {
        "requests": ns.requests,
        "warmup": ns.warmup,
        "max_tokens": ns.max_tokens,
        "wall_s": wall,
        "load": [load_before, load_after],
        "litellm": litellm_note,
        "paths": data,
        "profile": profile,
    }
    result.goals = goals
    save_json(ns.json, result)
    return result


def _profile(out_dir: Path, queue: ServerProcess, paths: Sequence[PathRun], n: int) -> str:
    """py-spy on the queue server while only the two queue paths run (numbers not kept)."""
    queue_paths = [p for p in paths if p.server is queue]
    out = out_dir / "overhead-queue.txt"
    with Profiler(queue.pid, out):
        run_rounds(queue_paths, n, seed=3, record=False)
    return f"py-spy profile of the queue server ({out}):\n" + top_frames(out, top=30)


def _load() -> str:
    import os

    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main(sys.argv[1:])
