"""Memory under issue 13's attacks: the queue server's RSS before, at its peak, and after.

    $ python -m bench.memory_bounds --scenario all        # the figures in docs/reliability.md
    $ python -m bench.memory_bounds --scenario subscribers --quick

- subscribers: 2,000 `/healthz` calls at once (what 2,000 connections cost), then 3 rounds
  of one request held waiting (queue paused) and 2,000 event streams on it at once.
- big-replies: 400 replies of 792 KB (3,960 tokens of 200 characters from
  `bench.fast_upstream`), all submitted at once, 4 running; the peak against a stated bound.
- one-off-users: 100,000 requests, each from a user never seen before (no keys, `user`
  varies), 32 at a time; then the idle period (`TLC_RETAIN_S`) and the RSS again.

Each runs against a fresh `tlc serve --slots 4` in a process of its own (RSS from its
`/proc/<pid>/status`); `--quick` runs small sizes to check that it all works.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from bench import rss
from bench.harness import Result, base_parser, machine, machine_lines, save_json, table
from bench.servers import PYTHON, Workspace, raise_fd_limit, start_queue

FULL = {"subscribers": 2000, "big-replies": 400, "one-off-users": 100_000}
QUICK = {"subscribers": 40, "big-replies": 12, "one-off-users": 300}
TOKENS, TOKEN_CHARS = 3960, 200  # 792,000 characters a reply: under every default limit
MB = 2**20
UVICORN = [PYTHON, "-m", "uvicorn", "--log-level", "warning"]
#: Over retain_bytes, what is not a finished record: the 4 running replies (~8 MB), 400
#: requests in flight at once (~12 MB), history's snapshots on their way to disk and the
#: allocator's slack (docs/reliability.md).
MARGIN_MB = 64


def main(argv: Sequence[str] | None = None) -> Result:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=[*FULL, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--n", type=int, help="another size for the chosen scenario")
    parser.add_argument("--idle-s", type=float, help="TLC_RETAIN_S: the idle period (30 s)")
    ns = parser.parse_args(argv)
    quick = ns.quick or ns.smoke
    sizes = QUICK if quick else FULL
    idle_s = ns.idle_s if ns.idle_s is not None else (1.0 if quick else 30.0)
    retain_bytes = 4 * MB if quick else 256 * MB  # quick: small enough to be exceeded
    raise_fd_limit(2 * sizes["subscribers"] + 256)
    result = Result("memory_bounds", machine())
    print(machine_lines(result.machine))
    rows = []
    for name in FULL if ns.scenario == "all" else [ns.scenario]:
        n = ns.n or sizes[name]
        # Only one-off users wait out the idle period; the others keep the 900 s default,
        # so it is the byte budget that bounds the big replies.
        retain_s = idle_s if name == "one-off-users" else 900
        env_ = [f"TLC_RETAIN_S={retain_s}", f"TLC_RETAIN_BYTES={retain_bytes}"]
        queue_env = ["TLC_LOG_LEVEL=warning", *env_, *ns.queue_env]
        with Workspace() as ws:
            env = {"FAST_UPSTREAM_TOKEN_CHARS": str(TOKEN_CHARS)}
            # A long keep-alive: a pooled connection the upstream closes just as the queue
            # reuses it breaks a reply (`upstream_error`, ReadError), 5 in 400 with 5 s.
            argv_ = [*UVICORN, "bench.fast_upstream:app", "--timeout-keep-alive", "300"]
            upstream = ws.start(argv_, "/v1/models", name="upstream", env=env)
            how = argparse.Namespace(queue_cmd=ns.queue_cmd, queue_env=queue_env)
            queue = start_queue(ws, how, upstream.url + "/v1", "--slots", "4")
            port, pid = queue.port, queue.pid
            if name == "subscribers":
                data = asyncio.run(rss.subscribers(port, pid, n))
                outcome = (
                    f"{data['answered']} a round, {data['requests_ended']}; "
                    f"{n:,} /healthz first: {data['rss_after_healthz_burst_mb']} MB"
                )
            elif name == "big-replies":
                data = asyncio.run(rss.big_replies(port, pid, n, TOKENS))
                data["bound_mb"] = data["rss_mb"]["before"] + retain_bytes / MB + MARGIN_MB
                outcome = f"{data['ended']}; bound {data['bound_mb']:.0f} MB"
            else:
                data = asyncio.run(rss.one_off_users(port, pid, n, idle_s))
                outcome = f"{data['ended']} in {data['seconds']} s; idle {idle_s:g} s"
        result.data[name] = data
        mb = data["rss_mb"]
        rows.append([name, f"{n:,}", outcome, mb["before"], mb["peak"], mb["after"]])
        print(table(["scenario", "n", "outcome", "RSS before", "peak", "after (MB)"], rows[-1:]))
    print("\n" + table(["scenario", "n", "outcome", "RSS before", "peak", "after (MB)"], rows))
    save_json(ns.json, result)
    return result


if __name__ == "__main__":
    main()
