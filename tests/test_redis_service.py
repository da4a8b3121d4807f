"""`tlc serve --redis`: replicas share the upstreams' slots through a real redis-server.

Real parts only: a redis-server on loopback (the fixture), the practice model behind a
counting pass-through (it sees every reply the replicas send it), and queue servers in
threads of their own, each with its own event loop and Redis connections, as separate
`tlc serve` processes would be.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import collect, practice_server, queue_server, read_events, wait_until
from tests.counting_upstream import counting_upstream
from tests.redis_fixture import RedisServer, redis_server, require_redis_server  # noqa: F401
from tlc_widgets.config import Settings
from tlc_widgets.server.service import QueueService
from tlc_widgets.server.store.errors import StoreUnavailable
from tlc_widgets.server.store.redis_slots import RedisSlots, connect

TERMINAL = {"done", "error", "cancelled"}


def shared(redis: RedisServer, **more: Any) -> dict[str, Any]:
    """Settings of one replica of a class whose queue name no other test uses."""
    return {"redis_url": redis.url, "slots": 4, **more}


@pytest.mark.anyio
async def test_a_replica_refuses_to_start_when_redis_does_not_answer() -> None:
    where = {"upstreams": ["http://127.0.0.1:9/v1"], "redis_url": "redis://127.0.0.1:9/0"}
    settings = Settings(_env_file=None, history_path="", **where)  # type: ignore[call-arg]
    with pytest.raises(BaseExceptionGroup) as refused:  # from the service's task group
        async with QueueService.running(settings):
            pass  # pragma: no cover - it must not get here
    assert refused.group_contains(StoreUnavailable, match=r"redis://127\.0\.0\.1:9\)")


@pytest.mark.anyio
async def test_three_replicas_never_send_the_upstream_more_than_its_slots(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    name = uuid.uuid4().hex
    with practice_server(parallel=64, tokens_per_second=200) as practice:
        with counting_upstream(practice.url) as upstream:
            settings = shared(redis_server, redis_name=name)
            with (
                queue_server(upstream.url + "/v1", **settings) as a,
                queue_server(upstream.url + "/v1", **settings) as b,
                queue_server(upstream.url + "/v1", **settings) as c,
            ):
                clients = [httpx.AsyncClient(base_url=s.url, timeout=60) for s in (a, b, c)]
                ends: list[list[str]] = []

                async def one(client: httpx.AsyncClient, i: int) -> None:
                    body = {"prompt": f"story {i}", "user": f"u{i % 12}", "max_tokens": 20}
                    r = await client.post("/api/requests", json=body)
                    assert r.status_code == 202, r.text
                    events = await collect(client, r.json()["id"])
                    ends.append([name for _, name, _ in events if name in TERMINAL])

                async with anyio.create_task_group() as tg:
                    for i, client in zip(range(60), itertools.cycle(clients), strict=False):
                        tg.start_soon(one, client, i)
                for client in clients:
                    await client.aclose()
    print(f"upstream: {upstream.started} replies, at most {upstream.peak} at once")
    assert upstream.peak <= 4  # counted by the upstream, across the three replicas
    assert upstream.peak == 4  # 60 requests for 4 places: the places were all used
    assert upstream.started == 60
    assert ends == [["done"]] * 60  # each one ended once, and well


@pytest.mark.anyio
async def test_a_dead_replicas_places_come_back_when_its_leases_run_out(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    name = uuid.uuid4().hex
    with practice_server(parallel=64) as practice, counting_upstream(practice.url) as upstream:
        pool = upstream.url + "/v1"
        # A replica that took every place and then died: its leases are never renewed.
        dead = RedisSlots(connect(redis_server.url), name, ttl_s=1.0)
        held = [await dead.acquire(pool, capacity=4) for _ in range(4)]
        assert all(held)
        with queue_server(pool, **shared(redis_server, redis_name=name)) as queue:
            async with httpx.AsyncClient(base_url=queue.url, timeout=30) as client:
                r = await client.post("/api/requests", json={"prompt": "hi", "user": "ann"})
                events = [name for _, name, _ in await collect(client, r.json()["id"])]
        await dead.client.aclose()
    assert events[0] == "queued"  # it waited: every place was held
    assert events[-1] == "done" and "started" in events
    assert upstream.started == 1


@pytest.mark.anyio
async def test_a_lease_lost_while_streaming_ends_the_reply_once_with_slot_lost(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    name = uuid.uuid4().hex
    with practice_server(parallel=64, tokens_per_second=20) as practice:
        with counting_upstream(practice.url) as upstream:
            pool = upstream.url + "/v1"
            settings = shared(redis_server, redis_name=name, lease_s=0.6)
            with queue_server(pool, **settings) as queue:
                async with httpx.AsyncClient(base_url=queue.url, timeout=30) as client:
                    body = {"prompt": "a long story", "user": "ann", "max_tokens": 400}
                    request_id = (await client.post("/api/requests", json=body)).json()["id"]

                    async def streaming() -> bool:
                        status = (await client.get(f"/api/requests/{request_id}")).json()
                        return bool(status["tokens"] >= 1)

                    await wait_until(streaming, "the reply to stream")
                    redis = connect(redis_server.url)
                    # Redis forgot the lease (a restart without persistence does that).
                    assert await redis.delete(f"tlc:{{{name}}}:lease:{pool}") == 1
                    await redis.aclose()
                    events = [e async for e in read_events(client, request_id)]
    terminal = [(name, data) for _, name, data in events if name in TERMINAL]
    assert len(terminal) == 1
    assert terminal[0][0] == "error" and terminal[0][1]["code"] == "slot_lost"


def test_tlc_serve_with_an_unreachable_redis_stops_with_one_sentence() -> None:
    import subprocess
    import sys

    args = [sys.executable, "-m", "tlc_widgets.cli", "serve", "--port", "0"]
    args += ["--upstream", "http://127.0.0.1:9/v1", "--redis", "redis://127.0.0.1:9/0"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "tlc serve: --redis: nothing answers at redis://127.0.0.1:9; start Redis 7 or Valkey "
        "there, or leave out --redis to run one process alone."
    )


@pytest.mark.anyio
async def test_redis_restarting_holds_requests_back_then_they_run() -> None:
    """A private redis-server, stopped and started again (empty, as without persistence):
    meanwhile a request is accepted and waits; another replica's id answers 503 with
    `store_unavailable`; once Redis is back the request runs and ends once, well."""
    with RedisServer(require_redis_server()) as redis, practice_server() as practice:
        settings = shared(redis, redis_name=uuid.uuid4().hex)
        with queue_server(practice.url + "/v1", **settings) as queue:
            async with httpx.AsyncClient(base_url=queue.url, timeout=30) as client:
                body = {"prompt": "hi", "user": "ann", "max_tokens": 5}
                before = (await client.post("/api/requests", json=body)).json()["id"]
                assert [n for _, n, _ in await collect(client, before)][-1] == "done"
                redis.stop()
                r = await client.post("/api/requests", json=body)
                assert r.status_code == 202, r.text  # accepted: it waits for Redis
                waiting = r.json()["id"]
                status = (await client.get(f"/api/requests/{waiting}")).json()["status"]
                elsewhere = await client.get("/api/requests/another-replicas-id/events")
                redis.start()
                events = await collect(client, waiting)
    assert status == "queued"  # nothing starts without a lease
    assert elsewhere.status_code == 503
    assert elsewhere.json()["error"]["code"] == "store_unavailable"
    assert [n for _, n, _ in events if n in TERMINAL] == ["done"]
