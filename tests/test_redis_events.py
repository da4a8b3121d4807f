"""`--redis`: each request's events on a Redis stream, read and resumed on any replica.

Real parts: a redis-server (the fixture), the practice model, queue servers in threads of
their own (and one real `tlc serve` process for the kill -9 case).
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import collect, practice_server, queue_server, read_events, wait_until
from tests.redis_fixture import RedisServer, redis_server  # noqa: F401
from tests.test_redis_replicas import replica

pytestmark = pytest.mark.anyio

TERMINAL = {"done", "error", "cancelled"}


async def test_any_replica_sends_a_requests_events_and_resumes_them(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    settings: dict[str, Any] = {"redis_url": redis_server.url, "redis_name": uuid.uuid4().hex}
    with practice_server(tokens_per_second=200) as practice:
        upstream = practice.url + "/v1"
        with queue_server(upstream, **settings) as a, queue_server(upstream, **settings) as b:
            async with (
                httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
                httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
            ):
                body = {"prompt": "a story", "user": "ann", "max_tokens": 30}
                request_id = (await on_a.post("/api/requests", json=body)).json()["id"]
                head = []  # read on A up to the third delta, then the client "moves" to B
                async for event in read_events(on_a, request_id):
                    head.append(event)
                    if sum(1 for _, name, _ in head if name == "delta") == 3:
                        break
                tail = [e async for e in read_events(on_b, request_id, head[-1][0])]
                whole_on_a = await collect(on_a, request_id)
                whole_on_b = await collect(on_b, request_id)
                unknown = await on_b.get("/api/requests/no-such-id/events")
    assert whole_on_b == whole_on_a  # the same events, in the same order, with the same ids
    assert head + tail == whole_on_a  # resumed on B exactly where A left off
    assert [e[0] for e in whole_on_a] == list(range(1, len(whole_on_a) + 1))
    assert [name for _, name, _ in whole_on_a if name in TERMINAL] == ["done"]
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


async def test_a_killed_replicas_request_ends_once_for_a_client_that_moves(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = uuid.uuid4().hex
    with practice_server(tokens_per_second=20) as practice:
        upstream = practice.url + "/v1"
        settings: dict[str, Any] = {"redis_url": redis_server.url, "redis_name": name}
        with (
            replica(upstream, redis_server, name, tmp_path / "doomed.log") as (pid, doomed_url),
            queue_server(upstream, **settings, lease_s=1.0) as survivor,
        ):
            async with (
                httpx.AsyncClient(base_url=doomed_url, timeout=30) as doomed,
                httpx.AsyncClient(base_url=survivor.url, timeout=30) as other,
            ):
                body = {"prompt": "a long story", "user": "ann", "max_tokens": 400}
                request_id = (await doomed.post("/api/requests", json=body)).json()["id"]
                seen = []
                async for event in read_events(doomed, request_id):
                    seen.append(event)
                    if event[1] == "delta":
                        break

                async def mirrored() -> bool:  # the delta is on the shared log too
                    events = other.stream("GET", f"/api/requests/{request_id}/events")
                    async with events as r:
                        async for line in r.aiter_lines():
                            if line.startswith("event: delta"):
                                return True
                    return False  # pragma: no cover - the log ended without a delta

                await wait_until(mirrored, "the first delta on the shared log")
                os.kill(pid, signal.SIGKILL)
                rest = [e async for e in read_events(other, request_id, seen[-1][0])]
    ends = [(n, d) for _, n, d in seen + rest if n in TERMINAL]
    print(f"kill -9: {len(rest)} more events on the survivor, ending {ends}")
    assert len(ends) == 1  # exactly one terminal event, written by the survivor
    assert ends[0][0] == "error" and ends[0][1]["code"] == "replica_lost"
    ids = [i for i, _, _ in seen + rest]
    assert ids == list(range(1, len(ids) + 1))  # nothing lost, nothing twice


async def test_another_replica_shows_and_cancels_a_request(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    settings: dict[str, Any] = {"redis_url": redis_server.url, "redis_name": uuid.uuid4().hex}
    with practice_server(tokens_per_second=20) as practice:
        upstream = practice.url + "/v1"
        with queue_server(upstream, **settings) as a, queue_server(upstream, **settings) as b:
            async with (
                httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
                httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
            ):
                body = {"prompt": "a long story", "user": "ann", "max_tokens": 400}
                request_id = (await on_a.post("/api/requests", json=body)).json()["id"]

                async def two_tokens_on_b() -> dict[str, Any] | None:
                    view: dict[str, Any] = (await on_b.get(f"/api/requests/{request_id}")).json()
                    return view if view["tokens"] >= 2 else None

                running = await wait_until(two_tokens_on_b, "two tokens, seen on B")
                cancelled = await on_b.delete(f"/api/requests/{request_id}")
                again = await on_b.delete(f"/api/requests/{request_id}")
                on_a_view = (await on_a.get(f"/api/requests/{request_id}")).json()
                events = await collect(on_a, request_id)
                missing = await on_b.get("/api/requests/no-such-id")
    assert running["status"] == "running" and running["user"] == "ann" and running["text"]
    assert running["model"] == on_a_view["model"] and running["upstream"] == on_a_view["upstream"]
    assert cancelled.status_code == 200, cancelled.text
    answer = cancelled.json()
    assert answer["cancelled"] is True and answer["status"] == "cancelled"
    assert answer["outcome"] == {"event": "cancelled", "by": "client"}
    assert again.json()["cancelled"] is False  # it had ended already
    assert on_a_view["status"] == "cancelled"  # the holder did it
    assert [n for _, n, _ in events if n in TERMINAL] == ["cancelled"]  # once
    assert answer["text"] == on_a_view["text"]  # B's view is A's record, from the log
    assert missing.status_code == 404


async def test_a_pause_on_one_replica_holds_on_every_replica(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    settings: dict[str, Any] = {"redis_url": redis_server.url, "redis_name": uuid.uuid4().hex}
    with practice_server() as practice:
        upstream = practice.url + "/v1"
        with queue_server(upstream, **settings) as a, queue_server(upstream, **settings) as b:
            async with (
                httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
                httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
            ):
                assert (await on_a.post("/api/admin/pause")).json()["paused"] is True

                async def b_hears_it() -> bool:  # read on B: asking B to pause would hide it
                    return bool((await on_b.get("/api/queue")).json().get("paused"))

                await wait_until(b_hears_it, "B to hear of the pause")
                body = {"prompt": "hi", "user": "ann", "max_tokens": 5}
                waiting = (await on_b.post("/api/requests", json=body)).json()["id"]
                status = (await on_b.get(f"/api/requests/{waiting}")).json()["status"]
                with queue_server(upstream, **settings) as c:  # a replica that starts now
                    async with httpx.AsyncClient(base_url=c.url, timeout=30) as on_c:
                        late = (await on_c.get("/api/queue")).json().get("paused")
                assert (await on_a.post("/api/admin/resume")).json()["paused"] is False
                events = await collect(on_b, waiting)
    assert status == "queued"  # B started nothing while the class was paused
    assert late is True  # a replica that joins a paused class starts paused
    assert [n for _, n, _ in events if n in TERMINAL] == ["done"]  # the resume reached B


async def test_a_client_that_moves_to_another_replica_is_not_taken_for_gone(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    grace = {"disconnect_grace_s": 1.5}  # a request whose every reader left ends after this
    settings: dict[str, Any] = {"redis_url": redis_server.url, "redis_name": uuid.uuid4().hex}
    with practice_server(tokens_per_second=20) as practice:
        upstream = practice.url + "/v1"
        with (
            queue_server(upstream, **settings, **grace) as a,
            queue_server(upstream, **settings, **grace) as b,
        ):
            async with (
                httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
                httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
            ):
                body = {"prompt": "a long story", "user": "ann", "max_tokens": 100}
                moved = (await on_a.post("/api/requests", json=body)).json()["id"]
                left = (await on_a.post("/api/requests", json={**body, "user": "bob"})).json()["id"]
                for request_id in (moved, left):  # each client reads on A, then leaves A
                    async for _, name, _ in read_events(on_a, request_id):
                        if name == "delta":
                            break
                rest = [e async for e in read_events(on_b, moved, 1)]  # moved: reads on B

                async def left_ended() -> str | None:
                    view = (await on_a.get(f"/api/requests/{left}")).json()
                    return view["outcome"]["by"] if view["status"] == "cancelled" else None

                left_by = await wait_until(left_ended, "the abandoned request to end")
    assert [n for _, n, _ in rest if n in TERMINAL] == ["done"]  # read to its end on B
    assert left_by == "disconnect"  # nobody read it anywhere: ended, as without Redis


async def test_a_replica_that_stops_cleanly_writes_its_endings_for_other_replicas(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """Not `replica_lost` a lease time later: the stop's own ending, written at the stop."""
    settings: dict[str, Any] = {"redis_url": redis_server.url, "redis_name": uuid.uuid4().hex}
    with practice_server(tokens_per_second=20) as practice:
        upstream = practice.url + "/v1"
        with queue_server(upstream, **settings) as b:
            async with httpx.AsyncClient(base_url=b.url, timeout=30) as on_b:
                with queue_server(upstream, **settings, lease_s=60) as a:
                    async with httpx.AsyncClient(base_url=a.url, timeout=30) as on_a:
                        body = {"prompt": "a long story", "user": "ann", "max_tokens": 400}
                        request_id = (await on_a.post("/api/requests", json=body)).json()["id"]
                        async for _, name, _ in read_events(on_b, request_id):
                            if name == "delta":
                                break  # it runs on A, and B reads its log
                # A has stopped (as at SIGTERM); its heartbeat would last 60 s more
                with anyio.fail_after(10):
                    events = await collect(on_b, request_id)
    ends = [(n, d) for _, n, d in events if n in TERMINAL]
    assert len(ends) == 1 and ends[0][0] == "cancelled" and ends[0][1]["by"] == "shutdown"
