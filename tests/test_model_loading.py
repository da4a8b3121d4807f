"""Models that load on first use, as a class meets them (the practice model emulates LM Studio
0.4's JIT loading, with progress on its native endpoint), and a second machine that dies."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import practice_server, queue_server
from tlc_widgets.protocol import TERMINAL
from tlc_widgets.sse import aiter_events

pytestmark = pytest.mark.anyio

MODEL = "practice-small"


async def _ask(client: httpx.AsyncClient, user: str, out: dict[str, list[Any]]) -> None:
    """One student's request in one round trip; `out[user]` gets (event, data) pairs."""
    body = {"prompt": "Tell me about the rabbit.", "model": MODEL, "max_tokens": 8, "user": user}
    headers = {"Accept": "text/event-stream"}
    async with client.stream("POST", "/api/requests", json=body, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        out[user] = [(e.event, e.json()) async for e in aiter_events(r)]


async def _class_asks(queue_url: str, students: int) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    async with httpx.AsyncClient(base_url=queue_url, timeout=60) as client:
        async with anyio.create_task_group() as tg:
            for n in range(students):
                tg.start_soon(_ask, client, f"student{n}", out)
    return out


async def test_ten_students_one_load_ten_progress_displays_ten_replies_in_fair_order() -> None:
    with practice_server(loaded_at_start=[], default_load_time_s=1.0, parallel=2) as practice:
        with queue_server(practice.url + "/v1") as queue:
            out = await _class_asks(queue.url, 10)
            async with httpx.AsyncClient() as client:
                loads = (await client.get(practice.url + "/practice/models")).json()[MODEL]
                listed = (await client.get(queue.url + "/api/models")).json()["models"]
                status = {
                    user: (await client.get(f"{queue.url}/api/requests/{events[0][1]['id']}"))
                    for user, events in out.items()
                }
    assert loads["loads"] == 1  # one load, not one per waiting student
    for events in out.values():
        progress = [data["progress"] for name, data in events if name == "loading"]
        assert progress, "every student saw the load"
        assert progress == sorted(progress) and progress[-1] <= 1
        assert [name for name, _ in events if name in TERMINAL] == ["done"]
    # Fair order: one request per student, so they start in the order they took in line.
    accepted = sorted(out, key=lambda user: out[user][0][1]["position"])
    started = sorted(out, key=lambda user: status[user].json()["dispatch_no"])
    assert started == accepted
    row = next(m for m in listed if m["id"] == MODEL)
    assert row["loaded"] is True and row["load_time_s"] and row["load_time_s"] > 0


async def test_a_load_failure_reaches_every_waiting_student_as_one_named_error() -> None:
    with practice_server(loaded_at_start=[], load_failure="out_of_memory") as practice:
        with queue_server(practice.url + "/v1") as queue:
            out = await _class_asks(queue.url, 10)
            async with httpx.AsyncClient() as client:
                loads = (await client.get(practice.url + "/practice/models")).json()[MODEL]
    endings = [[data for name, data in events if name in TERMINAL] for events in out.values()]
    assert all(len(e) == 1 for e in endings)
    codes = {e[0]["code"] for e in endings}
    messages = {e[0]["message"] for e in endings}
    assert codes == {"model_load_failed"} and len(messages) == 1
    assert "memory" in messages.pop()
    assert loads["loads"] <= 2  # not one per student: the first load, and perhaps a retry


async def test_a_machine_killed_mid_class_loses_nothing_accepted() -> None:
    with (
        practice_server(parallel=2, tokens_per_second=40) as first,
        practice_server(parallel=2, tokens_per_second=40) as second,
    ):
        with queue_server(first.url + "/v1", second.url + "/v1", connect_timeout_s=2) as queue:
            out: dict[str, list[Any]] = {}
            async with httpx.AsyncClient(base_url=queue.url, timeout=60) as client:
                async with anyio.create_task_group() as tg:
                    for n in range(12):
                        tg.start_soon(_ask, client, f"student{n}", out)

                    async def running_on_both() -> bool:
                        ups = (await client.get("/api/queue")).json()["upstreams"]
                        return all(u["busy"] > 0 for u in ups)

                    while not await running_on_both():  # noqa: ASYNC110 - another server's state
                        await anyio.sleep(0.02)
                    first.stop()  # one LM Studio machine dies mid-class
    endings = {
        user: [name for name, _ in events if name in TERMINAL] for user, events in out.items()
    }
    assert len(endings) == 12 and all(len(e) == 1 for e in endings.values())
    done = sum(e == ["done"] for e in endings.values())
    # At most the requests running on the dead machine end in an error; the rest are served.
    assert done >= 12 - 2


def test_tlc_models_load_warms_a_model_before_class(capsys: pytest.CaptureFixture[str]) -> None:
    from tlc_widgets.cli import main

    with practice_server(loaded_at_start=[], default_load_time_s=0.5) as practice:
        with queue_server(practice.url + "/v1") as queue:
            main(["models", "--server", queue.url])
            before = capsys.readouterr().out
            main(["models", "load", MODEL, "--ttl", "7200", "--server", queue.url])
            after = capsys.readouterr().out
            main(["models", "--server", queue.url])
            listed = capsys.readouterr().out
            seen = httpx.get(practice.url + "/practice/models").json()[MODEL]
    assert f"{MODEL}" in before and "loads on first use" in before
    assert f"{MODEL}: loaded" in after
    assert any(line.startswith(MODEL) and "loaded" in line for line in listed.splitlines())
    assert seen["loaded"] is True and seen["loads"] == 1


async def test_warm_models_are_loaded_ahead_and_slots_follow_a_reload() -> None:
    with practice_server(loaded_at_start=[], default_load_time_s=0.2, parallel=2) as practice:
        with queue_server(practice.url + "/v1", warm_models=[MODEL], refresh_s=0.1) as queue:
            async with httpx.AsyncClient() as client:

                async def slots() -> Any:
                    ups = (await client.get(queue.url + "/api/queue")).json()["upstreams"]
                    return ups[0]["slots"].get(MODEL) if isinstance(ups[0]["slots"], dict) else None

                # Nobody asked: the warm model is loaded at start (the class starts warm).
                while await slots() != 2:  # noqa: ASYNC110 - another server's state
                    await anyio.sleep(0.05)
                # The teacher reloads it in LM Studio with another `parallel`: no restart.
                r = await client.post(
                    practice.url + "/api/v1/models/load", json={"model": MODEL, "parallel": 3}
                )
                assert r.status_code == 200, r.text
                while await slots() != 3:  # noqa: ASYNC110 - another server's state
                    await anyio.sleep(0.05)
                loads = (await client.get(practice.url + "/practice/models")).json()[MODEL]
    assert loads["loaded"] is True


async def test_the_monitor_snapshot_shows_a_load_in_progress() -> None:
    with practice_server(loaded_at_start=[], default_load_time_s=3.0) as practice:
        with queue_server(practice.url + "/v1") as queue:
            async with httpx.AsyncClient(base_url=queue.url, timeout=30) as client:
                body = {"prompt": "Hi", "model": MODEL, "max_tokens": 2, "user": "ada"}
                request_id = (await client.post("/api/requests", json=body)).json()["id"]
                seen = None
                async with client.stream("GET", "/api/queue/events") as r:
                    async for event in aiter_events(r):
                        loading = event.json().get("loading", {})
                        if MODEL in loading:
                            seen = loading[MODEL]
                            break
                await client.delete(f"/api/requests/{request_id}")
    assert seen is not None and 0 <= seen <= 1
