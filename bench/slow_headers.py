"""Slow headers: does `/healthz` keep answering while 1,100 sockets never finish theirs?

    $ python -m bench.slow_headers                 # 1,100 sockets, 30 s, soft open files 1,024
    $ python -m bench.slow_headers --unguarded     # the same against plain uvicorn: before
    $ python -m bench.slow_headers --hard-limit    # hard limit 1,024 too: past the cap
    $ python -m bench.slow_headers --smoke

The queue server runs as `tlc serve` in a process of its own whose soft open-file limit is
1,024, the usual default; `tlc serve` raises it to the hard limit. With `--hard-limit` it
cannot (hard = 1,024 too), so the connection cap (1,024 − 128) is below the attack and
the oldest waiting sockets are pushed out to make room. The attacker keeps
`--sockets` connections open, each sending the start of a request and then one more header
byte every second (a slowloris), and reopens any the server closes. A probe opens a fresh
connection for `GET /healthz` every 50 ms, from the first attacking socket to the last.
Everything is on loopback, and every socket is closed at the end.

`--unguarded` serves the same app with `uvicorn.run(app)` and none of
`server/connections.py`'s options: what the issue found (health fails for everyone).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import (
    Goal,
    Result,
    base_parser,
    goal_rows,
    machine,
    machine_lines,
    percentile,
    save_json,
    table,
)
from bench.servers import PYTHON, Workspace, raise_fd_limit

NOFILE = 1024
SLOW = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
#: `tlc serve` exactly as users run it
GUARDED = "import runpy; runpy.run_module('tlc_widgets.cli', run_name='__main__')"
#: the same app with uvicorn's defaults only
UNGUARDED = (
    "import sys, uvicorn; from tlc_widgets.server import create_app; "
    "uvicorn.run(create_app(), host='127.0.0.1', port=int(sys.argv[-1]), log_level='warning')"
)


def _limited(code: str, hard: bool) -> str:
    """`code`, run under a soft open-file limit of 1,024 (and a hard one with `hard`)."""
    limit = f"{NOFILE}" if hard else "resource.getrlimit(resource.RLIMIT_NOFILE)[1]"
    return (
        f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({NOFILE}, {limit})); {code}"
    )


async def _attacker(port: int, stop: asyncio.Event, seen: Counter[str], held: list[int]) -> None:
    """One slow-header socket, reopened whenever the server closes it."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        except (OSError, TimeoutError):
            seen["connect failed"] += 1
            await asyncio.sleep(0.1)
            continue
        seen["opened"] += 1
        held[0] += 1
        held[1] = max(held[1], held[0])
        try:
            writer.write(SLOW)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    answer = await asyncio.wait_for(reader.read(200), 1.0)
                    status = answer.split(b" ", 2)[1].decode() if answer else "closed"
                    seen[f"answered {status}"] += 1
                    break
                writer.write(b"a")  # one more byte of the header, never its end
        except (OSError, IndexError):
            seen["reset"] += 1
        finally:
            held[0] -= 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


#: The probe runs in a process of its own: the attacker's event loop must not delay it.
PROBE = """
import json, sys, time, httpx
url, seconds = sys.argv[1], float(sys.argv[2])
times, failures = [], {}
limits = httpx.Limits(max_keepalive_connections=0)  # a new connection every time
with httpx.Client(base_url=url, timeout=5, limits=limits) as client:
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        try:
            r = client.get("/healthz")
            if r.status_code == 200:
                times.append(time.perf_counter() - start)
            else:
                failures[f"status {r.status_code}"] = failures.get(f"status {r.status_code}", 0) + 1
        except httpx.HTTPError as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
        time.sleep(0.05)
print(json.dumps({"times": times, "failures": failures}))
"""


async def attack(url: str, port: int, sockets: int, seconds: float) -> dict[str, Any]:
    stop = asyncio.Event()
    seen: Counter[str] = Counter()
    held = [0, 0]  # open now, most open at once
    probe = await asyncio.create_subprocess_exec(
        PYTHON, "-c", PROBE, url, str(seconds), stdout=asyncio.subprocess.PIPE
    )
    assert probe.stdout is not None
    await probe.stdout.readline()  # "ready": probing starts with the attack
    tasks = [asyncio.create_task(_attacker(port, stop, seen, held)) for _ in range(sockets)]
    out = await probe.stdout.read()
    await probe.wait()
    stop.set()
    await asyncio.gather(*tasks)
    probed = json.loads(out)
    times: list[float] = probed["times"]
    return {
        "sockets": sockets,
        "seconds": seconds,
        "most_open_at_once": held[1],
        "attacker": dict(seen),
        "probes_ok": len(times),
        "probes_failed": probed["failures"],
        "p50_ms": percentile(times, 50) * 1000,
        "p99_ms": percentile(times, 99) * 1000,
        "max_ms": max(times, default=float("nan")) * 1000,
    }


def main(argv: Sequence[str] | None = None) -> Result:
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=1100, help="slow-header sockets (1100)")
    parser.add_argument("--seconds", type=float, default=30.0, help="attack length (30 s)")
    parser.add_argument("--unguarded", action="store_true", help="plain uvicorn: the before")
    parser.add_argument("--hard-limit", action="store_true", help="hard open-file limit 1,024")
    ns = parser.parse_args(argv)
    if ns.smoke:
        ns.sockets, ns.seconds = 60, 3.0
    raise_fd_limit(4 * ns.sockets + 256)  # this client's sockets, not the server's
    result = Result("slow_headers", machine())
    print(machine_lines(result.machine))
    env = {"TLC_UPSTREAMS": "http://127.0.0.1:9/v1", "TLC_LOG_LEVEL": "warning"}
    if ns.smoke:  # small enough to push past the cap and the timeout within 3 s
        env.update(TLC_HEADER_TIMEOUT_S="1", TLC_MAX_CONNECTIONS="40")
    env.update(kv.split("=", 1) for kv in ns.queue_env)
    code = _limited(UNGUARDED if ns.unguarded else GUARDED, ns.hard_limit)
    argv_ = [PYTHON, "-c", code, "serve", "--upstream", env["TLC_UPSTREAMS"]]
    with Workspace() as ws:
        server = ws.start(argv_, "/healthz", name="queue", env=env)
        data = asyncio.run(attack(server.url, server.port, ns.sockets, ns.seconds))
        data["server_peak_rss_mb"] = round(server.peak_rss_mb(), 1)
        data["server_alive_at_end"] = Path(f"/proc/{server.pid}").exists()
    data["server"] = "plain uvicorn" if ns.unguarded else "tlc serve"
    result.data = data
    rows = [
        ["server", data["server"]],
        [
            "slow-header sockets kept open (most at once)",
            f"{ns.sockets} ({data['most_open_at_once']})",
        ],
        ["attack", f"{ns.seconds:g} s, open files {NOFILE}{' (hard)' if ns.hard_limit else ''}"],
        [
            "what the attacker saw",
            ", ".join(f"{k} {v}" for k, v in sorted(data["attacker"].items())),
        ],
        ["/healthz probes answered 200", data["probes_ok"]],
        ["/healthz probes failed", data["probes_failed"] or 0],
        [
            "/healthz p50 / p99 / max",
            f"{data['p50_ms']:.1f} / {data['p99_ms']:.1f} / {data['max_ms']:.1f} ms",
        ],
    ]
    print(table(["", ""], rows))
    p99 = float(data["p99_ms"])
    met = not data["probes_failed"] and p99 <= 100
    result.goals = [
        Goal(
            f"/healthz under {ns.sockets} slow-header sockets",
            "every probe 200, p99 ≤ 100 ms",
            f"{data['probes_ok']} ok, {sum(data['probes_failed'].values())} failed, "
            f"p99 {p99:.1f} ms",
            met,
        )
    ]
    print("\n" + goal_rows(result.goals))
    save_json(ns.json, result)
    return result


if __name__ == "__main__":
    main()
