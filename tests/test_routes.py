"""The route layer: every route documents its answer, and one-round-trip submit works."""

from __future__ import annotations

import httpx
import pytest

from tlc_widgets.config import Settings
from tlc_widgets.protocol import ACCEPTED, TERMINAL
from tlc_widgets.server import create_app
from tlc_widgets.serving import BackgroundServer
from tlc_widgets.sse import aiter_events

pytestmark = pytest.mark.anyio


def test_every_route_has_a_response_schema() -> None:
    """So `/docs` is the API's reference: no operation answers an undescribed body."""
    app = create_app(Settings(_env_file=None, upstreams=["http://127.0.0.1:9/v1"]))  # type: ignore[call-arg]
    spec = app.openapi()
    undocumented = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            ok = operation["responses"].get("200") or operation["responses"].get("202")
            content = (ok or {}).get("content", {})
            if not any(body.get("schema") for body in content.values()):
                undocumented.append(f"{method.upper()} {path}")
    assert undocumented == []
    assert len(spec["paths"]) >= 15  # the native API and the OpenAI door are all there


async def test_submit_answers_with_the_stream_in_one_round_trip(
    queue: BackgroundServer,
) -> None:
    async with (
        httpx.AsyncClient(base_url=queue.url, timeout=30) as client,
        client.stream(
            "POST",
            "/api/requests",
            json={"prompt": "Hello", "max_tokens": 5, "user": "ada"},
            headers={"Accept": "text/event-stream"},
        ) as response,
    ):
        assert response.status_code == 200
        events = [event async for event in aiter_events(response)]
    first, rest = events[0], events[1:]
    assert first.event == ACCEPTED and first.id == ""  # the acceptance is not in the log
    accepted = first.json()
    assert accepted["user"] == "ada" and accepted["position"] >= 1
    assert accepted["events"] == f"/api/requests/{accepted['id']}/events"
    assert [int(e.id) for e in rest] == list(range(1, len(rest) + 1))
    assert rest[0].event == "queued"
    assert [e.event for e in rest if e.event in TERMINAL] == ["done"]


async def test_a_refused_stream_submit_is_a_plain_json_error(queue: BackgroundServer) -> None:
    async with httpx.AsyncClient(base_url=queue.url) as client:
        r = await client.post(
            "/api/requests",
            json={"prompt": "Hello", "model": "no-such-model"},
            headers={"Accept": "text/event-stream"},
        )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"
