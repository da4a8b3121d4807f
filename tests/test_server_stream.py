"""Streaming end to end: the native API and the OpenAI door, against the practice model."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import openai
import pytest

from tests.conftest import collect, read_events
from tlc_widgets.serving import BackgroundServer

pytestmark = pytest.mark.anyio


async def test_native_stream_tells_the_whole_life_of_a_request(queue: BackgroundServer) -> None:
    async with httpx.AsyncClient(base_url=queue.url) as client:
        r = await client.post("/api/requests", json={"prompt": "Tell me about the rabbit"})
        assert r.status_code == 202
        accepted = r.json()
        assert accepted["status"] == "queued" and accepted["position"] == 1
        assert len(accepted["id"]) >= 20  # unguessable: 128 random bits

        events = await collect(client, accepted["id"])
        names = [name for _, name, _ in events]
        assert names[0] == "queued" and names[1] == "started"
        assert names[-1] == "done" and names.count("done") == 1
        assert names[2:-1] == ["delta"] * (len(names) - 3)
        assert [i for i, _, _ in events] == list(range(1, len(events) + 1))

        done = events[-1][2]
        assert done["finish_reason"] in ("stop", "length")
        assert done["usage"]["completion_tokens"] == len(names) - 3
        assert set(done["timings"]) == {"waited_s", "ttft_s", "total_s", "tokens_per_s"}

        text = "".join(data["content"] for _, name, data in events if name == "delta")
        status = (await client.get(f"/api/requests/{accepted['id']}")).json()
        assert status["status"] == "done" and status["text"] == text and text


async def test_a_late_subscriber_gets_every_event_and_last_event_id_resumes(
    queue: BackgroundServer,
) -> None:
    async with httpx.AsyncClient(base_url=queue.url) as client:
        r = await client.post("/api/requests", json={"prompt": "Once upon a time"})
        request_id = r.json()["id"]
        everything = await collect(client, request_id)  # subscribes after it may have ended
        assert everything[0][1] == "queued" and everything[-1][1] == "done"

        middle = len(everything) // 2
        resumed = [e async for e in read_events(client, request_id, last_event_id=middle)]
        assert resumed == everything[middle:]

        bad = await client.get(
            f"/api/requests/{request_id}/events", headers={"Last-Event-ID": "yesterday"}
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["param"] == "Last-Event-ID"


async def test_reasoning_is_streamed_apart_from_content(queue: BackgroundServer) -> None:
    async with httpx.AsyncClient(base_url=queue.url) as client:
        r = await client.post("/api/requests", json={"prompt": "Why?", "model": "practice-thinker"})
        events = await collect(client, r.json()["id"])
        kinds = [next(iter(data)) for _, name, data in events if name == "delta"]
        assert "reasoning" in kinds and "content" in kinds
        assert kinds.index("content") > kinds.index("reasoning")


async def test_openai_client_streams_and_completes_through_the_queue(
    queue: BackgroundServer,
) -> None:
    client = openai.AsyncOpenAI(base_url=queue.url + "/v1", api_key="unused", max_retries=0)
    async with client:
        models = [m.id async for m in client.models.list()]
        assert "practice-fast" in models

        stream = await client.chat.completions.create(
            model="practice-fast",
            messages=[{"role": "user", "content": "Tell me a fable"}],
            stream=True,
            stream_options={"include_usage": True},
            user="ada",
        )
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert text and finish[-1] in ("stop", "length")
        assert chunks[-1].choices == [] and chunks[-1].usage is not None

        whole = await client.chat.completions.create(
            model="practice-fast", messages=[{"role": "user", "content": "Tell me a fable"}]
        )
        assert whole.choices[0].message.content == text  # same prompt, same practice answer


async def test_ten_concurrent_openai_callers_all_get_their_reply(
    practice: BackgroundServer,
) -> None:
    from tests.conftest import queue_server

    with queue_server(practice.url + "/v1", slots=2) as queue:
        client = openai.AsyncOpenAI(base_url=queue.url + "/v1", api_key="x", max_retries=0)
        replies: dict[int, str] = {}

        async def caller(i: int) -> None:
            stream = await client.chat.completions.create(
                model="practice-small",
                messages=[{"role": "user", "content": f"Story number {i}"}],
                stream=True,
                user=f"student{i}",
            )
            replies[i] = "".join([c.choices[0].delta.content or "" async for c in stream])

        async with client, anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(caller, i)
        assert len(replies) == 10 and all(replies.values())
        async with httpx.AsyncClient(base_url=queue.url) as http:
            snapshot = (await http.get("/api/queue")).json()
        assert snapshot["served"] == 10 and snapshot["waiting"] == 0


async def test_idle_streams_get_keep_alive_pings_on_both_doors() -> None:
    from tests.conftest import hold_slot, practice_server, queue_server

    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", ping_interval_s=0.05) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                holder = await hold_slot(client, practice.url)  # everything else waits
                waiting = (await client.post("/api/requests", json={"prompt": "x"})).json()
                url = f"/api/requests/{waiting['id']}/events"
                async with client.stream("GET", url) as r:
                    lines = [line async for line in _until_ping(r.aiter_lines())]
                assert lines[0] == "event: queued"  # the event log first, then pings
                body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
                async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                    lines = [line async for line in _until_ping(r.aiter_lines())]
                assert lines[0].startswith(": queued position=")
                await client.delete(f"/api/requests/{holder}")


async def _until_ping(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    async for line in lines:
        yield line
        if line == ": ping":
            return
