"""Cancelling and disconnecting: places and slots are freed, upstream connections closed."""

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


async def test_cancel_while_queued_leaves_the_line() -> None:
    with practice_server(parallel=1) as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            holder = await hold_slot(client, practice.url)
            waiting = (await client.post("/api/requests", json={"prompt": "x"})).json()
            behind = (await client.post("/api/requests", json={"prompt": "y", "user": "b"})).json()
            assert behind["position"] == 2

            r = await client.delete(f"/api/requests/{waiting['id']}")
            assert r.json()["cancelled"] is True and r.json()["status"] == "cancelled"
            again = await client.delete(f"/api/requests/{waiting['id']}")
            assert again.json()["cancelled"] is False  # one terminal event, never two

            events = await collect(client, waiting["id"])
            assert [n for _, n, _ in events] == ["queued", "cancelled"]
            assert events[-1][2] == {"by": "client"}
            assert (await client.get("/api/queue")).json()["waiting"] == 1

            async def moved_up() -> bool:
                status = (await client.get(f"/api/requests/{behind['id']}")).json()
                return bool(status["position"] == 1)

            await wait_until(moved_up, "the request behind to move up")
            await client.delete(f"/api/requests/{holder}")
            assert (await collect(client, behind["id"]))[-1][1] == "done"


async def test_cancel_while_running_closes_the_upstream_stream_at_once() -> None:
    with practice_server(parallel=1) as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            holder = await hold_slot(client, practice.url)
            r = await client.delete(f"/api/requests/{holder}")
            assert r.json()["status"] == "cancelled"
            events = await collect(client, holder)
            assert [n for _, n, _ in events][-1] == "cancelled"
            assert events[1][1] == "started" and events[2][1] == "delta"

            async def upstream_saw_it() -> dict[str, int] | None:
                stats = (await client.get(practice.url + "/practice/stats")).json()
                return stats if stats["disconnects"] == 1 and stats["active"] == 0 else None

            await wait_until(upstream_saw_it, "the upstream to see the connection close")
            status = (await client.get(f"/api/requests/{holder}")).json()
            assert status["text"]  # the text so far is kept
            assert (await client.get("/api/queue")).json()["running"] == 0


async def test_a_native_client_that_leaves_for_good_is_cancelled() -> None:
    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", disconnect_grace_s=0) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                holder = await hold_slot(client, practice.url)
                waiting = (await client.post("/api/requests", json={"prompt": "x"})).json()
                async for _, name, _ in read_events(client, waiting["id"]):
                    assert name == "queued"
                    break  # leave while waiting
                async for _, name, _ in read_events(client, holder):
                    if name == "delta":
                        break  # leave while running

                async def both_cancelled() -> bool:
                    got = [
                        (await client.get(f"/api/requests/{i}")).json()
                        for i in (waiting["id"], holder)
                    ]
                    return all(g["status"] == "cancelled" for g in got)

                await wait_until(both_cancelled, "both requests to be cancelled")
                ended = await collect(client, waiting["id"])
                assert ended[-1][2] == {"by": "disconnect"}
                snapshot = (await client.get("/api/queue")).json()
                assert snapshot["waiting"] == 0 and snapshot["running"] == 0


async def test_an_openai_streaming_client_that_disconnects_is_cancelled() -> None:
    with practice_server(parallel=1) as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            holder = await hold_slot(client, practice.url)
            body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
            async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                lines = r.aiter_lines()
                first = await anext(lines)
                assert first.startswith(": queued position=1")
                await lines.aclose()  # hang up while waiting

            async def nothing_waits() -> bool:
                return bool((await client.get("/api/queue")).json()["waiting"] == 0)

            await wait_until(nothing_waits, "the hung-up request to leave the queue")
            await client.delete(f"/api/requests/{holder}")


async def test_every_request_of_a_mixed_run_ends_exactly_once() -> None:
    """Submits, cancels (queued and running) and completions interleaved: each request's
    event log ends in exactly one terminal event, and nothing is left waiting or running."""
    with practice_server(parallel=2, tokens_per_second=500) as practice:
        with queue_server(practice.url + "/v1") as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                ids = []
                for i in range(24):
                    r = await client.post(
                        "/api/requests", json={"prompt": f"p{i}", "user": f"u{i % 5}"}
                    )
                    ids.append(r.json()["id"])
                    if i % 3 == 0:
                        await client.delete(f"/api/requests/{ids[i // 2]}")
                logs: dict[str, list[str]] = {}

                async def read(request_id: str) -> None:
                    logs[request_id] = [n for _, n, _ in await collect(client, request_id)]

                async with anyio.create_task_group() as tg:
                    for request_id in ids:
                        tg.start_soon(read, request_id)
                snapshot = (await client.get("/api/queue")).json()
    terminal = {"done", "error", "cancelled"}
    for names in logs.values():
        assert sum(n in terminal for n in names) == 1 and names[-1] in terminal
    assert snapshot["waiting"] == 0 and snapshot["running"] == 0
    assert {names[-1] for names in logs.values()} == {"done", "cancelled"}
