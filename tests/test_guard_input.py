"""The smaller holes: a `user` cannot forge log lines, every content part counts against the
prompt limits, and a `Last-Event-ID` of any length is a named 422, never a 500."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest

from tests.conftest import practice_server, queue_server
from tlc_widgets.protocol import Message
from tlc_widgets.server.api_error import ApiError
from tlc_widgets.server.limits import (
    check_user,
    conversation_size,
    message_size,
    parse_last_event_id,
)
from tlc_widgets.server.logline import logfmt_value

pytestmark = pytest.mark.anyio

#: key=value, where a value is bare or quoted with backslash escapes
LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
FIELDS = "id state user model upstream waited ttft tokens tok_s outcome".split()

FORGED = "ada\nrequest id=forged state=done\r\u2028\x1b[2J"


async def test_a_user_with_line_breaks_is_refused_and_never_forges_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tlc.requests")
    with practice_server() as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            r = await client.post("/api/requests", json={"prompt": "hi", "user": FORGED})
            assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
            assert r.json()["error"]["param"] == "user"
            # The OpenAI door's `user` goes through the same admission: refused too.
            body = {
                "model": "practice-fast",
                "messages": [{"role": "user", "content": "hi"}],
                "user": FORGED,
            }
            r = await client.post("/v1/chat/completions", json=body)
            assert r.status_code in (400, 422), r.text
            assert r.json()["error"]["param"] == "user"
            ok = await client.post("/api/requests", json={"prompt": "hi", "user": "Zoë Å"})
            assert ok.status_code == 202
            async with client.stream("GET", ok.json()["events"]) as events:
                await events.aread()  # to its end: queued, running, done
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "tlc.requests"]
    assert len(lines) == 3  # only the accepted request's lines: queued, running, done
    for line in lines:
        assert not any(c in line for c in "\n\r\u2028\x1b")
        pairs = LOGFMT.findall(line.removeprefix("request "))
        assert [key for key, _ in pairs] == FIELDS, line  # every field once, in order
        assert dict(pairs)["user"] == logfmt_value("Zoë Å")


def test_logfmt_values_round_trip_through_a_logfmt_reader() -> None:
    for value in ("ada", "Ada Lovelace", 'say "hi"', "a=b", "back\\slash", FORGED, ""):
        quoted = logfmt_value(value)
        assert quoted.isprintable() and "\n" not in quoted
        if quoted.startswith('"'):
            assert quoted.endswith('"') and '"' not in quoted[1:-1].replace('\\"', "")
    with pytest.raises(ApiError) as refused:
        check_user("tab\there")
    assert refused.value.param == "user"
    check_user("Zoë Ångström")  # letters of every script are welcome


PARTS: list[tuple[str, Any]] = [
    (
        "an image data URI",
        {"type": "image_url", "image_url": {"url": "data:;base64," + "A" * 3000}},
    ),
    ("a misspelt type", {"type": "txet", "text": "x" * 3000}),
    ("extra fields in a text part", {"type": "text", "text": "hi", "padding": "x" * 3000}),
    ("a part with no type", {"text": "x" * 3000}),
]


@pytest.mark.parametrize(("what", "part"), PARTS, ids=[what for what, _ in PARTS])
async def test_every_content_part_counts_against_the_message_limit(what: str, part: Any) -> None:
    with practice_server() as practice:
        with queue_server(practice.url + "/v1", max_message_chars=1000) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                content = [{"type": "text", "text": "look"}, part]
                body = {"messages": [{"role": "user", "content": content}]}
                r = await client.post("/api/requests", json=body)
                assert r.status_code == 422, (what, r.text)
                error = r.json()["error"]
                assert error["code"] == "prompt_too_long"
                assert error["param"] == "messages.0.content"
                # A short plain-text message is still measured as before: by its text.
                r = await client.post("/api/requests", json={"prompt": "x" * 1000})
                assert r.status_code == 202


def test_message_size_counts_what_travels_and_plain_text_as_before() -> None:
    plain = Message(role="user", content=[{"type": "text", "text": "hello"}])
    assert message_size(plain) == 5 == len(plain.text())
    assert message_size(Message(role="user", content="hello")) == 5
    tool = Message(role="assistant", content=None, tool_calls=[{"id": "c", "args": "x" * 500}])
    assert message_size(tool) > 500  # extra fields of the message count too
    assert conversation_size([plain, tool]) == 5 + message_size(tool)


@pytest.mark.parametrize("value", ["9" * 4301, "9" * 65, "", " ", "-1", "²", "١٢", "1e3", "0x10"])
def test_odd_last_event_ids_are_a_named_invalid_request(value: str) -> None:
    with pytest.raises(ApiError) as refused:
        parse_last_event_id(value)
    assert (refused.value.status, refused.value.param) == (422, "Last-Event-ID")
    assert refused.value.code == "invalid_request"


def test_ordinary_last_event_ids_parse() -> None:
    assert [parse_last_event_id(v) for v in ("0", "07", " 42 ", "9" * 64)] == [0, 7, 42, 10**64 - 1]
