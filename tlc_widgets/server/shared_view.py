"""A request's status (`GET /api/requests/{id}`) rebuilt from its shared event log.

    >>> from tlc_widgets.sse import frame
    >>> log = [frame("queued", {"position": 2, "waiting": 3, "eta_s": 4.0}, 1)]
    >>> view = view_of("r1", {"user": "ann", "model": "m"}, log)
    >>> view["status"], view["position"], view["text"]
    ('queued', 2, '')
    >>> log += [frame("started", {"model": "m", "upstream": "http://box/v1"}, 2)]
    >>> log += [frame("delta", {"content": "Hi"}, 3), frame("cancelled", {"by": "client"}, 4)]
    >>> view = view_of("r1", {"user": "ann", "model": "m"}, log)
    >>> view["status"], view["text"], view["tokens"], view["outcome"]
    ('cancelled', 'Hi', 1, {'event': 'cancelled', 'by': 'client'})

With `--redis`, a replica asked about a request another replica holds reads that
request's log (the frames its clients get) and answers the same fields its own replica
would: status, the text so far, the last position while it waits, how it ended. What only
the holder knows is left out: its dispatch number (None), and timings before the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["TERMINAL", "events_of", "view_of"]

TERMINAL = frozenset({"done", "error", "cancelled"})
_NO_TIMINGS = {"waited_s": None, "ttft_s": None, "total_s": None, "tokens_per_s": None}


def events_of(frames: Iterable[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, data) of each SSE frame (`event:` and one `data:` line of JSON)."""
    for raw in frames:
        name, data = "", "{}"
        for line in raw.decode().split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if name:
            yield name, json.loads(data)


def view_of(request_id: str, who: dict[str, str], frames: Iterable[bytes]) -> dict[str, Any]:
    """The fields of a `RequestView`, from the request's frames in order."""
    status, model, upstream = "queued", who.get("model", ""), None
    text: list[str] = []
    reasoning: list[str] = []
    queued: dict[str, Any] = {}
    outcome: dict[str, Any] | None = None
    timings: dict[str, Any] = dict(_NO_TIMINGS)
    for name, data in events_of(frames):
        if name == "queued":
            queued = data
        elif name == "started":
            status, model, upstream = "running", data.get("model", model), data.get("upstream")
        elif name == "delta":
            text.append(data.get("content") or "")
            reasoning.append(data.get("reasoning") or "")
        elif name in TERMINAL:
            status, outcome = name, {"event": name, **data}
            timings = data.get("timings") or timings
    waiting = status == "queued"
    return {
        "id": request_id,
        "status": status,
        "user": who["user"],
        "model": model,
        "upstream": upstream,
        "dispatch_no": None,
        "position": queued.get("position") if waiting else None,
        "waiting": queued.get("waiting") if waiting else None,
        "eta_s": queued.get("eta_s") if waiting else None,
        "text": "".join(text),
        "reasoning": "".join(reasoning),
        "tokens": len(text),
        "timings": timings,
        "outcome": outcome,
    }
