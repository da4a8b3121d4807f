"""The paths `bench.overhead` times one request along, and the LiteLLM proxy it compares.

    >>> measure = openai_stream(httpx.Client(base_url=url), MODEL)      # doctest: +SKIP
    >>> ttft_s, total_s, text = measure()                              # doctest: +SKIP

Each path is a `Measure`: a function that sends one request and returns its time to first
token, its total time and its text. `run_rounds` times every path once per round, in a
shuffled order each round, so load that comes and goes hits them alike.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.harness import PRACTICE_MODEL, ROOT, iter_sse
from bench.servers import PYTHON, ServerProcess, Workspace

__all__ = [
    "MODEL",
    "Measure",
    "PathRun",
    "litellm_auth",
    "native",
    "native_events",
    "openai_stream",
    "run_rounds",
    "start_litellm",
]

PROMPT = "Tell me about the White Rabbit"
MAX_TOKENS = 32
MODEL = PRACTICE_MODEL
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
LITELLM_KEY = "sk-bench"

Measure = Callable[[], tuple[float, float, str]]  #: () -> (ttft s, total s, text)


# ---------------------------------------------------------------------------- one request


def openai_stream(
    client: httpx.Client,
    model: str,
    headers: dict[str, str] | None = None,
    max_tokens: int = MAX_TOKENS,
) -> Measure:
    """A streaming chat completion; TTFT is the first chunk with content."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "stream": True,
    }

    def measure() -> tuple[float, float, str]:
        parts: list[str] = []
        first = None
        t0 = time.perf_counter()
        with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp:
            resp.raise_for_status()
            for _, data in iter_sse(resp.iter_lines()):
                if data == "[DONE]":
                    continue  # read on to the end of the body: the connection is reused
                for choice in json.loads(data).get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if first is None:
                            first = time.perf_counter()
                        parts.append(content)
        end = time.perf_counter()
        assert first is not None, "no content came back"
        return first - t0, end - t0, "".join(parts)

    return measure


def native(client: httpx.Client, max_tokens: int = MAX_TOKENS) -> Measure:
    """The queue's own API in one round trip (`Accept: text/event-stream` on the submit, as
    `QueueClient` does); TTFT is the first delta."""
    body = {"prompt": PROMPT, "model": MODEL, "max_tokens": max_tokens, "user": "bench"}
    headers = {"Accept": "text/event-stream"}

    def measure() -> tuple[float, float, str]:
        t0 = time.perf_counter()
        with client.stream("POST", "/api/requests", json=body, headers=headers) as resp:
            return native_events(resp, t0)

    return measure


def native_events(resp: httpx.Response, t0: float) -> tuple[float, float, str]:
    """Read a native event stream to its end: (TTFT, total, text), timed from `t0`."""
    resp.raise_for_status()
    parts: list[str] = []
    first = None
    for name, data in iter_sse(resp.iter_lines()):
        if name == "delta":
            if first is None:
                first = time.perf_counter()
            parts.append(json.loads(data).get("content") or "")
        elif name in ("error", "cancelled"):
            raise RuntimeError(f"request ended with {name}: {data}")
    end = time.perf_counter()
    assert first is not None, "no delta came back"
    return first - t0, end - t0, "".join(parts)


# ---------------------------------------------------------------------------- LiteLLM


def litellm_executable(log: Path) -> tuple[Path | None, str]:
    """LiteLLM's proxy from its own venv, made on first use; (None, why) if it can't be had."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe, "installed"
    print(f"overhead: installing litellm[proxy] into {LITELLM_VENV} (first run only) …")
    with log.open("ab") as out:
        steps = [
            [PYTHON, "-m", "venv", str(LITELLM_VENV)],
            [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"],
        ]
        for step in steps:
            try:
                code = subprocess.run(step, stdout=out, stderr=out, timeout=1200).returncode
            except (OSError, subprocess.TimeoutExpired) as exc:
                return None, f"{' '.join(step[:3])} failed: {exc}"
            if code != 0:
                tail = log.read_text("utf-8", "replace").strip().splitlines()[-1:]
                return None, f"{' '.join(step[:3])} exited {code}: {' '.join(tail)}"
    return (exe, "installed now") if exe.exists() else (None, "no litellm after install")


def start_litellm(ws: Workspace, upstream: str) -> tuple[ServerProcess | None, str]:
    exe, why = litellm_executable(ws.dir / "litellm-install.log")
    if exe is None:
        return None, why
    env = {
        "LITELLM_MASTER_KEY": LITELLM_KEY,  # the proxy refuses to start without one
        "OPENAI_API_KEY": "sk-unused",  # the practice model ignores it; the client wants one
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the cost map from the internet
    }
    argv = [str(exe), "--model", f"openai/{MODEL}", "--api_base", upstream, "--host", "127.0.0.1"]
    try:
        server = ws.start(argv, "/health/liveliness", name="litellm", env=env, timeout_s=180)
    except RuntimeError as exc:
        return None, f"litellm did not start: {str(exc).splitlines()[0]}"
    return server, why


# ---------------------------------------------------------------------------- the run


@dataclass
class PathRun:
    name: str
    measure: Measure
    server: ServerProcess | None  #: whose CPU time per request is reported
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    texts: set[str] = field(default_factory=set)


def run_rounds(paths: Sequence[PathRun], rounds: int, seed: int, record: bool) -> None:
    order = list(paths)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for path in order:
            ttft, total, text = path.measure()
            if record:
                path.ttft.append(ttft)
                path.total.append(total)
                path.texts.add(text)


def litellm_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {LITELLM_KEY}"}
