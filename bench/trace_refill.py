"""The queue server, unchanged, with a note of when each upstream stream starts and ends.

    $ python -m bench.saturation --queue-cmd "python -m bench.trace_refill"
    $ TRACE_REFILL=/tmp/refill.log python -m bench.trace_refill serve --practice

A measuring aid for `bench.saturation`: the slot log (`bench/slotlog.py`) says when the
upstream freed a slot and when the next request arrived; this says what the queue server did
in between. Each line of `$TRACE_REFILL` is `monotonic-time event`: `return` when
`Upstream.stream` returned (the reply read to its end), `fill` when the dispatcher looked for
the next request, `send` when the next `Upstream.stream` began. Nothing else changes.
`breakdown` pairs each freed slot with the first of each later step, so with several slots
at once it is an estimate: read its medians, not single refills.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tlc_widgets import cli
from tlc_widgets.server import dispatcher, upstream

__all__ = ["main"]


def main() -> None:
    out = open(os.environ.get("TRACE_REFILL", "refill-trace.log"), "a", buffering=1)
    stream, fill = upstream.Upstream.stream, dispatcher.Dispatcher.fill

    async def traced_stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        out.write(f"{time.monotonic()} send\n")
        try:
            return await stream(self, *args, **kwargs)
        finally:
            out.write(f"{time.monotonic()} return\n")

    def traced_fill(self: Any) -> None:
        out.write(f"{time.monotonic()} fill\n")
        fill(self)

    upstream.Upstream.stream = traced_stream  # type: ignore[method-assign]
    dispatcher.Dispatcher.fill = traced_fill  # type: ignore[method-assign]
    cli.main()


if __name__ == "__main__":
    main()


def breakdown(events: list[list[Any]], trace: list[tuple[float, str]]) -> dict[str, list[float]]:
    """Each refill split into steps: slot freed (`end`) → the queue server's stream returned →
    it looked for the next request (`fill`) → began the next stream (`send`) → uvicorn handed
    the upstream the request (`http`) → its body was read (`arrive`) → a slot started.

    >>> events = [[1.0, "end", ""], [1.004, "http", ""], [1.005, "arrive", "x"],
    ...           [1.006, "start", ""]]
    >>> trace = [(1.001, "return"), (1.002, "fill"), (1.003, "send")]
    >>> steps = breakdown(events, trace)
    >>> list(steps)[:3], round(steps["send→http"][0] * 1000)
    (['end→return', 'return→fill', 'fill→send'], 1)
    """
    kinds: dict[str, list[float]] = {}
    for t, kind, *_ in events:
        kinds.setdefault(kind, []).append(float(t))
    for t, kind in trace:
        kinds.setdefault(kind, []).append(t)
    for times in kinds.values():
        times.sort()
    steps = ["return", "fill", "send", "http", "arrive", "start"]
    out: dict[str, list[float]] = {}
    for t_end in kinds.get("end", []):
        chain, t = [t_end], t_end
        for step in steps:
            later = [x for x in kinds.get(step, []) if x >= t]
            if not later:
                break
            t = later[0]
            chain.append(t)
        if len(chain) != len(steps) + 1:
            continue
        names = ["end", *steps]
        for i in range(len(steps)):
            out.setdefault(f"{names[i]}→{names[i + 1]}", []).append(chain[i + 1] - chain[i])
    return out
