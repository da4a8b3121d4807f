"""`tlc models`: list, load, unload and warm up models on the queue server's upstreams.

    $ tlc models                         # what the upstreams offer, loaded or not
    $ tlc models load qwen3-8b --ttl 7200   # load before class; waits, showing progress
    $ tlc models unload qwen3-8b

It talks to the queue server at `TLC_SERVER_URL` (admin key in `TLC_API_KEY` when the server
has keys), which loads through LM Studio once for everyone (`server/model_loads.py`).

    >>> bar(0.45)
    '[#########-----------]  45 %'
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import httpx

__all__ = ["add_parser", "bar", "run"]

DEFAULT_URL = "http://127.0.0.1:8000"


def add_parser(sub: Any) -> None:
    """Add `tlc models` to the `tlc` command's subparsers."""
    p = sub.add_parser("models", help="list, load or unload models on the upstreams")
    p.add_argument("action", nargs="?", choices=["list", "load", "unload"], default="list")
    p.add_argument("model", nargs="?", help="the model's key (as /api/models lists it)")
    p.add_argument("--ttl", type=int, help="LM Studio's idle time-to-live for this load, seconds")
    p.add_argument("--server", default=None, help=f"queue server (default {DEFAULT_URL})")
    p.add_argument("--timeout", type=float, default=600, help="longest wait for a load, s")
    p.set_defaults(run=run)


def bar(fraction: float, width: int = 20) -> str:
    """A text progress bar for a terminal."""
    done = round(fraction * width)
    return f"[{'#' * done}{'-' * (width - done)}] {round(fraction * 100):3d} %"


def run(ns: argparse.Namespace) -> None:
    url = (ns.server or os.environ.get("TLC_SERVER_URL") or DEFAULT_URL).rstrip("/")
    key = os.environ.get("TLC_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        try:
            if ns.action == "list":
                _list(client)
            elif ns.model is None:
                sys.exit(f"tlc models {ns.action}: name the model (see `tlc models`).")
            elif ns.action == "load":
                _load(client, ns.model, ns.ttl, ns.timeout)
            else:
                _answer(client.post("/api/admin/models/unload", json={"model": ns.model}))
                print(f"{ns.model}: unloaded")
        except httpx.TransportError:
            sys.exit(f"tlc models: no queue server answers at {url} (is `tlc serve` running?)")


def _answer(response: httpx.Response) -> dict[str, Any]:
    if response.is_error:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        sys.exit(f"tlc models: {message}")
    body: dict[str, Any] = response.json()
    return body


def _list(client: httpx.Client) -> None:
    for row in _answer(client.get("/api/models"))["models"]:
        if row["loaded"]:
            state = f"loaded, {row['slots']} slots"
        elif row.get("loading") is not None:
            state = "loading " + bar(row["loading"])
        else:
            seen = row.get("load_time_s")
            state = "loads on first use" + (f", about {seen:.0f} s" if seen else "")
        print(f"{row['id']:<40} {state}")


def _load(client: httpx.Client, model: str, ttl: int | None, timeout: float) -> None:
    state = _answer(client.post("/api/admin/models/load", json={"model": model, "ttl": ttl}))
    deadline = time.monotonic() + timeout
    while not state["loaded"]:
        if state["loading"] is None and state["failure"]:
            sys.exit(f"tlc models: {model} did not load: {state['failure']}")
        if time.monotonic() > deadline:
            sys.exit(f"tlc models: {model} is still loading after {timeout:.0f} s")
        print(f"\r{model}: loading {bar(state['loading'] or 0.0)}", end="", flush=True)
        time.sleep(0.25)  # a terminal's progress bar: four looks a second is plenty
        state = _answer(client.get(f"/api/admin/models/{model}"))
    print(f"\r{model}: loaded{' ' * 40}")
