"""Embeddings share the fair order with chat, not its slots: they never wait behind a reply.

An embedding is one short forward pass, and in LM Studio an embedding model is a model of its
own. So an embedding request takes its place in the same fair queue (the same per-user
limits and positions) but a slot of its own model's pool — even on an upstream that reports
no per-model slots, where every chat model shares one pool of `--slots`.
"""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from tlc_widgets.serving import BackgroundServer

from .conftest import queue_server, wait_until
from .scripted_upstream import EMBEDDER, MODEL, Scripted

pytestmark = pytest.mark.anyio


async def test_an_embedding_does_not_wait_behind_a_running_chat() -> None:
    with BackgroundServer(Scripted().app) as upstream, queue_server(upstream.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url, timeout=30) as client:
            hold = {"model": MODEL, "messages": [{"role": "user", "content": "stall:"}]}
            held = (await client.post("/api/requests", json=hold)).json()["id"]

            async def running() -> bool:
                status = (await client.get(f"/api/requests/{held}")).json()["status"]
                return bool(status == "running")

            await wait_until(running, "the chat to hold the upstream's one slot")
            # Another user waits for a chat slot (within one user, requests start in order).
            later = {"model": MODEL, "prompt": "hi", "user": "bob"}
            waiting = await client.post("/api/requests", json=later)
            assert (await client.get("/api/queue")).json()["waiting"] == 1  # chat: no slot

            times = []
            for _ in range(20):
                start = time.perf_counter()
                r = await client.post("/v1/embeddings", json={"model": EMBEDDER, "input": "a fox"})
                times.append(time.perf_counter() - start)
                assert r.status_code == 200 and len(r.json()["data"]) == 1
            times.sort()
            print(f"\nembeddings while every chat slot is busy: median {times[10] * 1000:.1f} ms")
            for request_id in (waiting.json()["id"], held):
                await client.delete(f"/api/requests/{request_id}")
            with anyio.fail_after(10):
                await wait_until(
                    lambda: _idle(client), "the queue to empty once the chat is cancelled"
                )


async def _idle(client: httpx.AsyncClient) -> bool:
    snapshot = (await client.get("/api/queue")).json()
    return bool(snapshot["waiting"] == 0 and snapshot["running"] == 0)
