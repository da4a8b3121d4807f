"""The practice server over real HTTP on loopback: LM Studio's shapes, slots, faults."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import anyio
import anyio.abc
import httpx
import openai
import pytest
from anyio import wait_all_tasks_blocked

from tlc_widgets.practice import PracticeSettings, create_app
from tlc_widgets.practice.slots import Slots
from tlc_widgets.serving import BackgroundServer

CHAT = "/v1/chat/completions"
ASK = [{"role": "user", "content": "What is a queue?"}]
MODELS = ["practice-small", "practice-fast", "practice-thinker"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def practice(**overrides: Any) -> Iterator[str]:
    """A practice server without delays (unless asked), ignoring any `.env`; yields its URL."""
    values: dict[str, Any] = {"tokens_per_second": 0, "first_token_latency_s": 0} | overrides
    settings = PracticeSettings(_env_file=None, **values)  # type: ignore[call-arg]
    with BackgroundServer(create_app(settings)) as server:
        yield server.url


def body(model: str = "practice-fast", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": ASK, **extra}


def events(raw: str) -> list[str]:
    """The `data:` payloads of an OpenAI stream, checking its framing on the way."""
    assert raw.endswith("\n\n")
    blocks = raw[:-2].split("\n\n")
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks), blocks
    return [b.removeprefix("data: ") for b in blocks]


async def first_token(response: httpx.Response) -> AsyncIterator[str]:
    """Read up to the first `data:` line; keep the returned iterator while the stream is open.

    Breaking out of `async for line in response.aiter_lines()` would leave the iterator to the
    garbage collector, whose `aclose()` makes httpcore close the connection: a hang-up the test
    did not ask for.
    """
    lines = response.aiter_lines()
    while not (await anext(lines)).startswith("data: "):
        pass
    return lines


async def stats_when(
    client: httpx.AsyncClient, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll `/practice/stats` (bounded) until `check` holds; the server runs in another thread."""
    stats: dict[str, Any] = {}
    for _ in range(1000):
        stats = (await client.get("/practice/stats")).json()
        if check(stats):
            return stats
        await anyio.sleep(0.01)
    raise AssertionError(f"stats never got there: {stats}")


# -- model lists ------------------------------------------------------------------------------


def test_model_lists() -> None:
    with practice(parallel=3) as url:
        openai_list = httpx.get(url + "/v1/models").json()
        v0 = httpx.get(url + "/api/v0/models").json()
        v1 = httpx.get(url + "/api/v1/models").json()
    assert openai_list == {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "owned_by": "organization_owner"}
            for m in [*MODELS, "practice-embed"]
        ],
    }
    assert v0["object"] == "list"
    assert v0["data"][1] == {
        "id": "practice-fast",
        "object": "model",
        "type": "llm",
        "publisher": "tlc",
        "arch": "markov",
        "compatibility_type": "gguf",
        "quantization": "none",
        "state": "loaded",
        "max_context_length": 8192,
    }
    thinker = v1["models"][2]
    assert thinker["key"] == "practice-thinker"
    assert thinker["loaded_instances"] == [
        {"id": "practice-thinker", "config": {"context_length": 8192, "parallel": 3}}
    ]
    assert thinker["capabilities"] == {
        "vision": False,
        "trained_for_tool_use": False,
        "reasoning": True,
    }
    *llms, embed = v1["models"]
    assert embed["type"] == "embedding" and v0["data"][-1]["type"] == "embeddings"
    assert "hashed bag of words, not semantic" in embed["display_name"]
    for m in llms:
        assert m["key"].startswith("practice-")
        assert "statistical text generator, not an LLM" in m["display_name"]
        assert m["description"] == "practice model (statistical text generator, not an LLM)"
        assert {"type", "publisher", "architecture", "quantization", "size_bytes"} <= set(m)
        assert m["max_context_length"] == 8192 and m["format"] == "gguf"


def test_models_can_be_restricted() -> None:
    with practice(models=["practice-small"]) as url:
        assert [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]] == ["practice-small"]
        # No model named: LM Studio answers with the loaded model.
        answer = httpx.post(url + CHAT, json={"messages": ASK}).json()
        assert answer["model"] == "practice-small"


# -- errors -----------------------------------------------------------------------------------


def test_error_shapes() -> None:
    with practice() as url:
        unknown = httpx.post(url + CHAT, json=body("gpt-5"))
        bad_json = httpx.post(url + CHAT, content=b"{not json")
        no_messages = httpx.post(url + CHAT, json={"model": "practice-fast"})
        not_object = httpx.post(url + CHAT, json=["hello"])
        bad_max = httpx.post(url + CHAT, json=body(max_tokens="many"))
    assert unknown.status_code == 400
    assert unknown.json() == {
        "error": {
            "message": 'Model "gpt-5" not found. Available: ' + ", ".join(MODELS),
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    for response in (bad_json, no_messages, not_object, bad_max):
        assert response.status_code == 400
        assert isinstance(response.json()["error"], str)


def test_no_models_loaded() -> None:
    with practice(no_models_loaded=True) as url:
        chat = httpx.post(url + CHAT, json=body(stream=True))
        assert httpx.get(url + "/v1/models").json() == {"object": "list", "data": []}
        v0 = httpx.get(url + "/api/v0/models").json()
        v1 = httpx.get(url + "/api/v1/models").json()
    assert chat.status_code == 404
    assert chat.json() == {
        "error": {
            "message": "No models loaded. Please load a model in the developer page or use "
            "the `lms load` command.",
            "type": "invalid_request_error",
            "param": "model",
            "code": None,
        }
    }
    assert {m["state"] for m in v0["data"]} == {"not-loaded"}
    assert all(m["loaded_instances"] == [] for m in v1["models"])


# -- streaming and not ------------------------------------------------------------------------


def test_stream_without_usage() -> None:
    with practice() as url:
        response = httpx.post(url + CHAT, json=body(stream=True))
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = events(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    *tokens, final = chunks
    assert len(tokens) >= 30
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    for c in tokens:
        assert c["object"] == "chat.completion.chunk"
        assert c["model"] == c["system_fingerprint"] == "practice-fast"
        (choice,) = c["choices"]
        assert choice["delta"]["role"] == "assistant"
        assert set(choice["delta"]) == {"role", "content"}
        assert choice["finish_reason"] is None and choice["logprobs"] is None
    assert final["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    ]
    assert "usage" not in final


def test_stream_with_usage_and_max_tokens() -> None:
    options = {"stream": True, "stream_options": {"include_usage": True}}
    with practice() as url:
        response = httpx.post(url + CHAT, json=body(max_tokens=7, **options))
        other = httpx.post(url + CHAT, json=body(max_completion_tokens=7, **options))
    payloads = events(response.text)
    assert payloads[-1] == "[DONE]"
    *tokens, final, usage = [json.loads(p) for p in payloads[:-1]]
    assert len(tokens) == 7
    assert final["choices"][0]["finish_reason"] == "length"
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 7
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 7
    assert other.text.count('"content"') == 7


def test_same_prompt_same_answer_streamed_or_not() -> None:
    with practice() as url:
        streamed = events(httpx.post(url + CHAT, json=body(stream=True, seed=3)).text)
        whole = httpx.post(url + CHAT, json=body(seed=3)).json()
        again = httpx.post(url + CHAT, json=body(seed=3)).json()
    text = "".join(json.loads(p)["choices"][0]["delta"].get("content", "") for p in streamed[:-1])
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": text}
    assert again["choices"][0]["message"]["content"] == text
    assert whole["object"] == "chat.completion"
    assert whole["stats"] == {} and whole["system_fingerprint"] == "practice-fast"
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert whole["usage"]["completion_tokens"] == len(streamed) - 2


def test_content_as_text_parts() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is a queue?"}]}]
    with practice() as url:
        answer = httpx.post(url + CHAT, json={"model": "practice-fast", "messages": parts}).json()
    assert "queue" in answer["choices"][0]["message"]["content"].lower()


def test_thinker_reasons_first() -> None:
    with practice() as url:
        streamed = events(httpx.post(url + CHAT, json=body("practice-thinker", stream=True)).text)
        whole = httpx.post(url + CHAT, json=body("practice-thinker")).json()
    deltas = [json.loads(p)["choices"][0]["delta"] for p in streamed[:-2]]
    kinds = ["reasoning_content" if "reasoning_content" in d else "content" for d in deltas]
    first_answer = kinds.index("content")
    assert first_answer > 0 and set(kinds[:first_answer]) == {"reasoning_content"}
    assert set(kinds[first_answer:]) == {"content"}
    message = whole["choices"][0]["message"]
    assert message["reasoning_content"] == "".join(
        d["reasoning_content"] for d in deltas[:first_answer]
    )
    assert message["content"] == "".join(d["content"] for d in deltas[first_answer:])


@pytest.mark.anyio
async def test_the_openai_client() -> None:
    with practice() as url:
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
            models = [m.id async for m in client.models.list()]
            stream = await client.chat.completions.create(
                model="practice-small",
                messages=[{"role": "user", "content": "What is a queue?"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
            whole = await client.chat.completions.create(
                model="practice-small", messages=[{"role": "user", "content": "What is a queue?"}]
            )
            thinker = await client.chat.completions.create(
                model="practice-thinker", messages=[{"role": "user", "content": "Hi"}]
            )
    assert models == [*MODELS, "practice-embed"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert whole.choices[0].message.content == text
    assert whole.usage is not None and whole.usage.completion_tokens == len(chunks) - 2
    extra = thinker.choices[0].message.model_extra or {}
    assert extra["reasoning_content"].startswith("Okay, the user asks about")


# -- slots ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_waiters_get_slots_first_come_first_served() -> None:
    slots = Slots(["m"], parallel=1)
    first = await slots.acquire("m")
    order: list[int] = []

    async def wait(i: int) -> None:
        lease = await slots.acquire("m")
        order.append(i)
        lease.ended_by_server = True
        lease.release()

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(wait, i)
            await wait_all_tasks_blocked()  # i is in line before i + 1 starts
        assert slots.stats.total.waiting == 4
        first.release()
    assert order == [0, 1, 2, 3]
    assert slots.stats.as_dict()["served"] == 4
    assert slots.stats.as_dict()["disconnects"] == 1  # `first` never said it was served


@pytest.mark.anyio
async def test_parallel_slots_are_never_exceeded() -> None:
    # Every answer stalls after its first token and so holds its slot until its client hangs
    # up: which request runs when is decided by the test, not by timing.
    with practice(parallel=2, stall_after_tokens=1) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            got_token, next_in_line = anyio.create_memory_object_stream[anyio.Event](6)
            async with got_token, next_in_line:

                async def ask() -> None:
                    async with client.stream("POST", CHAT, json=body(stream=True)) as response:
                        lines = await first_token(response)
                        hang_up = anyio.Event()
                        await got_token.send(hang_up)
                        await hang_up.wait()  # leaving the block closes the connection
                        del lines

                async with anyio.create_task_group() as tg:
                    for _ in range(6):
                        tg.start_soon(ask)
                    stats = await stats_when(client, lambda s: s["requests"] == 6)
                    assert stats["active"] <= 2 and stats["waiting"] >= 4
                    waiting_seen = []
                    for _ in range(6):
                        hang_up = await next_in_line.receive()
                        stats = (await client.get("/practice/stats")).json()
                        assert stats["active"] <= 2
                        waiting_seen.append(stats["waiting"])
                        hang_up.set()
            stats = await stats_when(client, lambda s: s["disconnects"] == 6)
    assert max(waiting_seen) > 0
    assert stats["peak_active"] == 2
    assert stats["active"] == stats["waiting"] == 0
    assert stats["per_model"]["practice-fast"]["peak_active"] == 2


@pytest.mark.anyio
async def test_all_answers_complete_within_the_slots() -> None:
    with practice(parallel=2) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(partial(client.post, CHAT, json=body(stream=True, seed=i)))
            # The server frees a slot just after the last byte went out: poll, do not race.
            stats = await stats_when(client, lambda s: s["served"] == 6)
    assert stats["served"] == stats["requests"] == 6
    assert 1 <= stats["peak_active"] <= 2
    assert stats["active"] == stats["waiting"] == stats["disconnects"] == 0


@pytest.mark.anyio
async def test_hanging_up_while_generating_frees_the_slot() -> None:
    # One token a second: the answer is still being written when the client leaves.
    with practice(tokens_per_second=1) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            async with client.stream("POST", CHAT, json=body(stream=True)) as response:
                lines = await first_token(response)
                assert (await client.get("/practice/stats")).json()["active"] == 1
                del lines
            stats = await stats_when(client, lambda s: s["active"] == 0)
    assert stats["disconnects"] == 1 and stats["served"] == 0


@pytest.mark.anyio
async def test_hanging_up_while_waiting_or_not_streaming_frees_the_slot() -> None:
    with practice(parallel=1, tokens_per_second=1) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            # A non-streaming answer at one token a second holds the only slot…
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(client.post, CHAT, json=body()))
                await stats_when(client, lambda s: s["active"] == 1)
                # …so this one waits, and gives up (a client timeout closes the connection).
                with pytest.raises(httpx.ReadTimeout):
                    await client.post(
                        CHAT, json=body(stream=True), timeout=httpx.Timeout(30, read=0.2)
                    )
                stats = await stats_when(client, lambda s: s["waiting"] == 0)
                assert stats["disconnects"] == 1 and stats["active"] == 1
                tg.cancel_scope.cancel()  # hang up on the non-streaming one too
            stats = await stats_when(client, lambda s: s["active"] == 0)
    assert stats["disconnects"] == 2 and stats["served"] == 0 and stats["requests"] == 2


# -- faults -----------------------------------------------------------------------------------


async def first_lines(client: httpx.AsyncClient, lines: list[str], **extra: Any) -> None:
    """Stream an answer into `lines` (payloads only), however the stream ends."""
    async with client.stream("POST", CHAT, json=body(stream=True, **extra)) as response:
        async for line in response.aiter_lines():
            if line:
                lines.append(line.removeprefix("data: "))


@pytest.mark.anyio
async def test_fail_fault() -> None:
    with practice(fail_after_tokens=3) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            lines: list[str] = []
            await first_lines(client, lines)
            whole = await client.post(CHAT, json=body())
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as oai:
            stream = await oai.chat.completions.create(
                model="practice-fast", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            with pytest.raises(openai.APIError, match="Model crashed"):
                async for _ in stream:
                    pass
    assert len(lines) == 4
    assert json.loads(lines[-1]) == {
        "error": {
            "message": "Model crashed (practice fault: fail_after_tokens)",
            "type": "server_error",
        }
    }
    assert whole.status_code == 500 and json.loads(lines[-1]) == whole.json()


@pytest.mark.anyio
async def test_stall_fault() -> None:
    with practice(stall_after_tokens=2) as url:
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30, read=0.2)) as client:
            lines: list[str] = []
            with pytest.raises(httpx.ReadTimeout):
                await first_lines(client, lines)
            assert len(lines) == 2
            stats = await stats_when(client, lambda s: s["active"] == 0)
    assert stats["disconnects"] == 1


@pytest.mark.anyio
async def test_drop_fault() -> None:
    with practice(drop_after_tokens=2) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            lines: list[str] = []
            # The server closes the socket in the middle of the chunked body: httpx reports
            # "peer closed connection without sending complete message body (incomplete
            # chunked read)" as a RemoteProtocolError.
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
                await first_lines(client, lines)
            stats = (await client.get("/practice/stats")).json()
    assert len(lines) == 2
    assert stats["served"] == 1 and stats["active"] == 0


@pytest.mark.anyio
async def test_truncate_fault() -> None:
    with practice(truncate_after_tokens=4) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            lines: list[str] = []
            await first_lines(client, lines, stream_options={"include_usage": True})
    # A tidy end of the HTTP body, but no finish_reason, no usage and no [DONE].
    assert len(lines) == 4
    assert all(json.loads(x)["choices"][0]["finish_reason"] is None for x in lines)


@pytest.mark.anyio
async def test_faults_change_while_running() -> None:
    with practice() as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get("/practice/faults")).json()["truncate_after_tokens"] is None
            current = (
                await client.put("/practice/faults", json={"truncate_after_tokens": 1})
            ).json()
            assert current["truncate_after_tokens"] == 1
            lines: list[str] = []
            await first_lines(client, lines)
            assert len(lines) == 1
            await client.put("/practice/faults", json={"no_models_loaded": True})
            assert (await client.post(CHAT, json=body())).status_code == 404
            cleared = await client.put(
                "/practice/faults", json={"truncate_after_tokens": None, "no_models_loaded": False}
            )
            assert set(cleared.json().values()) == {None, False}
            assert (await client.post(CHAT, json=body())).status_code == 200
            bad = await client.put("/practice/faults", json={"explode_after_tokens": 1})
            assert bad.status_code == 400 and "explode" in bad.json()["error"]
            await stats_when(client, lambda s: s["active"] == 0)
            reset = (await client.post("/practice/stats/reset")).json()
    assert reset["served"] == reset["requests"] == reset["peak_active"] == 0
