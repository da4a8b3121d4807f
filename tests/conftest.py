"""Shared fixtures: real servers on loopback ports, spoken to over HTTP.

Each server runs in a thread of its own (`BackgroundServer`), so the test's event loop is
only a client, exactly like a notebook kernel talking to a shared queue server.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tlc_widgets.config import Settings

# Servers the tests start as subprocesses (ensure_server, kill -9 tests) inherit this:
# a test run must never write into the user's real history file.
os.environ.setdefault("TLC_HISTORY_PATH", ":memory:")
# … nor note the servers it starts as the user's own (`tlc lab` would reuse them).
os.environ.setdefault("TLC_RUNTIME_DIR", tempfile.mkdtemp(prefix="tlc-test-runtime-"))
from tlc_widgets.launch import BackgroundServer
from tlc_widgets.practice import PracticeSettings
from tlc_widgets.practice import create_app as create_practice_app
from tlc_widgets.server import create_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def practice_server(**overrides: Any) -> Iterator[BackgroundServer]:
    """The practice model; by default with no artificial delay (speed is not under test)."""
    overrides.setdefault("tokens_per_second", 0)
    overrides.setdefault("first_token_latency_s", 0)
    settings = PracticeSettings(_env_file=None, **overrides)  # type: ignore[call-arg]
    # A short graceful shutdown: a stalled practice stream must not hold up stop().
    app = create_practice_app(settings)
    with BackgroundServer(app, timeout_graceful_shutdown=1) as server:
        yield server


@contextmanager
def queue_server(*upstreams: str, **overrides: Any) -> Iterator[BackgroundServer]:
    """The queue server in front of `upstreams` (base URLs ending in /v1)."""
    overrides.setdefault("position_interval_s", 0.05)
    # Tests never write the user's real history file; a test that needs one passes a path.
    overrides.setdefault("history_path", ":memory:")
    settings = Settings(_env_file=None, upstreams=list(upstreams), **overrides)  # type: ignore[call-arg]
    with BackgroundServer(create_app(settings)) as server:
        yield server


@pytest.fixture
def practice() -> Iterator[BackgroundServer]:
    with practice_server() as server:
        yield server


@pytest.fixture
def queue(practice: BackgroundServer) -> Iterator[BackgroundServer]:
    with queue_server(practice.url + "/v1") as server:
        yield server


async def read_events(
    client: httpx.AsyncClient, request_id: str, last_event_id: int | None = None
) -> AsyncIterator[tuple[int, str, dict[str, Any]]]:
    """(id, event name, data) for each SSE event of a request, until the stream ends."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    async with client.stream("GET", f"/api/requests/{request_id}/events", headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        fields: dict[str, str] = {}
        async for line in r.aiter_lines():
            if line == "":
                if "event" in fields:
                    yield int(fields["id"]), fields["event"], json.loads(fields["data"])
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = value.removeprefix(" ")


async def collect(
    client: httpx.AsyncClient, request_id: str
) -> list[tuple[int, str, dict[str, Any]]]:
    return [event async for event in read_events(client, request_id)]


async def wait_until(check: Any, what: str, tries: int = 2000) -> Any:
    """Poll an async `check()` until it returns something truthy (bounded: ~20 s at most).

    For state that lives in another process (a server's counters); not a sleep to make a
    test pass: the loop ends the moment the state is there.
    """
    import anyio

    for _ in range(tries):
        result = await check()
        if result:
            return result
        await anyio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def hold_slot(
    queue: httpx.AsyncClient, practice_url: str, user: str = "holder", **body: Any
) -> str:
    """Submit a request that takes a slot and keeps it (the practice model's stall fault),
    so everything submitted after it waits. Cancel it to let the queue move."""
    async with httpx.AsyncClient(base_url=practice_url) as practice:
        await practice.put("/practice/faults", json={"stall_after_tokens": 1})
        r = await queue.post("/api/requests", json={"prompt": "hold", "user": user, **body})
        assert r.status_code == 202, r.text
        request_id: str = r.json()["id"]

        async def holding() -> bool:
            status = (await queue.get(f"/api/requests/{request_id}")).json()
            return bool(status["tokens"] >= 1)

        await wait_until(holding, "the holder to start")
        # A practice request keeps the faults it arrived with: later ones run normally.
        await practice.put("/practice/faults", json={"stall_after_tokens": None})
    return request_id


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium for the browser tests; skipped without it, unless
    TLC_REQUIRE_BROWSER=1 (CI), which fails instead."""
    from tests.browser_util import find_chromium

    found = find_chromium()
    if found is None:
        if os.environ.get("TLC_REQUIRE_BROWSER") == "1":
            pytest.fail(
                "TLC_REQUIRE_BROWSER=1 but no Chromium was found (apt-get install chromium)"
            )
        pytest.skip(
            "no Chromium found (apt-get install chromium); set TLC_REQUIRE_BROWSER=1 to fail"
        )
    return found
