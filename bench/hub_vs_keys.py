"""Hub mode vs keys mode: what identifying a caller by a JupyterHub token adds to TTFT.

    $ python -m bench.hub_vs_keys                 # 300 requests per path
    $ python -m bench.hub_vs_keys --smoke         # a handful: checks that it runs

    >>> (parse(["--smoke"]).requests, parse([]).requests)
    (5, 300)
    >>> result = main(["--smoke"])                # doctest: +SKIP
    >>> result.data["hub_over_keys_ttft"]         # doctest: +SKIP
    1.02

A real JupyterHub (`bench/hub.py`, as the Hub tests start it, without its managed service)
and, in front of one practice model writing with no delay, three queue servers in processes
of their own, timed in turn in a shuffled order every round (`bench.overhead_paths`):

    direct          the practice model itself: the baseline
    keys            `tlc serve` with `TLC_KEYS`; alice sends `Bearer KEY`
    hub             `tlc serve` as the Hub's external service `tlc-ext` (default token
                    cache, 60 s); alice sends her Hub token
    hub-no-cache    the same with `TLC_HUB_CACHE_S=0`: every request asks the Hub

"Added" is a path's median TTFT minus direct's. The token cache should make hub and keys
equal within noise; hub-no-cache shows what one Hub lookup per request would cost.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
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
)
from bench.hub import EXTERNAL, running_hub
from bench.overhead import path_table, summarise
from bench.overhead_paths import MAX_TOKENS, MODEL, PathRun, openai_stream, run_rounds
from bench.servers import ServerProcess, Workspace, practice_argv, queue_argv

__all__ = ["main"]

KEY = "sk-bench-alice-0001"  # alice's key in keys mode
#: Students are rate-limited by default once people are identified; a benchmark's 300
#: requests a minute are not what is measured here (0: no limit).
NO_RATE_LIMIT = {"TLC_RATE_STUDENT_RPM": "0", "TLC_RATE_STUDENT_TPM": "0"}


def main(argv: Sequence[str] | None = None) -> Result:
    ns = parse(argv)
    result = Result("hub_vs_keys", machine())
    print(machine_lines(result.machine))
    with Workspace() as ws, contextlib.ExitStack() as stack:
        started = time.perf_counter()
        hub = stack.enter_context(running_hub(ws.dir / "hub", managed_service=False))
        hub_start_s = time.perf_counter() - started
        upstream = ws.start(practice_argv(), "/v1/models", name="practice")
        up_v1 = upstream.url + "/v1"
        as_service = {
            "JUPYTERHUB_API_URL": hub.api_url,
            "JUPYTERHUB_API_TOKEN": hub.external_token,
            "JUPYTERHUB_SERVICE_NAME": EXTERNAL,
        }

        def queue(name: str, env: dict[str, str]) -> ServerProcess:
            argv = queue_argv(up_v1)
            if ns.queue_cmd:  # as bench.servers.start_queue: the flags every bench takes
                argv = [*shlex.split(ns.queue_cmd), *argv[3:]]
            given = dict(kv.split("=", 1) for kv in ns.queue_env)
            return ws.start(argv, "/readyz", name=name, env=env | NO_RATE_LIMIT | given)

        keyed = queue("keys", {"TLC_KEYS": f"{KEY}:alice:student"})
        hubbed = queue("hub", as_service)
        uncached = queue("hub-no-cache", as_service | {"TLC_HUB_CACHE_S": "0"})

        def client(server: ServerProcess) -> httpx.Client:
            return stack.enter_context(
                httpx.Client(base_url=server.url, timeout=30.0, trust_env=False)
            )

        n, token = ns.max_tokens, {"Authorization": f"token {hub.token_for('alice')}"}
        paths = [
            PathRun("direct", openai_stream(client(upstream), MODEL, None, n), upstream),
            PathRun("keys", openai_stream(client(keyed), MODEL, _bearer(KEY), n), keyed),
            PathRun("hub", openai_stream(client(hubbed), MODEL, token, n), hubbed),
            PathRun("hub-no-cache", openai_stream(client(uncached), MODEL, token, n), uncached),
        ]
        run_rounds(paths, ns.warmup, seed=1, record=False)
        cpu0 = {p.name: p.server.cpu_s() for p in paths if p.server}
        started = time.perf_counter()
        run_rounds(paths, ns.requests, seed=2, record=True)
        wall = time.perf_counter() - started
        cpu = {p.name: p.server.cpu_s() - cpu0[p.name] for p in paths if p.server}
    data = summarise(paths, cpu, ns.requests)
    hub_added, keys_added = data["hub"]["added_ttft_s"], data["keys"]["added_ttft_s"]
    ratio = data["hub"]["ttft"]["median"] / data["keys"]["ttft"]["median"]
    print(
        f"\nJupyterHub started in {hub_start_s:.1f} s; {ns.requests} sequential requests per "
        f"path ({ns.max_tokens} tokens each), {wall:.1f} s"
    )
    print(path_table(data))
    print(
        f"\nadded TTFT, median: hub +{fmt_ms(hub_added)} ms, keys +{fmt_ms(keys_added)} ms; "
        f"hub TTFT ÷ keys TTFT = {ratio:.3f}×"
    )
    result.goals = goals(data)
    print("\n" + goal_rows(result.goals))
    result.data = {
        "requests": ns.requests,
        "warmup": ns.warmup,
        "max_tokens": ns.max_tokens,
        "wall_s": wall,
        "hub_start_s": hub_start_s,
        "paths": data,
        "hub_added_ttft_s": hub_added,
        "keys_added_ttft_s": keys_added,
        "hub_over_keys_ttft": ratio,
    }
    save_json(ns.json, result)
    return result


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def parse(argv: Sequence[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="measured requests per path")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per path")
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="tokens per reply")
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.requests, ns.warmup = 5, 2
    return ns


def goals(data: dict[str, dict[str, Any]]) -> list[Goal]:
    """Hub mode costs what keys mode costs: the token cache answers without the Hub."""
    gap = data["hub"]["ttft"]["median"] - data["keys"]["ttft"]["median"]
    return [
        Goal("hub − keys, median TTFT", "≤ 0.5 ms", f"{fmt_ms(gap)} ms", gap <= 0.0005),
    ]


if __name__ == "__main__":
    main(sys.argv[1:])
