"""Event streams are bounded per request and per user, and always uncounted when they close."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest

from tests.conftest import hold_slot, practice_server, queue_server, wait_until

pytestmark = pytest.mark.anyio


async def _open(stack: AsyncExitStack, client: httpx.AsyncClient, path: str) -> int:
    """Open one event stream and keep it open; its status code."""
    response = await stack.enter_async_context(client.stream("GET", path))
    return response.status_code


async def test_streams_past_the_caps_are_refused_fast_and_closed_ones_free_their_place() -> None:
    with practice_server() as practice:
        with queue_server(
            practice.url + "/v1", max_streams_per_request=3, max_streams_per_user=5
        ) as queue:
            async with httpx.AsyncClient(base_url=queue.url, timeout=30) as client:
                holder = await hold_slot(client, practice.url, user="ada")
                other = await hold_slot(client, practice.url, user="ada")
                async with AsyncExitStack() as stack:
                    first = [await _open(stack, client, f"/api/requests/{holder}/events")]
                    first += [await _open(stack, client, f"/api/requests/{holder}/events")]
                    first += [await _open(stack, client, f"/api/requests/{holder}/events")]
                    refused = await client.get(f"/api/requests/{holder}/events")
                    # ada's other request: two more streams reach her cap of five
                    more = [await _open(stack, client, f"/api/requests/{other}/events")]
                    more += [await _open(stack, client, f"/api/requests/{other}/events")]
                    user_cap = await client.get(f"/api/requests/{other}/events")
                    monitor = await client.get("/api/queue")  # plain reads are not streams
                # every stream above is closed now: their places are free again, once the
                # server has seen the connections close (a moment, on a busy machine)

                async def opens_again() -> bool:
                    async with AsyncExitStack() as stack:
                        return await _open(stack, client, f"/api/requests/{holder}/events") == 200

                await wait_until(opens_again, "a closed stream's place to open again")
                for request_id in (holder, other):
                    await client.delete(f"/api/requests/{request_id}")
    assert first == [200, 200, 200] and more == [200, 200]
    for answer in (refused, user_cap):
        assert answer.status_code == 429
        assert answer.json()["error"]["code"] == "too_many_streams"
    assert "per request" in refused.json()["error"]["message"]
    assert "per user" in user_cap.json()["error"]["message"]
    assert monitor.status_code == 200
