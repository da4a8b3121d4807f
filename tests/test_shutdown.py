"""SIGTERM with requests in flight: every one ends with one terminal event, history keeps all.

A real `tlc serve --practice` process, a slow practice model (so replies are still running
when the signal comes), 50 streaming clients from 50 users, then SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from tlc_widgets.protocol import TERMINAL
from tlc_widgets.serving import free_port
from tlc_widgets.sse import aiter_events

pytestmark = pytest.mark.anyio

CLIENTS = 50


async def _follow(client: httpx.AsyncClient, user: str, ends: dict[str, list[str]]) -> None:
    """One student's request, followed to its end; `ends[user]` gets every terminal event."""
    body = {"prompt": "Tell me a long story.", "max_tokens": 400, "user": user}
    headers = {"Accept": "text/event-stream"}
    async with client.stream("POST", "/api/requests", json=body, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        ends[user] = []  # accepted: the answer's headers come once the queue took it
        async for event in aiter_events(r):
            if event.event in TERMINAL:
                ends[user].append(event.data)


async def test_sigterm_ends_every_request_once_and_keeps_every_row(tmp_path: Path) -> None:
    port = free_port()
    history = tmp_path / "history.sqlite3"
    env = {
        **os.environ,
        "TLC_HISTORY_PATH": str(history),
        "TLC_SHUTDOWN_GRACE_S": "0.5",
        "TLC_PRACTICE_TOKENS_PER_SECOND": "10",  # replies outlive the grace period
        "TLC_MAX_PER_USER": "5",
    }
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any await matters
        [sys.executable, "-m", "tlc_widgets.cli", "serve", "--practice", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    ends: dict[str, list[str]] = {}
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for _ in range(300):  # until it answers (bounded: ~30 s)
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.1)
            async with anyio.create_task_group() as tg:
                for n in range(CLIENTS):
                    tg.start_soon(_follow, client, f"student{n:02}", ends)

                async def all_accepted() -> bool:
                    return (
                        len(ends) == CLIENTS
                        and (await client.get("/api/queue")).json()["running"] > 0
                    )

                while not await all_accepted():  # noqa: ASYNC110 - state of another process
                    await anyio.sleep(0.05)
                server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()

    # uvicorn re-raises the signal once it has shut down: the exit status says SIGTERM.
    assert server.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr, stderr
    assert sorted(len(e) for e in ends.values()) == [1] * CLIENTS  # exactly one ending each
    stopping = [e[0] for e in ends.values() if '"by":"shutdown"' in e[0]]
    assert stopping, "some requests were still waiting or running at SIGTERM"
    assert all("queue server" in e for e in stopping)  # a sentence, not just a code
    with sqlite3.connect(history) as db:
        rows = db.execute("SELECT status, outcome FROM requests").fetchall()
    assert len(rows) == CLIENTS
    assert {status for status, _ in rows} <= {"done", "cancelled"}
    assert sum(outcome == "shutdown" for _, outcome in rows) == len(stopping)
