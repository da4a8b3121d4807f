"""Slots, fairness and positions, observed from outside over HTTP."""

from __future__ import annotations

import anyio
import httpx
import pytest

from tests.conftest import (
    collect,
    hold_slot,
    practice_server,
    queue_server,
    read_events,
    wait_until,
)

pytestmark = pytest.mark.anyio


async def test_never_more_upstream_requests_than_slots_and_freed_slots_refill() -> None:
    # 100 tok/s: a reply (~100 tokens) outlasts the eight submissions even on a busy machine.
    with practice_server(parallel=2, tokens_per_second=100) as practice:
        with queue_server(practice.url + "/v1") as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                ids = []
                for i in range(8):
                    r = await client.post(
                        "/api/requests", json={"prompt": f"story {i}", "user": f"u{i}"}
                    )
                    ids.append(r.json()["id"])
                snapshot = (await client.get("/api/queue")).json()
                assert snapshot["running"] == 2 and snapshot["waiting"] == 6
                # the upstream reports parallel=2 per model: the queue honours it
                assert snapshot["upstreams"][0]["slots"]["practice-fast"] == 2

                async with anyio.create_task_group() as tg:
                    for request_id in ids:
                        tg.start_soon(collect, client, request_id)
                statuses = [(await client.get(f"/api/requests/{i}")).json() for i in ids]
                stats = (await client.get(practice.url + "/practice/stats")).json()
    assert stats["peak_active"] == 2  # counted by the upstream itself
    assert stats["served"] == 8
    assert all(s["status"] == "done" for s in statuses)
    # every freed slot was refilled: 8 dispatches, in arrival order (one user each)
    assert [s["dispatch_no"] for s in statuses] == list(range(1, 9))


async def test_light_users_start_within_the_next_three_dispatches() -> None:
    with practice_server(parallel=1) as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            holder = await hold_slot(client, practice.url)
            heavy = []
            for i in range(10):
                r = await client.post("/api/requests", json={"prompt": f"h{i}", "user": "heavy"})
                heavy.append(r.json()["id"])
            light = []
            for user in ("alice", "bob"):
                r = await client.post("/api/requests", json={"prompt": "hi", "user": user})
                light.append(r.json()["id"])
            await client.delete(f"/api/requests/{holder}")
            async with anyio.create_task_group() as tg:
                for request_id in heavy + light:
                    tg.start_soon(collect, client, request_id)
            order = {
                i: (await client.get(f"/api/requests/{i}")).json()["dispatch_no"]
                for i in heavy + light
            }
    first = min(order.values())
    assert all(order[i] - first < 3 for i in light), order


async def test_priority_class_goes_first() -> None:
    with practice_server(parallel=1) as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            holder = await hold_slot(client, practice.url)
            low = (await client.post("/api/requests", json={"prompt": "a", "user": "a"})).json()
            high = (
                await client.post("/api/requests", json={"prompt": "b", "user": "b", "priority": 5})
            ).json()
            assert high["position"] == 1 and low["position"] == 1  # low was first, then not
            await client.delete(f"/api/requests/{holder}")
            for request in (low, high):
                await collect(client, request["id"])
            got = [
                (await client.get(f"/api/requests/{r['id']}")).json()["dispatch_no"]
                for r in (high, low)
            ]
    assert got[0] < got[1]


async def test_positions_and_eta_count_down_as_the_queue_drains() -> None:
    # Each request streams for ~0.4 s, long enough for each position to be published
    # (positions are coalesced: a queue that drains instantly skips straight to `started`).
    slow = practice_server(parallel=1, tokens_per_second=100)
    with slow as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            # one finished request gives the server a service time, hence an ETA
            first = await client.post("/api/requests", json={"prompt": "warm up"})
            await collect(client, first.json()["id"])
            holder = await hold_slot(client, practice.url)
            ids = []
            for i in range(4):
                body = {"prompt": f"q{i}", "user": f"u{i}", "max_tokens": 40}
                r = await client.post("/api/requests", json=body)
                assert r.json()["position"] == i + 1
                ids.append(r.json()["id"])
            last = ids[-1]
            positions: list[tuple[int, int, float | None]] = []

            async def watch_last() -> None:
                async for _, name, data in read_events(client, last):
                    if name == "queued":
                        positions.append((data["position"], data["waiting"], data["eta_s"]))

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_last)
                await wait_until(lambda: _true(positions), "the first queued event")
                await client.delete(f"/api/requests/{holder}")
    seen = [p for p, _, _ in positions]
    assert seen[0] == 4 and seen[-1] == 1
    assert seen == sorted(seen, reverse=True)  # only ever moves forward
    assert all(eta is not None and eta >= 0 for _, _, eta in positions)
    etas = [eta for _, _, eta in positions]
    assert etas[0] >= etas[-1]  # type: ignore[operator]


async def _true(items: list[object]) -> bool:
    return bool(items)


async def test_several_upstreams_each_get_only_their_models() -> None:
    with (
        practice_server(models=["practice-fast"]) as a,
        practice_server(models=["practice-small"]) as b,
        queue_server(a.url + "/v1", b.url + "/v1") as queue,
    ):
        async with httpx.AsyncClient(base_url=queue.url) as client:
            models = (await client.get("/api/models")).json()["models"]
            assert {m["id"]: m["upstreams"] for m in models} == {
                "practice-fast": [a.url + "/v1"],
                "practice-small": [b.url + "/v1"],
            }
            for model, upstream in (("practice-fast", a), ("practice-small", b)):
                r = await client.post("/api/requests", json={"prompt": "hi", "model": model})
                events = await collect(client, r.json()["id"])
                started = next(data for _, name, data in events if name == "started")
                assert started["upstream"] == upstream.url + "/v1"
                assert events[-1][1] == "done"


async def _running_of(client: httpx.AsyncClient, ids: list[str]) -> int:
    statuses = [(await client.get(f"/api/requests/{i}")).json()["status"] for i in ids]
    return statuses.count("running")


@pytest.mark.parametrize("strict", [False, True])
async def test_one_student_cannot_hold_every_slot(strict: bool) -> None:
    """Cap 1 running per student, 3 slots. Work-conserving (default): the greedy student
    alone still fills every slot. Strict: they hold one, and a newcomer starts at once."""
    with practice_server(parallel=3, stall_after_tokens=1) as practice:
        with queue_server(
            practice.url + "/v1", running_per_student=1, running_cap_strict=strict
        ) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                greedy = []
                for i in range(3):
                    r = await client.post(
                        "/api/requests", json={"prompt": f"g{i}", "user": "greedy"}
                    )
                    greedy.append(r.json()["id"])
                assert await _running_of(client, greedy) == (1 if strict else 3)
                r = await client.post("/api/requests", json={"prompt": "hi", "user": "newcomer"})
                newcomer = r.json()["id"]
                assert await _running_of(client, [newcomer]) == (1 if strict else 0)
                for request_id in [*greedy, newcomer]:
                    await client.delete(f"/api/requests/{request_id}")
