"""The practice model, plus a log of when each of its slots was taken and freed.

    $ python -m bench.slotlog --port 1234 --tokens-per-second 100 --parallel 4
    $ curl localhost:1234/bench/slot-log     # {"events": [[t, "arrive"|"start"|"end", tag], …]}

The upstream is the one place that knows when a slot really sat idle: the gap between one
answer's end and the next one's start there is what a queue in front of it costs the model.
Times are `time.monotonic()`, which on Linux is one clock for every process of the machine,
so a client can put them beside its own. `tag` is the last user message of the request
("arrive" only), so a client can tell which of its requests reached the upstream when.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tlc_widgets.practice import PracticeSettings, create_app
from tlc_widgets.practice.slots import Stats

__all__ = [
    "RecordingStats",
    "busy_fraction",
    "create_logged_app",
    "main",
    "noting_arrivals",
    "refills",
]

#: (monotonic time, "http" | "arrive" | "start" | "end", tag): "http" when uvicorn hands the
#: request to the app, "arrive" once its body is read
Event = tuple[float, str, str]


class RecordingStats(Stats):
    """The practice server's slot counters, also noting the time of every start and end."""

    events: list[Event]

    def started(self, model: str) -> None:
        super().started(model)
        self.events.append((time.monotonic(), "start", ""))

    def ended(self, model: str, by_server: bool) -> None:
        super().ended(model, by_server)
        self.events.append((time.monotonic(), "end", ""))


def create_logged_app(settings: PracticeSettings) -> FastAPI:
    app = create_app(settings)
    server = app.state.practice
    stats = RecordingStats(total=server.slots.stats.total, per_model=server.slots.stats.per_model)
    stats.events = []
    server.slots.stats = stats
    chat = server.chat

    async def logged_chat(request: Request) -> Response:
        # starlette caches the body, so the practice server can read it again
        try:
            messages = json.loads(await request.body()).get("messages") or [{}]
            tag = str(messages[-1].get("content", ""))
        except (ValueError, AttributeError):
            tag = ""
        stats.events.append((time.monotonic(), "arrive", tag))
        return await chat(request)  # type: ignore[no-any-return]

    server.chat = logged_chat  # the route looks `server.chat` up at every request

    @app.get("/bench/slot-log")
    async def slot_log() -> dict[str, Any]:
        return {"events": stats.events}

    @app.post("/bench/slot-log/reset")
    async def slot_log_reset() -> JSONResponse:
        stats.events = []
        return JSONResponse({"events": []})

    return app


def noting_arrivals(app: FastAPI) -> ASGIApp:
    """`app`, noting an "http" event when uvicorn hands it a chat request (headers parsed,
    before routing and before the body is read). Plain ASGI: nothing is buffered."""
    stats: RecordingStats = app.state.practice.slots.stats

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            stats.events.append((time.monotonic(), "http", ""))
        await app(scope, receive, send)

    return asgi


# ---------------------------------------------------------------------------- analysis


def busy_fraction(events: Sequence[Sequence[Any]], slots: int, t0: float, t1: float) -> float:
    """Share of `slots` × [t0, t1] during which slots were generating (from the log)."""
    if t1 <= t0:
        return float("nan")
    changes = sorted(
        (float(t), +1 if kind == "start" else -1)
        for t, kind, *_ in events
        if kind in ("start", "end")
    )
    active, busy, last = 0, 0.0, t0
    for t, step in changes:
        if t > t0:
            busy += active * (min(t, t1) - last)
            last = min(t, t1)
        if t >= t1:
            break
        active += step
    busy += active * (t1 - last)
    return busy / (slots * (t1 - t0))


def refills(
    events: Sequence[Sequence[Any]], t0: float, t1: float
) -> list[tuple[float, float, float]]:
    """(freed, arrived, started) for every slot freed in [t0, t1] and taken again by t1.

    Ends and starts are paired first-freed, first-refilled, which is how a slot pool behaves
    however the upstream numbers its slots; the k-th request to arrive is the k-th to start
    (the upstream's slots are FIFO). `started - freed` is the idle gap; `arrived - freed` is
    the part before the next request reached the upstream (the queue's and HTTP's share),
    `started - arrived` the upstream's own handling of the request.
    """
    starts = sorted(float(e[0]) for e in events if e[1] == "start")
    ends = sorted(float(e[0]) for e in events if e[1] == "end")
    arrivals = sorted(float(e[0]) for e in events if e[1] == "arrive")
    out: list[tuple[float, float, float]] = []
    free: list[float] = []  # times slots were freed, oldest first, not yet refilled
    i = j = 0
    while i < len(starts):
        if j < len(ends) and ends[j] <= starts[i]:
            free.append(ends[j])
            j += 1
            continue
        t, arrived = starts[i], arrivals[i] if i < len(arrivals) else starts[i]
        i += 1
        if free:  # otherwise one of the slots that stood free from the beginning is taken
            freed = free.pop(0)
            if t0 <= freed and t <= t1:
                out.append((freed, arrived, t))
    return out


# ---------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1234)
    parser.add_argument("--tokens-per-second", type=float, default=0)
    parser.add_argument("--first-token-latency", type=float, default=0)
    parser.add_argument("--parallel", type=int, default=4)
    ns = parser.parse_args(argv)
    settings = PracticeSettings(
        _env_file=None,
        host=ns.host,
        port=ns.port,
        tokens_per_second=ns.tokens_per_second,
        first_token_latency_s=ns.first_token_latency,
        parallel=ns.parallel,
    )
    app = noting_arrivals(create_logged_app(settings))
    uvicorn.run(app, host=ns.host, port=ns.port, log_level="warning")


if __name__ == "__main__":
    main()
