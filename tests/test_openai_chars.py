"""Every character arrives as it left: through the door, stream and whole, as directly.

The scripted upstream writes like LM Studio (non-ASCII raw in its JSON, U+2028, U+2029 and
U+0085 included) and cuts every frame in two network writes inside its first multi-byte
character. What a client reads through the queue must be the very text it reads directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tlc_widgets.serving import BackgroundServer
from tlc_widgets.sse import aiter_events

from .conftest import collect, queue_server
from .scripted_upstream import MODEL, Scripted

pytestmark = pytest.mark.anyio

TEXTS = [
    "line\u2028separator and paragraph\u2029separator",
    "next line\u0085(NEL) and a lone CR\rand CRLF\r\nend",
    "emoji 🦊🐦‍⬛ and flags 🇫🇷, combining é, CJK 狐狸, RTL שועל",
    "édgé: ü" * 7,  # multi-byte characters land on many piece and write boundaries
    "tabs\tand\x0bvertical\x0cform\x1cfeeds\x1d\x1e",
]


@pytest.fixture(scope="module")
def urls() -> Iterator[tuple[str, str]]:
    with BackgroundServer(Scripted().app) as upstream, queue_server(upstream.url + "/v1") as q:
        yield upstream.url, q.url


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": "echo:" + text}]


@pytest.mark.parametrize("text", TEXTS)
async def test_the_door_streams_and_answers_every_character(
    urls: tuple[str, str], text: str
) -> None:
    got = {}
    for name, base in zip(("direct", "queue"), urls, strict=True):
        async with openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as c:
            stream = await c.chat.completions.create(model=MODEL, messages=ask(text), stream=True)
            streamed = "".join([ch.choices[0].delta.content or "" async for ch in stream])
            whole = await c.chat.completions.create(model=MODEL, messages=ask(text))
        got[name] = (streamed, whole.choices[0].message.content)
    assert got["queue"] == got["direct"] == (text, text)
    assert got["queue"][0].encode() == text.encode()  # byte for byte


@pytest.mark.parametrize("text", TEXTS)
async def test_every_line_the_door_writes_is_whole_json_even_to_a_splitlines_reader(
    urls: tuple[str, str], text: str
) -> None:
    """A reader that splits like `str.splitlines` (httpx's `aiter_lines`) still gets whole
    events from the queue: it escapes the separators the upstream wrote raw."""
    import json

    _, queue = urls
    body = {"model": MODEL, "messages": ask(text), "stream": True}
    parts = []
    async with httpx.AsyncClient(base_url=queue) as client:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[6:])
                    parts += [c["delta"].get("content") or "" for c in chunk["choices"]]
    assert "".join(parts) == text


@pytest.mark.parametrize("text", TEXTS)
async def test_the_native_api_keeps_every_character(urls: tuple[str, str], text: str) -> None:
    _, queue = urls
    async with httpx.AsyncClient(base_url=queue) as client:
        r = await client.post("/api/requests", json={"model": MODEL, "messages": ask(text)})
        events = await collect(client, r.json()["id"])
        assert "".join(d.get("content") or "" for _, n, d in events if n == "delta") == text
        async with client.stream("GET", f"/api/requests/{r.json()['id']}/events") as s:
            names = [e.event async for e in aiter_events(s)]
        assert names[-1] == "done"
