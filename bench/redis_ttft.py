"""Added TTFT with `--redis` against the embedded queue, same run, same upstream.

    $ python -m bench.redis_ttft                # 300 requests per path
    $ python -m bench.redis_ttft --smoke        # a handful: checks that it runs
    $ python -m bench.redis_ttft --redis redis://127.0.0.1:6379/0   # an existing Redis

One client process sends one request after another, in a shuffled order every round, along
four paths against one practice model that writes with no delay:

    direct          the upstream itself (POST /v1/chat/completions, stream)
    embedded        `tlc serve` (one process, nothing shared): the queue's own API
    redis           `tlc serve --redis URL`: the same API; a slot lease taken before the
                    request starts, its events also written to a Redis stream
    redis-other     a second `tlc serve --redis` replica: submit on `redis`, read the
                    events from the other replica (from the Redis stream)

TTFT is the time from the submit to the first delta. "Added" is a path's median minus
the embedded median: what sharing costs one request when nobody else waits (#15's target:
+1 ms or less). Without `--redis` a private `redis-server` is started on a free loopback
port (no persistence) and stopped at the end.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Sequence
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
    PROMPT,
    PathRun,
    native,
    native_events,
    openai_stream,
    run_rounds,
)
from bench.servers import Workspace, practice_argv, private_redis, start_queue

__all__ = ["main"]


def elsewhere(submit: httpx.Client, read: httpx.Client, max_tokens: int) -> Any:
    """Submit on one replica, read the events on another (the shared log); TTFT = first delta."""
    body = {"prompt": PROMPT, "model": MODEL, "max_tokens": max_tokens, "user": "bench"}

    def measure() -> tuple[float, float, str]:
        t0 = time.perf_counter()
        request_id = submit.post("/api/requests", json=body).raise_for_status().json()["id"]
        with read.stream("GET", f"/api/requests/{request_id}/events") as resp:
            return native_events(resp, t0)

    return measure


def main(argv: Sequence[str] | None = None) -> Result:
    ns = parse(argv)
    result = Result("redis_ttft", machine())
    print(machine_lines(result.machine))
    with contextlib.ExitStack() as stack:
        url = ns.redis or stack.enter_context(private_redis()).url
        ws = stack.enter_context(Workspace())
        upstream = ws.start(practice_argv(), "/v1/models", name="practice")
        up_v1 = upstream.url + "/v1"
        embedded = start_queue(ws, ns, up_v1, name="embedded")
        shared = ("--redis", url)
        ns.queue_env.append(f"TLC_REDIS_NAME=bench-{uuid.uuid4().hex[:8]}")
        redis_a = start_queue(ws, ns, up_v1, *shared, name="redis-a")
        redis_b = start_queue(ws, ns, up_v1, *shared, name="redis-b")

        def client(base: str) -> httpx.Client:
            return stack.enter_context(httpx.Client(base_url=base, timeout=30.0))

        n = ns.max_tokens
        a = client(redis_a.url)
        paths = [
            PathRun("direct", openai_stream(client(upstream.url), MODEL, None, n), upstream),
            PathRun("embedded", native(client(embedded.url), n), embedded),
            PathRun("redis", native(a, n), redis_a),
            PathRun("redis-other", elsewhere(a, client(redis_b.url), n), redis_b),
        ]
        run_rounds(paths, ns.warmup, seed=1, record=False)
        started = time.perf_counter()
        run_rounds(paths, ns.requests, seed=2, record=True)
        wall = time.perf_counter() - started
    data = {p.name: {"ttft": summary(p.ttft), "total": summary(p.total)} for p in paths}
    base = data["embedded"]["ttft"]["median"]
    rows = [
        [
            name,
            fmt_ms(d["ttft"]["median"]),
            fmt_ms(d["ttft"]["p99"]),
            fmt_ms(d["ttft"]["median"] - base) if name != "direct" else "",
            fmt_ms(d["total"]["median"]),
        ]
        for name, d in data.items()
    ]
    print(f"\n{ns.requests} sequential requests per path ({n} tokens each), {wall:.1f} s")
    print(table(["path", "TTFT median ms", "TTFT p99 ms", "added vs embedded", "total ms"], rows))
    added = data["redis"]["ttft"]["median"] - base
    result.goals = [Goal("added TTFT, --redis", "≤ 1 ms", fmt_ms(added) + " ms", added <= 0.001)]
    print("\n" + goal_rows(result.goals))
    result.data = {"requests": ns.requests, "max_tokens": n, "wall_s": wall, "paths": data}
    save_json(ns.json, result)
    return result


def parse(argv: Sequence[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="measured requests per path")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per path")
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="tokens per reply")
    parser.add_argument("--redis", help="use this Redis (redis://host:port/db)")
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.requests, ns.warmup = 5, 2
    return ns


if __name__ == "__main__":
    main()
