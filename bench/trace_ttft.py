"""The queue server, unchanged, with a note of where each request's first token spends its
time: a measuring aid for `bench.overhead`.

    $ TRACE_TTFT=ttft.jsonl python -m bench.overhead --no-litellm \\
          --queue-cmd "python -m bench.trace_ttft"
    $ python -m bench.trace_ttft summary ttft.jsonl

Each line of `$TRACE_TTFT` is one request (`POST /v1/chat/completions` or `/api/requests`):
milliseconds from the moment the app was called (`asgi`) to `submit0` (the route called
`QueueService.submit`), `submit1` (it returned), `up_call` (`Upstream.stream` began),
`up_first` (the first event was read from the upstream), `write0` (the first write holding a
token began) and `first` (that write returned). Nothing else changes.

    >>> rows = [{"path": "/api/requests", "submit0": 1.0, "first": 5.0}] * 3
    >>> summary(rows, skip=1)["/api/requests"]["first"]
    5.0
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

__all__ = ["STEPS", "main", "summary"]

STEPS = ("submit0", "submit1", "up_call", "up_first", "write0", "first")
PATHS = ("/v1/chat/completions", "/api/requests")


def summary(rows: Iterable[dict[str, Any]], skip: int = 15) -> dict[str, dict[str, float]]:
    """Median ms of each step per path, leaving out each path's first `skip` (warm-up)."""
    by_path: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_path.setdefault(row["path"], []).append(row)
    return {
        path: {
            step: round(statistics.median(r[step] for r in kept if step in r), 3)
            for step in STEPS
            if any(step in r for r in kept)
        }
        for path, runs in by_path.items()
        if (kept := runs[skip:])
    }


def main() -> None:
    from tlc_widgets import cli, sse
    from tlc_widgets import server as srv
    from tlc_widgets.server import service, upstream

    out = open(os.environ.get("TRACE_TTFT", "ttft-trace.jsonl"), "a", buffering=1)
    now: dict[str, float] = {}

    def mark(step: str) -> None:
        now.setdefault(step, time.perf_counter())

    create_app = srv.create_app

    def traced_app(settings: Any) -> Any:
        app = create_app(settings)

        async def traced(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] not in PATHS:
                await app(scope, receive, send)
                return
            now.clear()
            mark("asgi")

            async def send_marked(message: Any) -> None:
                body = message.get("body", b"") if message["type"] == "http.response.body" else b""
                if b"content" not in body or "first" in now:
                    await send(message)
                    return
                mark("write0")
                await send(message)
                mark("first")
                t0 = now["asgi"]
                row = {k: round((t - t0) * 1000, 3) for k, t in now.items() if k != "asgi"}
                out.write(json.dumps({"path": scope["path"], **row}) + "\n")

            await app(scope, receive, send_marked)

        return traced

    submit, stream, aiter_events = (
        service.QueueService.submit,
        upstream.Upstream.stream,
        sse.aiter_events,
    )

    async def traced_submit(self: Any, *args: Any, **kwargs: Any) -> Any:
        mark("submit0")
        try:
            return await submit(self, *args, **kwargs)
        finally:
            mark("submit1")

    async def traced_stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        mark("up_call")
        return await stream(self, *args, **kwargs)

    async def traced_events(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for event in aiter_events(*args, **kwargs):
            mark("up_first")
            yield event

    srv.create_app = traced_app  # type: ignore[assignment]
    service.QueueService.submit = traced_submit  # type: ignore[method-assign]
    upstream.Upstream.stream = traced_stream  # type: ignore[method-assign]
    upstream.aiter_events = traced_events  # type: ignore[attr-defined,assignment]
    cli.main()


if __name__ == "__main__":
    if sys.argv[1:2] == ["summary"]:
        with open(sys.argv[2], encoding="utf-8") as lines:
            for path, steps in summary(json.loads(line) for line in lines).items():
                print(path, " · ".join(f"{k} {v} ms" for k, v in steps.items()))
    else:
        main()
