"""Bad input and full queues get a named error code and a sentence, never a crash."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import hold_slot, practice_server, queue_server
from tlc_widgets.protocol import ERRORS, ErrorCode
from tlc_widgets.serving import BackgroundServer, free_port

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "body"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "body"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "a", "temperature": 5}, "temperature"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "a", "surprise": 1}, "surprise"),
        ({"messages": [{"role": "wizard", "content": "b"}]}, "messages.0.role"),
    ],
)
async def test_invalid_bodies_are_422_naming_the_field(
    queue: BackgroundServer, body: dict[str, object], param: str
) -> None:
    async with httpx.AsyncClient(base_url=queue.url) as client:
        r = await client.post("/api/requests", json=body)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and error["param"] == param
    assert error["message"].startswith(ERRORS[ErrorCode.INVALID_REQUEST][1])


async def test_not_json_and_unknown_ids(queue: BackgroundServer) -> None:
    async with httpx.AsyncClient(base_url=queue.url) as client:
        r = await client.post("/api/requests", content=b"\xff\xfe not json")
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        for method in ("GET", "DELETE"):
            r = await client.request(method, "/api/requests/nope")
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_caps_unknown_models_and_the_openai_door_use_the_same_codes() -> None:
    with practice_server() as practice:
        with queue_server(practice.url + "/v1", max_tokens_cap=100, max_prompt_chars=50) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                r = await client.post("/api/requests", json={"prompt": "a", "max_tokens": 101})
                assert (r.status_code, r.json()["error"]["code"]) == (422, "max_tokens_too_large")
                r = await client.post("/api/requests", json={"prompt": "a" * 51})
                assert (r.status_code, r.json()["error"]["code"]) == (422, "prompt_too_long")
                r = await client.post("/api/requests", json={"prompt": "a", "model": "gpt-9"})
                assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")
                assert "practice-fast" in r.json()["error"]["message"]
                r = await client.post(
                    "/v1/chat/completions",
                    json={"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]},
                )
                assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")


async def test_queue_full_and_per_user_cap_say_when_to_retry() -> None:
    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", max_queue=3, max_per_user=2) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                holder = await hold_slot(client, practice.url)
                for _ in range(2):
                    r = await client.post("/api/requests", json={"prompt": "a", "user": "ada"})
                    assert r.status_code == 202
                r = await client.post("/api/requests", json={"prompt": "a", "user": "ada"})
                assert (r.status_code, r.json()["error"]["code"]) == (429, "too_many_requests")
                assert int(r.headers["Retry-After"]) >= 1
                r = await client.post("/api/requests", json={"prompt": "a", "user": "bob"})
                assert r.status_code == 202
                r = await client.post("/api/requests", json={"prompt": "a", "user": "cy"})
                assert (r.status_code, r.json()["error"]["code"]) == (429, "queue_full")
                assert int(r.headers["Retry-After"]) >= 1
                r = await client.post(
                    "/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": "hi"}], "user": "cy"},
                )
                assert (r.status_code, r.json()["error"]["code"]) == (429, "queue_full")
                assert "Retry-After" in r.headers
                await client.delete(f"/api/requests/{holder}")


async def test_lm_studio_down_is_upstream_unavailable_and_not_ready() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    with queue_server(nowhere, connect_timeout_s=2) as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            r = await client.post("/api/requests", json={"prompt": "hi"})
            assert (r.status_code, r.json()["error"]["code"]) == (503, "upstream_unavailable")
            assert nowhere in r.json()["error"]["message"]
            health = await client.get("/healthz")
            assert health.status_code == 200
            assert health.json()["upstreams"] == [{"url": nowhere, "reachable": False}]
            assert (await client.get("/readyz")).status_code == 503


async def test_a_reply_past_the_size_limit_ends_named_and_finished_ones_stay_within_budget() -> (
    None
):
    """A runaway reply (or one huge token) ends with `reply_too_large`, the text so far
    kept; finished requests are forgotten oldest first past the memory budget."""
    from tests.conftest import read_events
    from tests.scripted_upstream import MODEL, Scripted

    with BackgroundServer(Scripted().app) as upstream:
        # retain_bytes counts what records hold in memory (Record.held): 2–4 of these
        limits = {"max_reply_bytes": 4_000, "retain_bytes": 30_000}
        with queue_server(upstream.url + "/v1", **limits) as queue:
            async with httpx.AsyncClient(base_url=queue.url, timeout=30) as client:
                body = {"model": MODEL, "prompt": "echo:" + "all work and no play " * 500}
                r = await client.post("/api/requests", json=body)
                big = r.json()["id"]
                events = [e async for e in read_events(client, big)]
                status = (await client.get(f"/api/requests/{big}")).json()
                small = []
                for n in range(6):
                    r = await client.post(
                        "/api/requests", json={"model": MODEL, "prompt": f"echo:{n} " * 200}
                    )
                    small.append(r.json()["id"])
                    _ = [e async for e in read_events(client, small[-1])]
                kept = [(await client.get(f"/api/requests/{i}")).status_code for i in small]
    name, data = events[-1][1], events[-1][2]
    assert (name, data["code"]) == ("error", "reply_too_large")
    assert status["text"] and len(status["text"]) < 6_000  # the text so far is kept
    assert kept[-1] == 200 and 404 in kept  # the newest stay, the oldest went first
