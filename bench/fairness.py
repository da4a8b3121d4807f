"""Fairness: one heavy user with 20 queued prompts must not hold up five light users.

    $ python -m bench.fairness
    $ python -m bench.fairness --smoke

One slot (a practice model with `--parallel 1`, ~0.11 s per answer), a fresh queue server
per scenario, so dispatch numbers count from 1:

    staggered    heavy queues 20; light user j sends one prompt while heavy's request
                 1 + 3j is running
    burst        heavy queues 20; all five light users send one prompt at the same moment
    closed-loop  heavy queues 20; each light user keeps one prompt in the queue (sends the next
                 as soon as the last is done) until heavy's last prompt has started: all six
                 are backlogged the whole time, so each should get a sixth of the dispatches

A light request's delay is counted in dispatches: 1 means it was the next request to start
after it arrived. "FIFO" is where a first-come-first-served queue would have started it (the
baseline). Jain's index over the six users' dispatches in the closed-loop window is 1.0 when
all got the same, 1/6 when one got everything.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench.fairness_scenarios import Scenario, burst, closed_loop, jain, staggered
from bench.harness import (
    Goal,
    Result,
    base_parser,
    goal_rows,
    machine,
    machine_lines,
    save_json,
    table,
)
from bench.servers import Workspace, practice_argv, start_queue

__all__ = ["jain", "main"]


def main(argv: Sequence[str] | None = None) -> Result:
    ns = parse(argv)
    result = Result("fairness", machine())
    print(machine_lines(result.machine))
    runs: dict[str, dict[str, Any]] = {}
    with Workspace() as ws:
        upstream = ws.start(
            practice_argv(
                tokens_per_second=ns.tokens_per_second,
                first_token_latency_s=ns.first_token_latency,
                parallel=1,
            ),
            "/v1/models",
            name="practice",
        )
        limit = str(ns.heavy + 10)
        scenarios = {
            "staggered": lambda s: staggered(s, ns.heavy, ns.lights, ns.every),
            "burst": lambda s: burst(s, ns.heavy, ns.lights, at=3),
            "closed-loop": lambda s: closed_loop(s, ns.heavy, ns.lights),
        }
        for name, scenario in scenarios.items():
            # A fresh queue server per scenario, so dispatch numbers count from 1.
            queue = start_queue(
                ws, ns, upstream.url + "/v1", "--max-per-user", limit, name=f"queue-{name}"
            )
            started = time.monotonic()
            runs[name] = asyncio.run(run_scenario(queue.url, scenario, ns.max_tokens))
            runs[name]["wall_s"] = time.monotonic() - started
            queue.stop()
    worst = report(ns, runs)
    loop = runs["closed-loop"]
    result.goals = [
        Goal(
            "each light request starts within the next 5 dispatches",
            "≤ 5",
            f"worst {worst}",
            worst is not None and worst <= 5,
        ),
        Goal(
            "Jain's index, backlogged users",
            "≥ 0.99",
            f"{loop['jain_dispatches']:.4f}",
            loop["jain_dispatches"] >= 0.99,
        ),
    ]
    print("\n" + goal_rows(result.goals))
    settings = {k: v for k, v in vars(ns).items() if k not in ("json", "profile")}
    result.data = {"settings": settings, "scenarios": runs}
    save_json(ns.json, result)
    return result


async def run_scenario(url: str, scenario: Any, max_tokens: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await scenario(Scenario(client, max_tokens))  # type: ignore[no-any-return]


def parse(argv: Sequence[str] | None) -> Any:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--heavy", type=int, default=20)
    parser.add_argument("--lights", type=int, default=5)
    parser.add_argument("--every", type=int, default=3, help="staggered: dispatches apart")
    parser.add_argument("--tokens-per-second", type=float, default=200)
    parser.add_argument("--first-token-latency", type=float, default=0.01)
    parser.add_argument("--max-tokens", type=int, default=20)
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.heavy, ns.lights, ns.every, ns.max_tokens = 6, 2, 2, 8
    return ns


def report(ns: Any, runs: dict[str, dict[str, Any]]) -> int | None:
    """Print the tables; the worst light delay, in dispatches."""
    print(
        f"\n1 slot; heavy user queues {ns.heavy}, {ns.lights} light users; practice model at "
        f"{ns.tokens_per_second:g} tok/s after {ns.first_token_latency:g} s, "
        f"{ns.max_tokens} tokens per answer"
    )
    rows = []
    delays: list[int] = []
    for name in ("staggered", "burst"):
        for light in runs[name]["lights"]:
            delays.append(light["delay"] if light["delay"] is not None else 10**6)
            raced = light["dispatched_after"] != light["dispatched_before"]
            rows.append(
                [
                    name,
                    light["user"],
                    f"{light['dispatched_before']}{' (raced)' if raced else ''}",
                    light["dispatch_no"],
                    light["delay"],
                    light["dispatched_before"] + light["waiting_before"] + 1,
                    f"{1000 * (light['waited_s'] or 0):.0f}",
                ]
            )
    print(
        table(
            [
                "scenario",
                "light user",
                "arrived after dispatch",
                "started as dispatch",
                "dispatches until it started",
                "FIFO would start it as",
                "waited ms",
            ],
            rows,
        )
    )
    loop = runs["closed-loop"]
    print(f"\nclosed loop: the {loop['window_dispatches']} dispatches until heavy's last start")
    print(
        table(
            ["user", "dispatches", "tokens"],
            [[u, loop["dispatches"][u], loop["tokens"][u]] for u in loop["dispatches"]],
        )
    )
    print(
        f"Jain's index: {loop['jain_dispatches']:.4f} (dispatches), "
        f"{loop['jain_tokens']:.4f} (tokens)"
    )
    return max(delays) if delays else None


if __name__ == "__main__":
    main(sys.argv[1:])
