"""The libraries people use, directly against an upstream and through the queue: same results.

Each case runs twice against the same upstream — once at its own URL, once through the
queue's OpenAI door — and the two results must be equal. Two upstreams:

- `scripted` (tests/scripted_upstream.py: LM Studio's chunk shapes, byte-for-byte
  deterministic): equal field for field, ids and timestamps included;
- `practice` (the practice model, a Markov chain, with a fixed seed): equal once the fields
  that are fresh on every request (ids, timestamps) are set aside, and LM Studio's own
  `stats` object of whole replies, which the queue does not make up (it streams from the
  upstream; docs/compatibility.md).

"Equal" means the door neither drops nor changes anything on the way, in either direction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import anyio
import openai
import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tlc_widgets.serving import BackgroundServer

from .conftest import practice_server, queue_server
from .scripted_upstream import EMBEDDER, Scripted

HI = [{"role": "user", "content": "Tell me a story."}]
USE_ADD = [{"role": "user", "content": "Use add on 2 and 3."}]
SEED = 7
#: Fields fresh on every request at the practice model (and LM Studio): set aside there.
FRESH = {"id", "created", "created_at", "completed_at", "item_id", "response_id", "stats"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]


class Answer(BaseModel):
    answer: str


class Weather(BaseModel):
    city: str
    degrees: int
    sunny: bool


@pytest.fixture(scope="module", params=["scripted", "practice"])
def urls(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        if request.param == "scripted":
            up = stack.enter_context(BackgroundServer(Scripted().app))
            names = {"model": "scripted-chat", "embedder": EMBEDDER}
        else:
            up = stack.enter_context(practice_server())
            names = {"model": "practice-fast", "embedder": "practice-embed"}
        queue = stack.enter_context(queue_server(up.url + "/v1"))
        yield {"leg": request.param, "direct": up.url + "/v1", "queue": queue.url + "/v1", **names}


def both(urls: dict[str, str], case: Callable[[str], Any]) -> Any:
    """Run `case` at both URLs; they must agree. Returns the (common) result."""
    direct, queued = case(urls["direct"]), case(urls["queue"])
    if urls["leg"] == "practice":
        direct, queued = _settled(direct), _settled(queued)
    assert queued == direct
    return queued


def _settled(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return type(value).model_validate(_settled(value.model_dump()))
    if isinstance(value, dict):
        return {k: _settled(v) for k, v in value.items() if k not in FRESH}
    if isinstance(value, list | tuple):
        return type(value)(_settled(v) for v in value)
    return value


def sync_client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0)


def is_scripted(urls: dict[str, str]) -> bool:
    return urls["leg"] == "scripted"


# ---------------------------------------------------------------------------- openai


def test_openai_sync_with_tools_seed_and_logprobs(urls: dict[str, str]) -> None:
    def case(base: str) -> dict[str, Any]:
        with sync_client(base) as client:
            return client.chat.completions.create(
                model=urls["model"],
                messages=USE_ADD,
                tools=TOOLS,
                tool_choice="auto",
                seed=SEED,
                parallel_tool_calls=False,
                top_p=0.9,
                stop=["\n\n"],
                logprobs=True,
            ).model_dump()

    whole = both(urls, case)
    call = whole["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "add"
    assert set(json.loads(call["function"]["arguments"])) == {"a", "b"}
    assert whole["choices"][0]["finish_reason"] == "tool_calls"
    assert whole["system_fingerprint"]
    assert "completion_tokens_details" in whole["usage"]


def test_openai_sync_stream_chunks_are_the_upstreams(urls: dict[str, str]) -> None:
    def case(base: str) -> list[dict[str, Any]]:
        with sync_client(base) as client:
            stream = client.chat.completions.create(
                model=urls["model"],
                messages=HI,
                stream=True,
                seed=SEED,
                logprobs=True,
                top_logprobs=1,
                stream_options={"include_usage": True},
            )
            return [chunk.model_dump() for chunk in stream]

    chunks = both(urls, case)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert any(c["choices"] and c["choices"][0]["logprobs"] for c in chunks)


def test_openai_stream_of_tool_calls(urls: dict[str, str]) -> None:
    def case(base: str) -> list[dict[str, Any]]:
        with sync_client(base) as client:
            stream = client.chat.completions.create(
                model=urls["model"], messages=USE_ADD, tools=TOOLS, stream=True, seed=SEED
            )
            return [chunk.model_dump() for chunk in stream]

    chunks = both(urls, case)
    pieces = [c["choices"][0]["delta"]["tool_calls"] for c in chunks if c["choices"]]
    arguments = "".join(p[0]["function"]["arguments"] or "" for p in pieces if p)
    assert set(json.loads(arguments)) == {"a", "b"}


def test_openai_async_whole_reply(urls: dict[str, str]) -> None:
    async def ask(base: str) -> dict[str, Any]:
        async with openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0) as client:
            reply = await client.chat.completions.create(
                model=urls["model"],
                messages=HI,
                seed=SEED,
                logprobs=True,
                presence_penalty=0.1,
                frequency_penalty=0.1,
                logit_bias={"1": 1},
                n=1,
                extra_body={"ttl": 60, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1},
            )
            return reply.model_dump()

    whole = both(urls, lambda base: anyio.run(ask, base))
    assert whole["choices"][0]["message"]["content"]
    assert whole["choices"][0]["logprobs"]["content"][0]["logprob"] <= 0


def test_openai_parse_with_a_pydantic_model(urls: dict[str, str]) -> None:
    def case(base: str) -> Weather | None:
        with sync_client(base) as client:
            reply = client.chat.completions.parse(
                model=urls["model"], messages=HI, response_format=Weather, seed=SEED
            )
            return reply.choices[0].message.parsed

    assert isinstance(both(urls, case), Weather)


def test_openai_completions_embeddings_and_responses(urls: dict[str, str]) -> None:
    model = urls["model"]

    def case(base: str) -> list[Any]:
        with sync_client(base) as client:
            stream = client.completions.create(model=model, prompt="x", stream=True, seed=SEED)
            events = client.responses.create(
                model=model, input="Hi", stream=True, extra_body={"seed": SEED}
            )
            return [
                client.completions.create(model=model, prompt="Once", seed=SEED).model_dump(),
                [c.model_dump() for c in stream],
                client.embeddings.create(model=urls["embedder"], input=["a", "b"]).model_dump(),
                client.responses.create(
                    model=model, input="Hi", extra_body={"seed": SEED}
                ).model_dump(),
                [e.model_dump() for e in events],
            ]

    completion, _, embedding, response, events = both(urls, case)
    assert completion["choices"][0]["text"]
    assert len(embedding["data"]) == 2
    assert response["output"][0]["content"][0]["text"]
    assert events[-1]["type"] == "response.completed"


# ---------------------------------------------------------------------------- langchain


def chat_model(urls: dict[str, str], base: str) -> ChatOpenAI:
    return ChatOpenAI(
        model=urls["model"],
        base_url=base,
        api_key="unused",  # type: ignore[arg-type]
        max_retries=0,
        seed=SEED,
    )


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def test_langchain_bind_tools(urls: dict[str, str]) -> None:
    def case(base: str) -> Any:
        return chat_model(urls, base).bind_tools([add]).invoke("Use add on 2 and 3.").tool_calls

    calls = both(urls, case)
    assert calls[0]["name"] == "add" and set(calls[0]["args"]) == {"a", "b"}


@pytest.mark.parametrize("method", ["function_calling", "json_schema", "json_mode"])
def test_langchain_structured_output(urls: dict[str, str], method: str) -> None:
    def case(base: str) -> Any:
        model = chat_model(urls, base).with_structured_output(Answer, method=method)  # type: ignore[arg-type]
        return model.invoke('Answer in JSON, as {"answer": "<your answer>"}: is the sky blue?')

    assert isinstance(both(urls, case), Answer)


def test_langchain_embeddings(urls: dict[str, str]) -> None:
    def case(base: str) -> list[list[float]]:
        embedder = OpenAIEmbeddings(
            model=urls["embedder"],
            base_url=base,
            api_key="unused",  # type: ignore[arg-type]
            check_embedding_ctx_length=False,
        )
        return embedder.embed_documents(["a fox", "a crow"])

    vectors = both(urls, case)
    assert len(vectors) == 2 and len(vectors[0]) > 0


# ---------------------------------------------------------------------------- pydantic-ai


def test_pydantic_ai_tool_and_typed_output(urls: dict[str, str]) -> None:
    async def ask(base: str) -> tuple[Weather, list[str]]:
        seen: list[str] = []
        async with openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0) as client:
            model = OpenAIChatModel(urls["model"], provider=OpenAIProvider(openai_client=client))
            agent = Agent(model, output_type=Weather)

            @agent.tool_plain
            def forecast(city: str) -> str:
                """The weather in a city."""
                seen.append(city)
                return "sunny, 3 degrees"

            result = await agent.run("What is the weather in Paris?", model_settings={"seed": SEED})
        return result.output, seen

    output, seen = both(urls, lambda base: anyio.run(ask, base))
    assert isinstance(output, Weather) and len(seen) == 1
