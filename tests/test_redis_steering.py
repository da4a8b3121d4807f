"""A teacher steers the whole class, whichever replica answers: with `--redis`, the class's
pause and message, its prompt, its budgets, a session, and an admin's drain hold on every
replica — and on one that starts later.

Real parts: a redis-server, the practice model, and real `tlc serve --redis` processes
(no keys: every caller is the trusted local teacher, and the class rules govern everyone).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import practice_server, read_events, wait_until
from tests.redis_fixture import RedisServer, redis_server  # noqa: F401
from tests.test_redis_replicas import replica
from tlc_widgets.server.store.redis_queue import RedisQueue, connect

pytestmark = pytest.mark.anyio

ASK = {"prompt": "What is a queue?", "user": "ann", "max_tokens": 4}


@pytest.mark.timeout(180)
async def test_the_teachers_changes_hold_on_every_replica(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = uuid.uuid4().hex
    with practice_server() as practice, ExitStack() as stack:
        url = practice.url + "/v1"

        def start(i: int) -> str:
            log = tmp_path / f"r{i}.log"
            return stack.enter_context(replica(url, redis_server, name, log))[1]

        urls = [start(0), start(1)]
        async with AsyncExitStack() as clients:

            async def client(u: str) -> httpx.AsyncClient:
                return await clients.enter_async_context(httpx.AsyncClient(base_url=u, timeout=30))

            a, b = await client(urls[0]), await client(urls[1])

            async def on_b(check: Any) -> None:
                await wait_until(shows(b, "/api/class", check), "the change made on A, seen on B")

            # The exam pause, with its message: B refuses students with the teacher's words.
            await a.post("/api/class/pause", json={"message": "Quiz until 10:30"})
            await on_b(lambda s: s["mode"] == "paused")
            refused = await b.post("/api/requests", json=ASK)
            assert refused.status_code == 423
            assert refused.json()["error"]["code"] == "class_paused"
            assert "Quiz until 10:30" in refused.json()["error"]["message"]
            # A replica that starts later reads the class as it is.
            c = await client(start(2))
            assert (await c.get("/api/class")).json()["mode"] == "paused"
            assert (await c.post("/api/requests", json=ASK)).status_code == 423
            await b.post("/api/class/resume")
            await on_b(lambda s: s["mode"] == "open")
            assert (await a.get("/api/class")).json()["mode"] == "open"
            assert (await a.post("/api/requests", json=ASK)).status_code == 202

            # The class prompt, the budgets and a session, set on one, hold on the other.
            await b.put("/api/class/prompt", json={"text": "Answer in French.", "model": None})
            await a.put("/api/class/budget", json={"prompts": 7, "tokens": 0})
            await a.put("/api/class/budget/ann", json={"prompts": 2, "tokens": 0})
            await a.post("/api/class/session", json={"label": "exam"})
            await on_b(lambda s: (s["budget"]["session"] or {}).get("label") == "exam")
            state_b = (await b.get("/api/class")).json()
            state_a = (await a.get("/api/class")).json()
            assert state_a["prompts"] == state_b["prompts"] == {"*": "Answer in French."}
            assert state_b["budget"]["default"] == {"prompts": 7, "tokens": 0}
            assert state_b["budget"]["students"] == {"ann": {"prompts": 2, "tokens": 0}}
            assert state_b["budget"]["session"] == state_a["budget"]["session"]
            await b.delete("/api/class/session")
            ended = shows(a, "/api/class", lambda s: s["budget"]["session"] is None)
            await wait_until(ended, "the session ended on B, seen on A")

            # An admin's drain on one replica: every replica refuses new requests.
            await a.post("/api/admin/drain")

            async def b_drains() -> bool:
                answer = await b.post("/api/requests", json=ASK)
                return answer.status_code == 503 and answer.json()["error"]["code"] == "draining"

            await wait_until(b_drains, "B draining too")
            await b.post("/api/admin/resume")

            async def a_accepts() -> bool:
                return (await a.post("/api/requests", json=ASK)).status_code == 202

            await wait_until(a_accepts, "A open again after the resume on B")


@pytest.mark.timeout(180)
async def test_a_budget_counts_the_whole_class_across_replicas(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Two prompts a day: one through A and one through B spend them; a third is refused
    on either, and the teacher's view on each counts both."""
    name = uuid.uuid4().hex
    with practice_server() as practice, ExitStack() as stack:
        url = practice.url + "/v1"
        urls = [
            stack.enter_context(replica(url, redis_server, name, tmp_path / f"r{i}.log"))[1]
            for i in range(2)
        ]
        async with (
            httpx.AsyncClient(base_url=urls[0], timeout=30) as a,
            httpx.AsyncClient(base_url=urls[1], timeout=30) as b,
        ):
            await a.put("/api/class/budget", json={"prompts": 2, "tokens": 0})
            budget = shows(b, "/api/class", lambda s: s["budget"]["default"]["prompts"] == 2)
            await wait_until(budget, "the budget set on A, seen on B")
            ask = {"prompt": "hi", "user": "zed", "max_tokens": 4}
            assert (await a.post("/api/requests", json=ask)).status_code == 202
            assert (await b.post("/api/requests", json=ask)).status_code == 202
            for client in (a, b):
                both = shows(client, "/api/class/students", lambda s: _prompts(s, "zed") == 2)
                await wait_until(both, "both prompts counted on each")
            for client in (a, b):
                refused = await client.post("/api/requests", json=ask)
                assert refused.status_code == 429
                assert refused.json()["error"]["code"] == "budget_exhausted"
            other = {"prompt": "hi", "user": "amy", "max_tokens": 4}
            assert (await b.post("/api/requests", json=other)).status_code == 202


@pytest.mark.timeout(180)
async def test_the_per_user_waiting_cap_counts_the_whole_line(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Two waiting requests a student: one on A and one on B fill zed's; a third is
    refused on A, once A's positions have read the whole line."""
    name = uuid.uuid4().hex
    with practice_server() as practice, ExitStack() as stack:
        url, cap = practice.url + "/v1", {"TLC_MAX_PER_USER": "2"}
        urls = [
            stack.enter_context(
                replica(url, redis_server, name, tmp_path / f"r{i}.log", settings=cap)
            )[1]
            for i in range(2)
        ]
        async with (
            httpx.AsyncClient(base_url=urls[0], timeout=30) as a,
            httpx.AsyncClient(base_url=urls[1], timeout=30) as b,
        ):
            await a.post("/api/admin/pause")
            await wait_until(shows(b, "/api/admin/requests", lambda s: s["paused"]), "B paused too")
            ask = {"prompt": "hi", "user": "zed", "max_tokens": 4}
            on_a = (await a.post("/api/requests", json=ask)).json()["id"]
            assert (await b.post("/api/requests", json=ask)).status_code == 202

            async def a_sees_both() -> bool:
                return bool((await a.get(f"/api/requests/{on_a}")).json()["waiting"] == 2)

            await wait_until(a_sees_both, "A's positions reading the whole line")
            refused = await a.post("/api/requests", json=ask)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "too_many_requests"
            assert (await a.post("/api/requests", json={**ask, "user": "amy"})).status_code == 202


@pytest.mark.timeout(120)
async def test_a_request_that_waits_too_long_ends_and_leaves_the_shared_line(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The queue timeout fires from a timer, outside any task: the request still gets its
    one ending, `queue_timeout`, and leaves the line every replica shares."""
    name = uuid.uuid4().hex
    with practice_server() as practice, ExitStack() as stack:
        short = {"TLC_QUEUE_TIMEOUT_S": "1"}
        log = tmp_path / "r.log"
        url = stack.enter_context(
            replica(practice.url + "/v1", redis_server, name, log, settings=short)
        )[1]
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await client.post("/api/admin/pause")
            rid = (await client.post("/api/requests", json=ASK)).json()["id"]
            names = [n async for _, n, _ in read_events(client, rid)]
            codes = [d.get("code") async for _, n, d in read_events(client, rid) if n == "error"]
        line = RedisQueue(connect(redis_server.url), name)

        async def line_empty() -> bool:
            return await line.size() == 0

        await wait_until(line_empty, "the shared line without it")
        await line.client.aclose()
    assert [n for n in names if n in ("done", "error", "cancelled")] == ["error"]
    assert codes == ["queue_timeout"]


def shows(client: httpx.AsyncClient, path: str, test: Callable[[Any], Any]) -> Any:
    """A check for `wait_until`: whether `path`'s JSON on `client` passes `test` yet."""

    async def check() -> bool:
        return bool(test((await client.get(path)).json()))

    return check


def _prompts(students: dict[str, Any], user: str) -> int | None:
    return next((r["prompts"] for r in students["students"] if r["user"] == user), None)
