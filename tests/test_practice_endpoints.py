"""The OpenAI endpoints beyond chat, with the official client: completions, embeddings,
responses, one model's card."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Iterator

import httpx
import jsonschema
import openai
import pytest

from tests.conftest import practice_server

PROMPT = "Once upon a time the White Rabbit"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with practice_server() as server:
        yield server.url


@pytest.fixture
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as c:
        yield c


# -- /v1/completions --------------------------------------------------------------------------


def test_completions_whole_and_streamed(client: openai.OpenAI) -> None:
    whole = client.completions.create(model="practice-fast", prompt=PROMPT, seed=1, logprobs=3)
    assert whole.object == "text_completion" and whole.id.startswith("cmpl-")
    choice = whole.choices[0]
    assert choice.text and choice.finish_reason == "stop"
    logprobs = choice.logprobs
    assert logprobs is not None and "".join(logprobs.tokens or []) == choice.text
    assert all(lp <= 0 for lp in logprobs.token_logprobs or [])
    assert all(len(top) <= 3 for top in logprobs.top_logprobs or [])
    assert logprobs.text_offset == [
        sum(len(t) for t in (logprobs.tokens or [])[:i]) for i in range(len(logprobs.tokens or []))
    ]
    assert whole.usage is not None and whole.usage.completion_tokens == len(logprobs.tokens or [])
    stream = client.completions.create(model="practice-fast", prompt=PROMPT, seed=1, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == choice.text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completions_options(client: openai.OpenAI) -> None:
    short = client.completions.create(model="practice-fast", prompt=PROMPT, max_tokens=5)
    assert short.choices[0].finish_reason == "length"
    assert len(short.choices[0].text.split()) == 5
    echo = client.completions.create(model="practice-fast", prompt=PROMPT, echo=True, max_tokens=2)
    assert echo.choices[0].text.startswith(PROMPT)
    many = client.completions.create(model="practice-fast", prompt=["a fox", "a wolf"])
    assert [c.index for c in many.choices] == [0, 1]


def test_completions_bad_prompt(url: str) -> None:
    reply = httpx.post(url + "/v1/completions", json={"model": "practice-fast", "prompt": 3})
    assert reply.status_code == 400 and "'prompt'" in reply.json()["error"]


# -- /v1/embeddings ---------------------------------------------------------------------------


def test_embeddings_float_and_base64(client: openai.OpenAI, url: str) -> None:
    texts = ["the White Rabbit", "rabbit white the", "a wolf in the forest"]
    # The openai client asks for base64 and decodes it itself.
    result = client.embeddings.create(model="practice-embed", input=texts)
    vectors = [d.embedding for d in result.data]
    assert [d.index for d in result.data] == [0, 1, 2] and result.model == "practice-embed"
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert sum(a * b for a, b in zip(vectors[0], vectors[1], strict=True)) == pytest.approx(1.0)
    assert sum(a * b for a, b in zip(vectors[0], vectors[2], strict=True)) < 0.9
    assert result.usage.prompt_tokens == 3 + 3 + 5
    raw = httpx.post(url + "/v1/embeddings", json={"input": texts[0], "dimensions": 8}).json()
    floats = raw["data"][0]["embedding"]
    assert len(floats) == 8
    packed = httpx.post(
        url + "/v1/embeddings",
        json={"input": texts[0], "dimensions": 8, "encoding_format": "base64"},
    ).json()["data"][0]["embedding"]
    unpacked = struct.unpack("<8f", base64.b64decode(packed))
    assert unpacked == pytest.approx(floats, abs=1e-6)


def test_embeddings_of_token_arrays(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="practice-embed", input=[[1, 2, 3], [1, 2, 3]])
    assert result.data[0].embedding == result.data[1].embedding


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"input": ""}, "empty string"),
        ({"input": 5}, "'input' must be"),
        ({"input": "x", "dimensions": 0}, "'dimensions'"),
        ({"input": "x", "encoding_format": "hex"}, "'encoding_format'"),
    ],
)
def test_bad_embedding_requests(url: str, body: dict[str, object], says: str) -> None:
    reply = httpx.post(url + "/v1/embeddings", json=body)
    assert reply.status_code == 400 and says in reply.json()["error"]


def test_models_of_the_wrong_kind_are_named(url: str) -> None:
    chat = httpx.post(
        url + "/v1/chat/completions",
        json={"model": "practice-embed", "messages": [{"role": "user", "content": "Hi"}]},
    )
    embed = httpx.post(url + "/v1/embeddings", json={"model": "practice-fast", "input": "x"})
    assert chat.status_code == embed.status_code == 400
    assert "embedding model" in chat.json()["error"]["message"]
    assert "does not make embeddings" in embed.json()["error"]["message"]


# -- /v1/responses ----------------------------------------------------------------------------


def test_responses_whole_and_streamed(client: openai.OpenAI) -> None:
    whole = client.responses.create(model="practice-fast", input=PROMPT, instructions="Be kind")
    assert whole.status == "completed" and whole.output_text
    assert whole.usage is not None and whole.usage.output_tokens > 0
    events = list(client.responses.create(model="practice-fast", input=PROMPT, stream=True))
    names = [e.type for e in events]
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(getattr(e, "delta", "") for e in events if e.type.endswith("text.delta"))
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == deltas


def test_responses_function_calls_and_json(client: openai.OpenAI) -> None:
    tool = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    called = client.responses.create(
        model="practice-fast",
        input="Use get_weather for Paris",
        tools=[tool],  # type: ignore[list-item]
    )
    (call,) = called.output
    assert call.type == "function_call" and call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), tool["parameters"])
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "pages": {"type": "integer"}},
        "required": ["title", "pages"],
        "additionalProperties": False,
    }
    answer = client.responses.create(
        model="practice-fast",
        input="A book",
        text={"format": {"type": "json_schema", "name": "book", "schema": schema}},
    )
    jsonschema.validate(json.loads(answer.output_text), schema)


# -- /v1/models/{id} --------------------------------------------------------------------------


def test_one_models_card(client: openai.OpenAI, url: str) -> None:
    card = client.models.retrieve("practice-small")
    assert card.id == "practice-small" and card.object == "model" and card.created > 0
    missing = httpx.get(url + "/v1/models/gpt-5")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
