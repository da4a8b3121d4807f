"""The OpenAI door: fields pass both ways, the rest of the surface, OpenAI's errors.

Against the scripted upstream (tests/scripted_upstream.py), which keeps every body it got:
what the queue sends must be what the client sent, minus only the fields the queue owns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tlc_widgets.serving import BackgroundServer, free_port

from .conftest import queue_server
from .scripted_upstream import EMBEDDER, MODEL, Scripted

pytestmark = pytest.mark.anyio

OWNED = {"model", "stream", "stream_options", "user"}


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[Scripted, str, str]]:
    upstream = Scripted()
    with BackgroundServer(upstream.app) as server, queue_server(server.url + "/v1") as queue:
        yield upstream, server.url, queue.url


def _without_owned(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in OWNED}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "chat/completions",
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_0",
                                "type": "function",
                                "function": {"name": "add", "arguments": "{}"},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_0", "content": "5"},
                ],
                "tools": [{"type": "function", "function": {"name": "add", "parameters": {}}}],
                "tool_choice": "none",
                "parallel_tool_calls": False,
                "response_format": {"type": "json_object"},
                "seed": 1,
                "stop": ["\n"],
                "logprobs": True,
                "top_logprobs": 2,
                "n": 1,
                "presence_penalty": 0.5,
                "frequency_penalty": -0.5,
                "top_p": 0.5,
                "logit_bias": {"42": -100},
                "reasoning_effort": "low",
                "max_completion_tokens": 20,
                "ttl": 300,
                "top_k": 40,
                "min_p": 0.05,
                "repeat_penalty": 1.1,
                "draft_model": "tiny",
                "a_field_nobody_knows": {"nested": [1, "é\u2028"]},
            },
        ),
        (
            "completions",
            {"prompt": ["Once", "upon"], "max_tokens": 5, "echo": False, "suffix": "!"},
        ),
        ("embeddings", {"input": "a fox", "encoding_format": "float", "dimensions": 8}),
        ("responses", {"input": "Hi", "instructions": "Be brief.", "max_output_tokens": 9}),
    ],
)
async def test_every_field_reaches_the_upstream_unchanged(
    scripted: tuple[Scripted, str, str], path: str, body: dict[str, Any]
) -> None:
    upstream, direct, queue = scripted
    model = EMBEDDER if path == "embeddings" else MODEL
    sent = {"model": model, "user": "ada", **body}
    got = []
    for base in (direct, queue):
        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.post(f"/v1/{path}", json=sent)
            assert r.status_code == 200, r.text
        endpoint, received = upstream.received[-1]
        assert endpoint == path
        got.append(received)
    assert _without_owned(got[1]) == _without_owned(got[0]) == _without_owned(sent)
    assert got[1]["model"] == model


async def test_whole_reply_keeps_the_upstreams_id_fingerprint_usage_and_logprobs(
    scripted: tuple[Scripted, str, str],
) -> None:
    _, direct, queue = scripted
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "logprobs": True}
    async with httpx.AsyncClient() as client:
        a = (await client.post(direct + "/v1/chat/completions", json=body)).json()
        b = (await client.post(queue + "/v1/chat/completions", json=body)).json()
    assert b == a  # assembled from the stream, it is what the upstream answers whole
    assert b["system_fingerprint"] and b["choices"][0]["logprobs"]["content"]


async def test_models_are_complete_and_one_can_be_asked_for(
    scripted: tuple[Scripted, str, str],
) -> None:
    _, _, queue = scripted
    async with httpx.AsyncClient(base_url=queue) as client:
        listed = (await client.get("/v1/models")).json()
        one = await client.get(f"/v1/models/{MODEL}")
        missing = await client.get("/v1/models/gpt-9")
    assert {m["id"] for m in listed["data"]} == {MODEL, EMBEDDER}
    for item in listed["data"]:
        # OpenAI's four fields, and LM Studio's `state` and the last load time (ignored by SDKs)
        assert set(item) == {"id", "object", "created", "owned_by", "state", "load_time_s"}
    assert one.json() == next(m for m in listed["data"] if m["id"] == MODEL)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


async def test_errors_are_in_openais_envelope_with_openais_statuses(
    scripted: tuple[Scripted, str, str],
) -> None:
    _, _, queue = scripted
    client = openai.AsyncOpenAI(base_url=queue + "/v1", api_key="x", max_retries=0)
    async with client, httpx.AsyncClient(base_url=queue) as raw:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model=MODEL, messages=[])
        assert bad.value.status_code == 400 and bad.value.param == "messages"  # type: ignore[attr-defined]
        for path, content in [
            ("/v1/chat/completions", b"{not json"),
            ("/v1/chat/completions", b"\xff\xfe"),
            ("/v1/embeddings", b'{"input": 3.5}'),
            ("/v1/responses", b'{"input": "x", "temperature": 9}'),
        ]:
            r = await raw.post(path, content=content, headers={"content-type": "application/json"})
            assert r.status_code == 400, (path, r.text)
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        for method, path in [("GET", "/v1/nothing"), ("POST", "/v1/audio/speech")]:
            r = await raw.request(method, path)
            assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("gpt-9")


async def test_models_say_503_when_no_upstream_answers() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    with queue_server(nowhere, connect_timeout_s=1) as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            r = await client.get("/v1/models")
    assert r.status_code == 503 and r.json()["error"]["code"] == "upstream_unavailable"
    assert r.json()["error"]["type"] == "server_error"
