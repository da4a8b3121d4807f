"""The libraries people use, directly against an upstream and through the queue: same results.

Each case runs twice against the same upstream — once at its own URL, once through the
queue's OpenAI door — and the two results must be equal, field for field. The upstream is
the scripted one (tests/scripted_upstream.py: LM Studio's chunk shapes, deterministic), so
"equal" means the door neither drops nor changes anything on the way, in either direction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tlc_widgets.serving import BackgroundServer

from .conftest import queue_server
from .scripted_upstream import EMBEDDER, MODEL, Scripted

HI = [{"role": "user", "content": "Tell me a story."}]
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


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    with BackgroundServer(Scripted().app) as upstream:
        with queue_server(upstream.url + "/v1") as queue:
            yield {"direct": upstream.url + "/v1", "queue": queue.url + "/v1"}


def both(urls: dict[str, str], case: Callable[[str], Any]) -> Any:
    """Run `case` at both URLs; they must agree. Returns the (common) result."""
    direct, queued = case(urls["direct"]), case(urls["queue"])
    assert queued == direct
    return queued


def sync_client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0)


# ---------------------------------------------------------------------------- openai


def test_openai_sync_with_tools_seed_and_logprobs(urls: dict[str, str]) -> None:
    def case(base: str) -> dict[str, Any]:
        with sync_client(base) as client:
            return client.chat.completions.create(
                model=MODEL,
                messages=HI,
                tools=TOOLS,
                tool_choice="auto",
                seed=42,
                parallel_tool_calls=False,
                top_p=0.9,
                stop=["\n\n"],
                logprobs=True,
            ).model_dump()

    whole = both(urls, case)
    call = whole["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"a": 3, "b": 3}
    assert whole["choices"][0]["finish_reason"] == "tool_calls"
    assert whole["system_fingerprint"] and whole["id"].startswith("chatcmpl-")
    assert whole["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


def test_openai_sync_stream_chunks_are_the_upstreams(urls: dict[str, str]) -> None:
    def case(base: str) -> list[dict[str, Any]]:
        with sync_client(base) as client:
            stream = client.chat.completions.create(
                model=MODEL,
                messages=HI,
                stream=True,
                logprobs=True,
                top_logprobs=0,
                stream_options={"include_usage": True},
            )
            return [chunk.model_dump() for chunk in stream]

    chunks = both(urls, case)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all(c["choices"][0]["logprobs"] for c in chunks[1:-2])


def test_openai_stream_of_tool_calls(urls: dict[str, str]) -> None:
    def case(base: str) -> list[dict[str, Any]]:
        with sync_client(base) as client:
            stream = client.chat.completions.create(
                model=MODEL, messages=HI, tools=TOOLS, stream=True
            )
            return [chunk.model_dump() for chunk in stream]

    chunks = both(urls, case)
    pieces = [c["choices"][0]["delta"]["tool_calls"] for c in chunks if c["choices"]]
    arguments = "".join(p[0]["function"]["arguments"] or "" for p in pieces if p)
    assert json.loads(arguments) == {"a": 3, "b": 3}


def test_openai_async_whole_reply(urls: dict[str, str]) -> None:
    import anyio

    async def ask(base: str) -> dict[str, Any]:
        async with openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0) as client:
            reply = await client.chat.completions.create(
                model=MODEL,
                messages=HI,
                logprobs=True,
                presence_penalty=0.1,
                frequency_penalty=0.1,
                logit_bias={"1": 1},
                n=1,
                extra_body={"ttl": 60, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1},
            )
            return reply.model_dump()

    whole = both(urls, lambda base: anyio.run(ask, base))
    assert whole["choices"][0]["message"]["content"].startswith("Once upon")
    assert whole["choices"][0]["logprobs"]["content"][0]["logprob"] == -0.25


def test_openai_parse_with_a_pydantic_model(urls: dict[str, str]) -> None:
    def case(base: str) -> Weather | None:
        with sync_client(base) as client:
            reply = client.chat.completions.parse(model=MODEL, messages=HI, response_format=Weather)
            return reply.choices[0].message.parsed

    assert both(urls, case) == Weather(city="yes", degrees=3, sunny=True)


def test_openai_completions_embeddings_and_responses(urls: dict[str, str]) -> None:
    def case(base: str) -> list[Any]:
        with sync_client(base) as client:
            return [
                client.completions.create(model=MODEL, prompt="Once").model_dump(),
                [
                    c.model_dump()
                    for c in client.completions.create(model=MODEL, prompt="x", stream=True)
                ],
                client.embeddings.create(model=EMBEDDER, input=["a", "b"]).model_dump(),
                client.responses.create(model=MODEL, input="Hi").model_dump(),
                [
                    e.model_dump()
                    for e in client.responses.create(model=MODEL, input="Hi", stream=True)
                ],
            ]

    completion, _, embedding, response, events = both(urls, case)
    assert completion["choices"][0]["text"].startswith("Once upon")
    assert len(embedding["data"]) == 2
    assert response["output"][0]["content"][0]["text"].startswith("Once upon")
    assert events[-1]["type"] == "response.completed"


# ---------------------------------------------------------------------------- langchain


def chat_model(base: str) -> ChatOpenAI:
    return ChatOpenAI(model=MODEL, base_url=base, api_key="unused", max_retries=0, seed=7)  # type: ignore[arg-type]


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def test_langchain_bind_tools(urls: dict[str, str]) -> None:
    calls = both(urls, lambda base: chat_model(base).bind_tools([add]).invoke("2 + 3?").tool_calls)
    assert calls[0]["name"] == "add" and calls[0]["args"] == {"a": 3, "b": 3}


@pytest.mark.parametrize("method", ["function_calling", "json_schema", "json_mode"])
def test_langchain_structured_output(urls: dict[str, str], method: str) -> None:
    def case(base: str) -> Any:
        model = chat_model(base).with_structured_output(Answer, method=method)  # type: ignore[arg-type]
        return model.invoke("Answer in JSON with the key answer: is the sky blue?")

    assert both(urls, case) == Answer(answer="yes")


def test_langchain_embeddings(urls: dict[str, str]) -> None:
    def case(base: str) -> list[list[float]]:
        embedder = OpenAIEmbeddings(
            model=EMBEDDER,
            base_url=base,
            api_key="unused",
            check_embedding_ctx_length=False,  # type: ignore[arg-type]
        )
        return embedder.embed_documents(["a fox", "a crow"])

    vectors = both(urls, case)
    assert len(vectors) == 2 and len(vectors[0]) == 8


# ---------------------------------------------------------------------------- pydantic-ai


def test_pydantic_ai_tool_and_typed_output(urls: dict[str, str]) -> None:
    import anyio

    async def ask(base: str) -> tuple[Weather, list[str]]:
        seen: list[str] = []
        async with openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0) as client:
            model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))
            agent = Agent(model, output_type=Weather)

            @agent.tool_plain
            def forecast(city: str) -> str:
                """The weather in a city."""
                seen.append(city)
                return "sunny, 3 degrees"

            result = await agent.run("What is the weather in Paris?", model_settings={"seed": 7})
        return result.output, seen

    output, seen = both(urls, lambda base: anyio.run(ask, base))
    assert output == Weather(city="yes", degrees=3, sunny=True) and seen == ["yes"]
