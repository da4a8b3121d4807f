"""A server's resident memory while clients press on it, for `bench.memory_bounds`.

    >>> status_of(b"HTTP/1.1 429 Too Many Requests\\r\\ncontent-type: application/json")
    429
    >>> last_event(b'id: 3\\nevent: delta\\ndata: {}\\n\\nid: 4\\nevent: done\\ndata: {}\\n\\n')
    'done'
    >>> error_code(b'...\\r\\n\\r\\n{"error":{"code":"too_many_streams","message":"..."}}')
    'too_many_streams'

`Rss` reads `VmRSS` from `/proc/<pid>/status` of the server's process (the launcher gives
the PID) and, while a scenario runs, samples it in a thread every 20 ms for the peak. The
clients speak HTTP/1.1 on raw loopback sockets with `Connection: close` (read to the end):
thousands of them cost this process little, so the server is what the figures measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "Rss",
    "big_replies",
    "error_code",
    "fds",
    "last_event",
    "one_off_users",
    "open_stream",
    "rss_mb",
    "run_many",
    "send",
    "status_of",
    "streamed",
    "subscribers",
]

MODEL = "fast"  #: the model `bench.fast_upstream` lists


def rss_mb(pid: int) -> float:
    """The process's resident memory now (`VmRSS`), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Rss:
    """`with Rss(pid) as rss: …` samples the RSS every `interval_s`; `rss.peak` is the
    highest sample, `rss.now()` one more reading."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> float:
        value = rss_mb(self.pid)
        self.peak = max(self.peak, value)
        return value

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.now()

    def __enter__(self) -> Rss:
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.now()

    def settled(self, seconds: float = 3.0) -> float:
        """The RSS once it has stopped falling: the smallest of readings over `seconds`."""
        readings = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            readings.append(rss_mb(self.pid))
            time.sleep(0.25)
        return min(readings)


# ---------------------------------------------------------------------------- the wire


def status_of(head: bytes) -> int:
    """The status code of an HTTP response's first line (0 if there is none)."""
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(match.group(1)) if match else 0


def last_event(body: bytes) -> str | None:
    """The name of the last server-sent event in a stream (the terminal one, if it ended),
    and an error's code."""
    names = re.findall(rb"\nevent: ([a-z_]+)\n", body[-4096:])
    if not names:
        return None
    name = names[-1].decode()
    return f"{name} {error_code(body[-4096:])}" if name == "error" else name


def error_code(response: bytes) -> str | None:
    """The `error.code` of a JSON error answer, as this server writes them."""
    match = re.search(rb'"code":\s*"([a-z_]+)"', response)
    return match.group(1).decode() if match else None


def _request(method: str, path: str, body: Any = None, sse: bool = False) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    head += ["Accept: text/event-stream"] if sse else []
    head += ["Content-Type: application/json", f"Content-Length: {len(data)}"] if data else []
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


async def send(port: int, method: str, path: str, body: Any = None, sse: bool = False) -> bytes:
    """One request on a connection of its own; the whole response, once the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_request(method, path, body, sse))
        return await reader.read(-1)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def streamed(port: int, user: str, max_tokens: int) -> str | None:
    """Submit one request as `user` and read its event stream to the end: its last event
    (`done`, `error`, `cancelled`), or the error code if it was refused."""
    body = {"prompt": "Hi", "model": MODEL, "max_tokens": max_tokens, "user": user}
    response = await send(port, "POST", "/api/requests", body, sse=True)
    return last_event(response) if status_of(response) == 200 else error_code(response)


async def open_stream(port: int, path: str) -> tuple[str, asyncio.StreamWriter | None]:
    """Open an event stream: how it was answered (`200`, or the status and error code of a
    refusal) and, if accepted, its connection, left open for the caller to close."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_request("GET", path))
        head = await reader.readuntil(b"\r\n\r\n")
    except (OSError, asyncio.IncompleteReadError) as exc:
        return type(exc).__name__, None
    if status_of(head) == 200:
        return "200", writer
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        answer = f"{status_of(head)} {error_code(await reader.read(-1))}"
    writer.close()
    return answer, None


async def run_many(
    jobs: Iterable[Callable[[], Awaitable[str | None]]], concurrency: int
) -> Counter[str]:
    """Run `jobs` with at most `concurrency` at once; count what each returned."""
    outcomes: Counter[str] = Counter()
    queue = iter(jobs)

    async def worker() -> None:
        for job in queue:  # one shared iterator: each job is taken once
            outcomes[str(await job())] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


# ---------------------------------------------------------------------------- scenarios


def fds(pid: int) -> int:
    """Open file descriptors of a process (sockets included)."""
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def subscribers(port: int, pid: int, n: int, rounds: int = 3) -> dict[str, Any]:
    """First `n` plain `/healthz` calls at once (what `n` connections at once cost the
    server, whatever they ask); then, `rounds` times, one request held waiting (the queue
    paused) and `n` event streams on it at once, the accepted ones held until it ends."""
    rss = Rss(pid)
    before = rss.settled()
    await asyncio.gather(*(send(port, "GET", "/healthz") for _ in range(n)))
    after_control = rss.settled()
    answered: Counter[str] = Counter()
    ends, open_fds, after_rounds = Counter[str](), 0, []
    with rss:
        for _ in range(rounds):
            await send(port, "POST", "/api/admin/pause")
            body = {"prompt": "Hi", "model": MODEL}
            submitted = await send(port, "POST", "/api/requests", body)
            request_id = json.loads(submitted.split(b"\r\n\r\n", 1)[1])["id"]
            path = f"/api/requests/{request_id}/events"
            answers = await asyncio.gather(*(open_stream(port, path) for _ in range(n)))
            await asyncio.sleep(1.0)  # every stream answered; the accepted ones stay open
            open_fds = max(open_fds, fds(pid))
            answered.update(answer for answer, _ in answers)
            await send(port, "POST", "/api/admin/resume")
            ends[str(await _wait_ended(port, request_id))] += 1
            for _, writer in answers:
                if writer is not None:
                    writer.close()
            after_rounds.append(round(rss.settled(1.0), 1))
    return {
        "subscribers": n,
        "rounds": rounds,
        "answered": {k: v // rounds for k, v in answered.items()},  # per round
        "server_fds_at_peak": open_fds,
        "requests_ended": dict(ends),
        "rss_mb": _mb(before, rss.peak, rss.settled()),
        "rss_after_healthz_burst_mb": round(after_control, 1),
        "rss_after_each_round_mb": after_rounds,
    }


async def _wait_ended(port: int, request_id: str, timeout_s: float = 30.0) -> str | None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        answer = await send(port, "GET", f"/api/requests/{request_id}")
        status = json.loads(answer.split(b"\r\n\r\n", 1)[1]).get("status")
        if status in ("done", "error", "cancelled"):
            return str(status)
        await asyncio.sleep(0.1)
    return None


async def big_replies(port: int, pid: int, n: int, tokens: int) -> dict[str, Any]:
    """`n` requests at once, each from a user of its own (one waiting request each), each
    read to its end; 4 run at a time."""
    rss = Rss(pid)
    before = rss.settled()
    with rss:
        jobs = [lambda i=i: streamed(port, f"big{i}", tokens) for i in range(n)]
        outcomes = await run_many(jobs, concurrency=n)
    after = rss.settled()
    return {"requests": n, "ended": dict(outcomes), "rss_mb": _mb(before, rss.peak, after)}


async def one_off_users(port: int, pid: int, n: int, idle_s: float) -> dict[str, Any]:
    """A warm-up of 200 users, the idle period, the baseline; then `n` users never seen
    before, 32 at a time; then the idle period again and the RSS after it."""
    rss = Rss(pid)
    warm = await run_many([lambda i=i: streamed(port, f"warm{i}", 8) for i in range(200)], 32)
    await asyncio.sleep(idle_s + 1)
    baseline = rss.settled()
    started = time.monotonic()
    with rss:
        jobs = [lambda i=i: streamed(port, f"user{i}", 8) for i in range(n)]
        outcomes = await run_many(jobs, concurrency=32)
    took = time.monotonic() - started
    right_after = rss.now()
    await asyncio.sleep(idle_s + 1)
    after = rss.settled()
    return {
        "users": n,
        "warm_up": dict(warm),
        "ended": dict(outcomes),
        "seconds": round(took, 1),
        "idle_s": idle_s,
        "rss_mb": _mb(baseline, rss.peak, after) | {"end": right_after},
    }


def _mb(before: float, peak: float, after: float) -> dict[str, float]:
    return {"before": round(before, 1), "peak": round(peak, 1), "after": round(after, 1)}
