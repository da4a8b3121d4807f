"""Every fault the practice model can inject ends in exactly one named terminal event."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import collect, practice_server, queue_server

pytestmark = pytest.mark.anyio


async def run_one(queue_url: str, **body: object) -> tuple[list[str], dict[str, object], str]:
    async with httpx.AsyncClient(base_url=queue_url) as client:
        r = await client.post("/api/requests", json={"prompt": "Tell me a story", **body})
        assert r.status_code == 202, r.text
        events = await collect(client, r.json()["id"])
        status = (await client.get(f"/api/requests/{r.json()['id']}")).json()
    names = [name for _, name, _ in events]
    return names, events[-1][2], status["text"]


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ({"fail_after_tokens": 3}, "upstream_error"),
        ({"drop_after_tokens": 3}, "upstream_error"),
        ({"truncate_after_tokens": 3}, "upstream_error"),
        ({"stall_after_tokens": 3}, "upstream_timeout"),
    ],
)
async def test_mid_stream_faults_keep_the_text_so_far(fault: dict[str, int], code: str) -> None:
    with practice_server(**fault) as practice:
        with queue_server(practice.url + "/v1", stall_timeout_s=0.5) as queue:
            names, last, text = await run_one(queue.url)
            async with httpx.AsyncClient() as client:
                snapshot = (await client.get(queue.url + "/api/queue")).json()
    assert names[-1] == "error" and sum(n in ("done", "error", "cancelled") for n in names) == 1
    assert last["code"] == code and last["message"]
    assert names.count("delta") == 3 and len(text.split()) >= 1
    assert snapshot["running"] == 0  # the slot is free again


async def test_first_token_timeout() -> None:
    with practice_server(first_token_latency_s=30) as practice:
        with queue_server(practice.url + "/v1", first_token_timeout_s=0.3) as queue:
            names, last, text = await run_one(queue.url)
    assert names == ["queued", "started", "error"]
    assert last["code"] == "upstream_timeout" and text == ""


async def test_model_not_loaded_is_named() -> None:
    with practice_server(no_models_loaded=True) as practice:
        with queue_server(practice.url + "/v1") as queue:
            names, last, _ = await run_one(queue.url, model="practice-fast")
            async with httpx.AsyncClient(base_url=queue.url) as client:
                models = (await client.get("/api/models")).json()["models"]
    assert names[-1] == "error" and last["code"] == "model_not_loaded"
    assert "load" in str(last["message"])
    assert all(m["loaded"] is False for m in models)


async def test_upstream_gone_after_acceptance_is_upstream_unavailable() -> None:
    with practice_server() as practice:
        with queue_server(practice.url + "/v1", connect_timeout_s=2) as queue:
            practice.stop()  # LM Studio quits while the queue still believes in it
            names, last, _ = await run_one(queue.url)
    assert names[-1] == "error" and last["code"] == "upstream_unavailable"


async def test_the_openai_door_reports_faults_as_error_data() -> None:
    import openai

    with practice_server(fail_after_tokens=2) as practice:
        with queue_server(practice.url + "/v1") as queue:
            client = openai.AsyncOpenAI(base_url=queue.url + "/v1", api_key="x", max_retries=0)
            async with client:
                stream = await client.chat.completions.create(
                    model="practice-fast",
                    messages=[{"role": "user", "content": "hi"}],
                    stream=True,
                )
                with pytest.raises(openai.APIError) as caught:
                    async for _ in stream:
                        pass
                assert "failed in the middle" in str(caught.value)
                with pytest.raises(openai.APIStatusError) as whole:
                    await client.chat.completions.create(
                        model="practice-fast", messages=[{"role": "user", "content": "hi"}]
                    )
                assert whole.value.status_code == 502


async def test_lm_studio_quitting_fails_the_waiting_requests_promptly() -> None:
    with practice_server(parallel=1, tokens_per_second=20) as practice:
        with queue_server(practice.url + "/v1", refresh_s=0.2, connect_timeout_s=2) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                ids = []
                for i in range(3):
                    r = await client.post("/api/requests", json={"prompt": "hi", "user": f"u{i}"})
                    ids.append(r.json()["id"])
                practice.stop()  # LM Studio quits with one request running and two waiting
                outcomes = [(await collect(client, i))[-1] for i in ids]
                snapshot = (await client.get("/api/queue")).json()
    assert [name for _, name, _ in outcomes] == ["error"] * 3
    assert outcomes[0][2]["code"] == "upstream_error"  # cut mid-reply: the text so far is kept
    assert {o[2]["code"] for o in outcomes[1:]} == {"upstream_unavailable"}
    assert snapshot["waiting"] == 0 and snapshot["running"] == 0
