"""The practice model's lifecycle, like LM Studio 0.4: JIT loads with progress, one load for
everyone, load/unload, `parallel` that changes, TTL, and named load failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import practice_server

CHAT = "/v1/chat/completions"
ASK = [{"role": "user", "content": "What is a queue?"}]
LOAD_S = 0.2  # short loads: speed is not under test
# A load is made of timer ticks: the event loop may wake a timer up to its clock resolution
# early and the ticks are floats, so "took the whole load time" means to within a millisecond.
AT_LEAST_LOAD_S = LOAD_S - 1e-3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def cold(**overrides: Any) -> Iterator[str]:
    """A practice server with nothing loaded at start; yields its URL."""
    values: dict[str, Any] = {"loaded_at_start": [], "default_load_time_s": LOAD_S} | overrides
    with practice_server(**values) as server:
        yield server.url


def instances(url: str, model: str) -> list[dict[str, Any]]:
    (entry,) = [m for m in httpx.get(url + "/api/v1/models").json()["models"] if m["key"] == model]
    found: list[dict[str, Any]] = entry["loaded_instances"]
    return found


def native_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        name_line, data_line = block.split("\n")
        name, data = name_line.removeprefix("event: "), json.loads(data_line[6:])
        assert data["type"] == name
        out.append((name, data))
    return out


async def models_when(client: httpx.AsyncClient, check: Any) -> dict[str, Any]:
    """Poll `/practice/models` (bounded) until `check` holds."""
    models: dict[str, Any] = {}
    for _ in range(2000):
        models = (await client.get("/practice/models")).json()
        if check(models):
            return models
        await anyio.sleep(0.01)
    raise AssertionError(f"never got there: {models}")


def test_the_default_keeps_every_model_loaded() -> None:
    with practice_server() as server:
        assert instances(server.url, "practice-small")[0]["config"]["parallel"] == 4


def test_a_first_request_loads_the_model() -> None:
    with cold() as url:
        assert instances(url, "practice-fast") == []
        v0 = httpx.get(url + "/api/v0/models").json()["data"]
        assert {m["state"] for m in v0} == {"not-loaded"}
        # JIT: the OpenAI list still offers every model.
        assert len(httpx.get(url + "/v1/models").json()["data"]) == 4
        answer = httpx.post(url + CHAT, json={"model": "practice-fast", "messages": ASK})
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
        assert instances(url, "practice-fast") == [
            {"id": "practice-fast", "config": {"context_length": 8192, "parallel": 4}}
        ]
        state = httpx.get(url + "/practice/models").json()["practice-fast"]
        assert state["loaded"] and state["loads"] == 1 and state["last_load_s"] >= AT_LEAST_LOAD_S


@pytest.mark.anyio
async def test_ten_students_one_load() -> None:
    with cold() as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            replies: list[httpx.Response] = []

            async def ask() -> None:
                body = {"model": "practice-small", "messages": ASK}
                replies.append(await client.post(CHAT, json=body))

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(ask)
            state = (await client.get("/practice/models")).json()["practice-small"]
    assert [r.status_code for r in replies] == [200] * 10
    assert state["loads"] == 1


def test_native_chat_streams_load_and_prompt_progress() -> None:
    with cold() as url:
        body = {"model": "practice-thinker", "input": "Hi", "stream": True}
        first = native_events(httpx.post(url + "/api/v1/chat", json=body).text)
        again = native_events(httpx.post(url + "/api/v1/chat", json=body).text)
    names = [n for n, _ in first]
    assert names[:2] == ["chat.start", "model_load.start"]
    loads = [d["progress"] for n, d in first if n == "model_load.progress"]
    assert loads == sorted(loads) and loads[-1] == 1.0 and len(loads) >= 2
    end = names.index("model_load.end")
    assert first[end][1]["load_time_seconds"] >= AT_LEAST_LOAD_S
    rest = [n for n in names[end + 1 :] if not n.endswith(".delta")]
    assert rest == [
        "prompt_processing.start",
        *["prompt_processing.progress"] * 4,
        "prompt_processing.end",
        "reasoning.start",
        "reasoning.end",
        "message.start",
        "message.end",
        "chat.end",
    ]
    result = first[-1][1]["result"]
    assert [o["type"] for o in result["output"]] == ["reasoning", "message"]
    deltas = [n for n in names if n.endswith(".delta")]
    assert result["stats"]["total_output_tokens"] == len(deltas)
    message = "".join(d["content"] for n, d in first if n == "message.delta")
    assert result["output"][1]["content"] == message
    # Loaded now: no model_load events the second time.
    assert not any(n.startswith("model_load") for n, _ in again)


def test_native_chat_whole() -> None:
    with cold() as url:
        body = {"model": "practice-fast", "input": "Hi", "system_prompt": "Be kind"}
        result = httpx.post(url + "/api/v1/chat", json=body).json()
    assert result["model_instance_id"] == "practice-fast"
    assert result["output"][0]["type"] == "message" and result["output"][0]["content"]


def test_load_unload_and_another_parallel() -> None:
    with cold() as url:
        loaded = httpx.post(
            url + "/api/v1/models/load",
            json={"model": "practice-small", "parallel": 2, "echo_load_config": True},
        ).json()
        assert loaded["type"] == "llm" and loaded["status"] == "loaded"
        assert loaded["instance_id"] == "practice-small"
        assert loaded["load_time_seconds"] >= AT_LEAST_LOAD_S
        assert loaded["load_config"] == {"context_length": 8192, "parallel": 2}
        assert instances(url, "practice-small")[0]["config"]["parallel"] == 2
        httpx.post(url + "/api/v1/models/load", json={"model": "practice-small", "parallel": 3})
        assert instances(url, "practice-small")[0]["config"]["parallel"] == 3
        unloaded = httpx.post(url + "/api/v1/models/unload", json={"instance_id": "practice-small"})
        assert unloaded.json() == {"instance_id": "practice-small"}
        assert instances(url, "practice-small") == []
        missing = httpx.post(url + "/api/v1/models/unload", json={"instance_id": "practice-small"})
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "model_not_found"
        embed = httpx.post(url + "/api/v1/models/load", json={"model": "practice-embed"}).json()
        assert embed["type"] == "embedding"


@pytest.mark.anyio
async def test_a_new_parallel_is_what_the_slots_allow() -> None:
    with cold() as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await client.post("/api/v1/models/load", json={"model": "practice-fast", "parallel": 2})
            await client.post("/practice/stats/reset")

            async def ask() -> None:
                await client.post(CHAT, json={"model": "practice-fast", "messages": ASK})

            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(ask)
            stats = (await client.get("/practice/stats")).json()["per_model"]["practice-fast"]
    assert stats["served"] == 6 and stats["peak_active"] <= 2


def test_ttl_unloads_an_idle_model() -> None:
    with cold() as url:
        body = {"model": "practice-fast", "messages": ASK, "ttl": 0}
        assert httpx.post(url + CHAT, json=body).status_code == 200
        # Idle for its TTL (0 s): the next look at the catalogue finds it unloaded.
        assert instances(url, "practice-fast") == []
    with cold(default_ttl_s=0) as url:
        httpx.post(url + CHAT, json={"model": "practice-fast", "messages": ASK})
        assert instances(url, "practice-fast") == []
    with practice_server(default_ttl_s=0) as server:
        # Models loaded at start have no TTL, as with `lms load`.
        httpx.post(server.url + CHAT, json={"model": "practice-fast", "messages": ASK})
        assert instances(server.url, "practice-fast") != []


@pytest.mark.parametrize(
    ("failure", "code"), [("out_of_memory", "insufficient_memory"), ("timeout", "load_timeout")]
)
@pytest.mark.anyio
async def test_a_failed_load_reaches_everyone_waiting(failure: str, code: str) -> None:
    with cold() as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            # A slow load, so that all ten are waiting for it before it fails.
            await client.put("/practice/faults", json={"load_failure": failure, "load_time_s": 600})
            replies: list[httpx.Response] = []

            async def ask() -> None:
                body = {"model": "practice-fast", "messages": ASK}
                replies.append(await client.post(CHAT, json=body))

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(ask)
                await models_when(client, lambda m: m["practice-fast"]["waiting"] == 10)
                await client.put("/practice/faults", json={"load_time_s": None})
            state = (await client.get("/practice/models")).json()["practice-fast"]
            native = await client.post("/api/v1/models/load", json={"model": "practice-fast"})
            streamed = await client.post(
                "/api/v1/chat", json={"model": "practice-fast", "input": "Hi", "stream": True}
            )
            await client.put("/practice/faults", json={"load_failure": None})
            healed = await client.post(CHAT, json={"model": "practice-fast", "messages": ASK})
    assert state["loads"] == 1 and not state["loaded"]
    assert {r.status_code for r in replies} == {500}
    errors = [r.json()["error"] for r in replies]
    assert {e["code"] for e in errors} == {code} and {e["type"] for e in errors} == {"server_error"}
    assert "Failed to load model" in errors[0]["message"]
    assert native.status_code == 500
    assert native.json()["error"] == {
        "type": "internal_error",
        "message": errors[0]["message"],
        "code": code,
    }
    events = native_events(streamed.text)
    assert [n for n, _ in events if not n.startswith("model_load")] == [
        "chat.start",
        "error",
        "chat.end",
    ]
    assert events[-1][1]["result"]["output"] == []
    assert healed.status_code == 200


def test_without_jit_an_unloaded_model_is_refused() -> None:
    with cold(jit_loading=False, loaded_at_start=["practice-small"]) as url:
        listed = [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]]
        refused = httpx.post(url + CHAT, json={"model": "practice-fast", "messages": ASK})
    assert listed == ["practice-small"]
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "model_not_loaded"


def test_bad_lifecycle_settings_and_faults() -> None:
    with pytest.raises(ValueError, match="loaded_at_start"):
        with cold(loaded_at_start=["gpt-5"]):
            pass
    with cold() as url:
        bad = httpx.put(url + "/practice/faults", json={"load_failure": "meteor"})
        assert bad.status_code == 400 and "load_failure" in bad.json()["error"]
        bad_load = httpx.post(url + "/api/v1/models/load", json={"model": "gpt-5"})
        assert bad_load.status_code == 404
