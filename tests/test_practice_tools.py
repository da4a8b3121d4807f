"""Tool calls and JSON answers of the practice server, over HTTP, with the official client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import practice_server

CHAT = "/v1/chat/completions"


class Address(BaseModel):
    street: str
    city: str


class Order(BaseModel):
    customer: str
    items: list[str]
    address: Address
    note: str | None
    urgent: bool


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
            "additionalProperties": False,
        },
    },
}
ORDER = openai.pydantic_function_tool(Order, name="place_order")
TOOLS = [WEATHER, ORDER]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with practice_server() as server:
        yield server.url


@pytest.fixture
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as c:
        yield c


def schema_of(name: str) -> dict[str, Any]:
    (tool,) = [t for t in TOOLS if t["function"]["name"] == name]
    parameters: dict[str, Any] = tool["function"]["parameters"]
    return parameters


def test_a_mentioned_tool_is_called(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="practice-fast", messages=user("Use get_weather for Paris"), tools=TOOLS
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), schema_of("get_weather"))


def test_streamed_tool_calls_in_openai_shapes(url: str, client: openai.OpenAI) -> None:
    ask = user("get weather, then place order")
    raw = httpx.post(url + CHAT, json={"messages": ask, "tools": TOOLS, "stream": True}).text
    chunks = [json.loads(line[6:]) for line in raw.splitlines() if line[6:].startswith("{")]
    parts = [p for c in chunks for p in (c["choices"][0]["delta"].get("tool_calls") or [])]
    for index, name in enumerate(["get_weather", "place_order"]):
        mine = [p for p in parts if p["index"] == index]
        first, *rest = mine
        assert first["type"] == "function" and first["function"]["name"] == name
        assert first["id"].startswith("call_")
        assert len(rest) >= 2 and all(set(p) == {"index", "function"} for p in rest)
        arguments = "".join(p["function"]["arguments"] for p in mine)
        jsonschema.validate(json.loads(arguments), schema_of(name))
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # The SDK assembles the same calls as the whole answer carries.
    whole = client.chat.completions.create(model="practice-fast", messages=ask, tools=TOOLS)
    calls = whole.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "place_order"]
    Order.model_validate_json(calls[1].function.arguments)


def test_parallel_tool_calls_false_calls_one(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="practice-fast",
        messages=user("get_weather and place_order"),
        tools=TOOLS,
        parallel_tool_calls=False,
    )
    assert len(answer.choices[0].message.tool_calls or []) == 1


@pytest.mark.parametrize(
    ("choice", "messages", "called"),
    [
        ("auto", user("Tell me a story"), []),
        ("none", user("Use get_weather"), []),
        ("required", user("Tell me a story"), ["get_weather"]),
        ({"type": "function", "function": {"name": "place_order"}}, user("Hi"), ["place_order"]),
        (
            "auto",
            [
                *user("Use get_weather"),
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
            [],
        ),
    ],
)
def test_the_tool_rule(
    client: openai.OpenAI, choice: Any, messages: list[dict[str, Any]], called: list[str]
) -> None:
    answer = client.chat.completions.create(
        model="practice-fast", messages=messages, tools=TOOLS, tool_choice=choice
    )
    calls = answer.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == called
    if not called:
        assert answer.choices[0].message.content
        assert answer.choices[0].finish_reason == "stop"


def test_required_after_a_tool_calls_the_next_tool(client: openai.OpenAI) -> None:
    done = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [
        *user("What is the weather?"),
        {"role": "assistant", "content": None, "tool_calls": [done]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    answer = client.chat.completions.create(
        model="practice-fast", messages=messages, tools=TOOLS, tool_choice="required"
    )
    assert [c.function.name for c in answer.choices[0].message.tool_calls or []] == ["place_order"]


def test_parse_with_a_pydantic_model(client: openai.OpenAI) -> None:
    answer = client.chat.completions.parse(
        model="practice-fast", messages=user("An order for the Rabbit"), response_format=Order
    )
    order = answer.choices[0].message.parsed
    assert isinstance(order, Order) and order.customer


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_and_json_object(url: str, stream: bool) -> None:
    schema = Order.model_json_schema()
    fmt = {"type": "json_schema", "json_schema": {"name": "order", "schema": schema}}
    texts = []
    for response_format in (fmt, {"type": "json_object"}):
        body = {"messages": user("An order"), "response_format": response_format}
        reply = httpx.post(url + CHAT, json=body | {"stream": stream})
        if stream:
            chunks = [json.loads(x[6:]) for x in reply.text.splitlines() if x[6:7] == "{"]
            texts.append("".join(c["choices"][0]["delta"].get("content") or "" for c in chunks))
        else:
            texts.append(reply.json()["choices"][0]["message"]["content"])
    jsonschema.validate(json.loads(texts[0]), schema)
    assert isinstance(json.loads(texts[1]), dict)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"tools": {"name": "f"}}, "'tools' must be an array"),
        ({"tools": [{"type": "function"}]}, "needs a 'function'"),
        ({"tools": TOOLS, "tool_choice": "sometimes"}, "'tool_choice' must be"),
        ({"tools": TOOLS, "tool_choice": {"function": {"name": "nope"}}}, "not one of"),
        ({"response_format": {"type": "xml"}}, "'response_format.type'"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "JSON schema object"),
        ({"stop": [1]}, "'stop' must be"),
        ({"logprobs": True, "top_logprobs": 50}, "'top_logprobs'"),
    ],
)
def test_bad_tool_and_format_fields_are_named(url: str, extra: dict[str, Any], says: str) -> None:
    reply = httpx.post(url + CHAT, json={"messages": user("Hi"), **extra})
    assert reply.status_code == 400
    assert says in reply.json()["error"]
