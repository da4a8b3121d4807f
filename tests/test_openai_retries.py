"""A "no" stays a no under the openai SDK's default retries, and a retry keeps its place.

The SDK retries 408, 409, 429 and 5xx twice by default, unless the answer says
`x-should-retry: false`; each attempt carries `x-stainless-retry-count`. These tests use the
SDK with its default `max_retries` and count the attempts it really makes.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import openai
import pytest

from tlc_widgets.config import Settings

from .conftest import hold_slot, practice_server, queue_server, wait_until

pytestmark = pytest.mark.anyio

HI = [{"role": "user", "content": "hi"}]


def counting_client(base: str, attempts: list[str]) -> openai.AsyncOpenAI:
    async def count(request: Any) -> None:
        attempts.append(request.headers.get("x-stainless-retry-count", "?"))

    http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [count]})
    return openai.AsyncOpenAI(base_url=base, api_key="x", http_client=http)  # default retries


async def queued_ids(client: httpx.AsyncClient) -> list[str]:
    rows = (await client.get("/api/admin/requests")).json()["requests"]
    return [r["id"] for r in rows if r["status"] == "queued"]


async def test_a_cancelled_request_is_not_sent_again() -> None:
    with practice_server(parallel=1) as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            holder = await hold_slot(client, practice.url, model="practice-fast")
            attempts: list[str] = []
            caught: list[Exception] = []

            async def ask() -> None:
                async with counting_client(queue.url + "/v1", attempts) as oa:
                    try:
                        await oa.chat.completions.create(model="practice-fast", messages=HI)
                    except openai.APIStatusError as exc:
                        caught.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                waiting = await wait_until(lambda: queued_ids(client), "the request to wait")
                await client.delete(f"/api/requests/{waiting[0]}")  # the teacher says no
            assert isinstance(caught[0], openai.ConflictError)
            assert caught[0].response.headers["x-should-retry"] == "false"
            assert attempts == ["0"]  # the SDK obeyed: no second attempt
            assert await queued_ids(client) == []
            await client.delete(f"/api/requests/{holder}")


async def test_a_queue_timeout_is_not_queued_again_at_the_back() -> None:
    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", queue_timeout_s=0.3) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                holder = await hold_slot(client, practice.url, model="practice-fast")
                attempts: list[str] = []
                async with counting_client(queue.url + "/v1", attempts) as oa:
                    with pytest.raises(openai.InternalServerError) as timed_out:
                        await oa.chat.completions.create(model="practice-fast", messages=HI)
                assert timed_out.value.status_code == 504
                assert timed_out.value.body["code"] == "queue_timeout"  # type: ignore[index]
                assert attempts == ["0"]
                await client.delete(f"/api/requests/{holder}")


async def test_a_retry_of_the_same_request_keeps_its_place() -> None:
    with practice_server(parallel=1) as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url, timeout=30) as client:
            holder = await hold_slot(client, practice.url, model="practice-fast")
            body = json.dumps({"model": "practice-fast", "messages": HI, "user": "ada"}).encode()
            headers = {"content-type": "application/json", "x-stainless-retry-count": "0"}

            async def first_try() -> None:
                await client.post("/v1/chat/completions", content=body, headers=headers)

            async with anyio.create_task_group() as tg:
                tg.start_soon(first_try)
                first = (await wait_until(lambda: queued_ids(client), "the first try to wait"))[0]
                tg.cancel_scope.cancel()  # the client's read timeout: it hangs up
            later = await client.post(
                "/api/requests", json={"prompt": "hi", "user": "bob", "model": "practice-fast"}
            )
            assert await queued_ids(client) == [first, later.json()["id"]]

            retried: list[httpx.Response] = []

            async def retry() -> None:
                headers["x-stainless-retry-count"] = "1"
                retried.append(
                    await client.post("/v1/chat/completions", content=body, headers=headers)
                )

            async with anyio.create_task_group() as tg:
                tg.start_soon(retry)
                await client.delete(f"/api/requests/{holder}")
            assert retried[0].status_code == 200, retried[0].text
            assert await queued_ids(client) == []
            served = (await client.get(f"/api/requests/{first}")).json()
            bob = (await client.get(f"/api/requests/{later.json()['id']}")).json()
            assert served["dispatch_no"] < bob["dispatch_no"]  # it kept its place
            # The retry's answer is the first try's record, not a new request's.
            assert retried[0].json()["id"] == served["outcome"]["upstream_id"]
            assert retried[0].json()["choices"][0]["message"]["content"] == served["text"]


async def test_a_whole_reply_nobody_comes_back_for_is_cancelled_after_the_grace() -> None:
    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", disconnect_grace_s=0.2) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                holder = await hold_slot(client, practice.url)

                async def ask() -> None:
                    await client.post("/v1/chat/completions", json={"messages": HI})

                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask)
                    first = (await wait_until(lambda: queued_ids(client), "it to wait"))[0]
                    tg.cancel_scope.cancel()

                async def gone() -> bool:
                    status = (await client.get(f"/api/requests/{first}")).json()
                    return bool(status["status"] == "cancelled")

                await wait_until(gone, "the abandoned request to be cancelled")
                await client.delete(f"/api/requests/{holder}")


async def test_a_waiting_stream_outlives_a_short_read_timeout() -> None:
    assert Settings(_env_file=None).ping_interval_s <= 5  # type: ignore[call-arg]
    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", ping_interval_s=0.05) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                holder = await hold_slot(client, practice.url)
                body = {"messages": HI, "stream": True}
                pings, lines = 0, []
                timeout = httpx.Timeout(5, read=0.5)  # the stream must never be silent that long
                async with client.stream(
                    "POST", "/v1/chat/completions", json=body, timeout=timeout
                ) as r:
                    async for line in r.aiter_lines():
                        lines.append(line)
                        pings += line == ": ping"
                        if pings == 5:
                            await client.delete(f"/api/requests/{holder}")
                assert pings >= 5 and lines[-2] == "data: [DONE]"
