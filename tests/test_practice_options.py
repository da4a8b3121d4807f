"""Sampling options of the practice server: logprobs, stop, seed, usage details."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import practice_server

CHAT = "/v1/chat/completions"
ASK = [{"role": "user", "content": "Tell me about the White Rabbit"}]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with practice_server() as server:
        yield server.url


def chat(url: str, **extra: Any) -> dict[str, Any]:
    reply = httpx.post(url + CHAT, json={"model": "practice-fast", "messages": ASK, **extra})
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def streamed(url: str, **extra: Any) -> list[dict[str, Any]]:
    body = {"model": "practice-fast", "messages": ASK, "stream": True, **extra}
    raw = httpx.post(url + CHAT, json=body).text
    return [json.loads(x[6:]) for x in raw.splitlines() if x[6:7] == "{"]


def test_logprobs_are_the_chains_probabilities(url: str) -> None:
    answer = chat(url, logprobs=True, top_logprobs=20, seed=4)
    content = answer["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in content) == answer["choices"][0]["message"]["content"]
    seen_in_top = 0
    for entry in content:
        assert entry["logprob"] <= 0.0 and entry["bytes"] == list(entry["token"].encode())
        top = [t["logprob"] for t in entry["top_logprobs"]]
        assert top == sorted(top, reverse=True)
        # A probability distribution: the alternatives never add up to more than 1.
        assert sum(math.exp(lp) for lp in top) <= 1.0 + 1e-9
        same = [t for t in entry["top_logprobs"] if t["token"] == entry["token"]]
        if same:
            seen_in_top += 1
            assert same[0]["logprob"] == pytest.approx(entry["logprob"])
    assert seen_in_top > len(content) / 2
    # Streamed, the same tokens carry the same numbers.
    chunks = streamed(url, logprobs=True, top_logprobs=20, seed=4)
    streamed_content = [e for c in chunks[:-1] for e in c["choices"][0]["logprobs"]["content"]]
    assert streamed_content == content


def test_without_logprobs_there_are_none(url: str) -> None:
    assert chat(url)["choices"][0]["logprobs"] is None


@pytest.mark.parametrize("as_list", [False, True])
def test_stop_sequences_cut_the_answer(url: str, as_list: bool) -> None:
    full = chat(url, seed=2)["choices"][0]["message"]["content"]
    stop = full.split()[6]  # a word in the middle, with its punctuation
    answer = chat(url, seed=2, stop=[stop, "never there"] if as_list else stop)
    text = answer["choices"][0]["message"]["content"]
    assert text == full[: full.index(stop)]
    assert answer["choices"][0]["finish_reason"] == "stop"
    chunks = streamed(url, seed=2, stop=stop)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == text


def test_seed_makes_the_answer_repeatable(url: str) -> None:
    first, again = chat(url, seed=11), chat(url, seed=11)
    other = chat(url, seed=12)
    text = first["choices"][0]["message"]["content"]
    assert again["choices"][0]["message"]["content"] == text
    assert other["choices"][0]["message"]["content"] != text


def test_usage_details_and_fingerprint(url: str) -> None:
    with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
        answer = client.chat.completions.create(
            model="practice-thinker", messages=ASK, max_tokens=50
        )
    usage = answer.usage
    assert usage is not None and usage.completion_tokens == 50
    assert usage.completion_tokens_details is not None
    reasoning = usage.completion_tokens_details.reasoning_tokens
    assert reasoning is not None and 0 < reasoning <= 50
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert answer.system_fingerprint == "practice-thinker"


def test_line_separators_are_escaped_in_events() -> None:
    from tlc_widgets.practice.wire import sse

    raw = sse({"content": "a\u2028b\u2029c\x85d\r\ne"}, event="message.delta")
    assert raw.count(b"\n") == 3 and raw.endswith(b"\n\n")
    assert "\u2028".encode() not in raw and "\x85".encode() not in raw
    data = raw.decode().split("data: ", 1)[1]
    assert json.loads(data) == {"content": "a\u2028b\u2029c\x85d\r\ne"}
