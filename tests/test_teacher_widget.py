"""`TeacherPanel` without a kernel or a browser: the widget on this test's loop, against a
real queue server with the class's keys (tests/class_keys.py). The view's messages go in by
the same handler the comm calls; the kernel and the browser have their own tests
(test_teacher_widget_kernel.py, test_teacher_widget_browser.py)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tlc_widgets.client.teacher import ClassClient, export_name
from tlc_widgets.serving import BackgroundServer
from tlc_widgets.widgets.teacher import TeacherPanel
from tlc_widgets.widgets.teacher_sync import check_action, unique_path

from .class_keys import ADA, ADA_KEY, BOB, KEYS, TINA_KEY
from .conftest import collect, hold_slot, practice_server, queue_server, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def servers() -> Iterator[tuple[BackgroundServer, BackgroundServer]]:
    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", keys=KEYS, budget_prompts_per_day=20) as queue:
            yield practice, queue


async def _until(panel: TeacherPanel, check: Any, what: str) -> None:
    async def ok() -> bool:
        return bool(check(panel))

    await wait_until(ok, what)


def test_actions_are_checked_before_anything_is_sent(tmp_path: Path) -> None:
    assert check_action({"k": "pause", "message": "quiz"}) is None
    assert check_action({"k": "budget", "prompts": 20, "tokens": 0, "user": None}) is None
    assert check_action({"k": "budget", "prompts": -1, "tokens": 0}) == (
        "Budgets are whole numbers of 0 or more (0: no limit)."
    )
    assert check_action({"k": "budget", "prompts": True, "tokens": 0}) is not None  # not a bool
    assert check_action({"k": "read"}) == "The action 'read' needs a text 'user'."
    assert check_action({"k": "export", "format": "xlsx"}) == "Export as 'jsonl' or 'csv'."
    assert check_action({"k": "drop_tables"}) == (
        "The teacher's view does not know the action 'drop_tables'."
    )
    (tmp_path / "tlc-class-2026-11-29.csv").write_text("")
    (tmp_path / "tlc-class-2026-11-29-2.csv").write_text("")
    assert unique_path(tmp_path, "tlc-class-2026-11-29.csv").name == "tlc-class-2026-11-29-3.csv"
    assert export_name("jsonl", day="2026-11-29") == "tlc-class-2026-11-29.jsonl"


def test_a_look_that_answers_late_does_not_undo_a_newer_one(tmp_path: Path) -> None:
    panel = TeacherPanel(url="http://127.0.0.1:9", folder=tmp_path)  # no loop: no polling
    sync = panel.sync
    sync._started = 2  # the timer's look (1) and an action's (2) are both out
    assert sync._latest(2) is True  # the action's answers first and is shown
    assert sync._latest(1) is False  # the timer's, older, is dropped
    assert sync._latest(3) is True
    panel.close()


async def test_the_teacher_sees_the_class_and_steers_it(
    servers: tuple[BackgroundServer, BackgroundServer], tmp_path: Path
) -> None:
    practice, queue = servers
    async with httpx.AsyncClient(base_url=queue.url, headers=ADA) as ada:
        first = (await ada.post("/api/requests", json={"prompt": "What is a coroutine?"})).json()
        await collect(ada, first["id"])
        async with httpx.AsyncClient(base_url=queue.url, headers=BOB) as bob:
            holder = await hold_slot(bob, practice.url)
        waiting = (await ada.post("/api/requests", json={"prompt": "and a task?"})).json()["id"]

        client = ClassClient(queue.url, api_key=TINA_KEY)
        panel = TeacherPanel(client, interval_s=0.05, folder=tmp_path)
        try:
            await _until(panel, lambda p: len(p.live.get("waiting", [])) == 1, "the live view")
            assert [r["user"] for r in panel.live["running"]] == ["bob"]
            assert panel.live["waiting"][0]["id"] == waiting
            await _until(panel, lambda p: len(p.students.get("students", [])) == 2, "students")
            row = panel.students["students"][0]
            assert (row["user"], row["prompts"], row["budget"]["text"]) == (
                "ada",
                2,
                "18 of 20 prompts left today",
            )
            assert (panel.error, panel.denied, panel.klass["mode"]) == ("", False, "open")
            await _until(panel, lambda p: p.models, "the model list (for the class prompt)")
            assert {"practice-small", "practice-fast"} <= {m["id"] for m in panel.models}

            # A pause from the view (the handler the comm calls): students are refused.
            message = "Chat is paused for the quiz until 10:30"
            panel._on_view_message(panel, {"k": "pause", "message": message}, [])
            await _until(panel, lambda p: p.klass.get("mode") == "paused", "the pause")
            refused = await ada.post("/api/requests", json={"prompt": "one more?"})
            assert (refused.status_code, refused.json()["error"]["code"]) == (423, "class_paused")
            assert message in refused.json()["error"]["message"]
            assert panel.live["message"] == message and not panel.notice["error"]
            await panel.resume()
            assert panel.klass["mode"] == "open"

            await panel.set_budget(prompts=5, user="ada")
            assert panel.klass["budget"]["students"]["ada"]["prompts"] == 5
            assert panel.notice["text"] == "Daily budget set for ada."
            await panel.act({"k": "budget", "prompts": "lots", "tokens": 0})
            assert panel.notice == {
                "text": "Budgets are whole numbers of 0 or more (0: no limit).",
                "error": True,
                "path": "",
            }
            await panel.set_prompt("Answer in French.")
            assert panel.klass["prompts"] == {"*": "Answer in French."}

            await panel.start_session("Lab 3")  # budgets per session, then back to the day
            assert panel.klass["budget"]["session"]["label"] == "Lab 3"
            assert panel.students["session"]["label"] == "Lab 3"
            me = (await ada.get("/api/me")).json()["budget"]
            assert me["text"] == "5 of 5 prompts left this session"
            await panel.end_session()
            assert panel.klass["budget"]["session"] is None
            assert panel.notice["text"] == "Back to daily budgets."

            await panel.cancel(waiting)
            assert panel.notice["text"] == "Request cancelled."
            assert [r["id"] for r in panel.live["waiting"]] == []
            status = (await ada.get(f"/api/requests/{waiting}")).json()
            assert (status["outcome"]["event"], status["outcome"]["by"]) == ("cancelled", "teacher")

            await panel.read("ada")
            assert panel.reader["user"] == "ada"
            said = [m["content"] for r in panel.reader["requests"] for m in r["messages"]]
            assert "What is a coroutine?" in said

            await panel.export("csv")
            path = Path(panel.notice["path"])
            assert path.parent == tmp_path and path.name.startswith("tlc-class-")
            assert panel.notice["text"].endswith(f"to {path.name}:")
            rows = list(csv.DictReader(io.StringIO(await anyio.Path(path).read_text("utf-8"))))
            assert "What is a coroutine?" in [r["prompt"] for r in rows]
            await panel.export("jsonl", since="2000-01-01")
            lines = (await anyio.Path(panel.notice["path"]).read_text("utf-8")).splitlines()
            assert {json.loads(line)["user"] for line in lines} >= {"ada"}
            assert not [p async for p in anyio.Path(tmp_path).glob("*.part")]
            panel.sync.folder = tmp_path / "gone"  # a folder that cannot take the file
            await panel.export("csv")
            assert panel.notice == {
                "text": f"Could not write the export in {tmp_path / 'gone'}: "
                "No such file or directory.",
                "error": True,
                "path": "",
            }
            await panel.read("  ")
            assert panel.notice["text"] == "The action 'read' needs a user: it is empty."
        finally:
            panel.close()
            await panel._tasks.wait_others()
            await ada.delete(f"/api/requests/{holder}", headers=BOB)
        assert not panel._tasks.running  # polling stopped with the widget
        assert client._http.is_closed is False  # not the panel's client: the caller closes it
        await client.aclose()


async def test_polling_waits_while_no_view_is_on_screen(
    servers: tuple[BackgroundServer, BackgroundServer], tmp_path: Path
) -> None:
    _, queue = servers
    client = ClassClient(queue.url, api_key=TINA_KEY)
    panel = TeacherPanel(client, interval_s=0.05, folder=tmp_path)
    sync = panel.sync
    try:
        await _until(panel, lambda p: p.updated, "a first look (no frontend: it just polls)")
        assert sync.views is None and sync._watched.is_set()
        for on in (True, True, False):  # two views; one goes
            panel._on_view_message(panel, {"k": "view", "on": on}, [])
        assert (sync.views, sync._watched.is_set()) == (1, True)
        panel._on_view_message(panel, {"k": "view", "on": False}, [])  # the output cleared
        assert (sync.views, sync._watched.is_set()) == (0, False)
        await _until(panel, lambda p: p.sync._started == p.sync._shown, "the last look to end")
        seen = sync._started
        panel._on_view_message(panel, {"k": "view", "on": True}, [])  # shown again
        await _until(panel, lambda p: p.sync._started > seen, "polling to resume")
        await panel.act({"k": "view", "on": "yes"})
        assert panel.notice["text"] == "The action 'view' needs true or false in 'on'."
    finally:
        panel.close()
        await panel._tasks.wait_others()
        await client.aclose()


async def test_a_student_is_told_in_a_sentence_and_polling_waits(
    servers: tuple[BackgroundServer, BackgroundServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, queue = servers
    monkeypatch.setenv("TLC_API_KEY", ADA_KEY)  # the identity the chat panel would use
    panel = TeacherPanel(url=queue.url, interval_s=0.05, folder=tmp_path)
    try:
        await _until(panel, lambda p: p.denied, "the refusal")
        assert panel.error == (
            "The teacher's view is for teachers and admins: the queue server knows you as "
            "ada, a student (403 forbidden). Ask your teacher or admin if you need it."
        )
        assert panel.live == {} and panel.students == {}  # nothing of the class leaks
        await panel.refresh()  # asked again: still refused, still a sentence
        assert panel.denied and "ada, a student" in panel.error
        await panel.pause("sneaky")
        assert panel.notice["error"] and panel.notice["text"] == (
            "Your key does not allow that. Only a teacher or an admin may do this."
        )
    finally:
        panel.close()
        await panel._tasks.wait_others()


async def test_without_a_key_or_a_server_the_view_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TLC_API_KEY", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    with practice_server() as practice:
        with queue_server(practice.url + "/v1", keys=KEYS) as queue:
            panel = TeacherPanel(url=queue.url, interval_s=0.05, folder=tmp_path)
            try:
                await _until(panel, lambda p: p.denied, "the 401")
                assert panel.error.startswith("This queue server needs a valid key.")
                assert "TLC_API_KEY" in panel.error
            finally:
                panel.close()
                await panel._tasks.wait_others()
    # The server is gone now: a sentence, not a trace; the view keeps trying.
    panel = TeacherPanel(url=queue.url, interval_s=0.05, folder=tmp_path)
    try:
        await _until(panel, lambda p: "is not answering" in p.error, "the outage sentence")
        assert not panel.denied
        assert panel.error.startswith(f"The queue server at {queue.url} is not answering")
    finally:
        panel.close()
        await panel._tasks.wait_others()
    assert panel.client._http.is_closed  # the panel made it, the panel closed it
