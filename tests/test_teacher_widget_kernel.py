"""`TeacherPanel` in a real Jupyter kernel against a real queue server with keys: a teacher's
kernel sees the class (over the comm, as a frontend would) and steers it with messages sent
the way JupyterLab 4.6 sends them (over a subshell); a student's kernel gets a sentence.

The identity comes from the kernel's environment, as in a notebook: `TLC_SERVER_URL` and
`TLC_API_KEY` (tests/class_keys.py). Every wait is a bounded poll of the kernel's state.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.class_keys import ADA, ADA_KEY, BOB, KEYS, TINA_KEY, bob_holds_ada_waits
from tests.conftest import practice_server, queue_server
from tests.test_widgets_kernel import Kernel
from tlc_widgets.serving import BackgroundServer

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(240)]


@pytest.fixture
def servers() -> Iterator[tuple[BackgroundServer, BackgroundServer]]:
    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", keys=KEYS) as queue:
            yield practice, queue


def kernel_as(key: str, url: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Kernel:
    """A kernel whose environment says who it is, like a notebook's."""
    with monkeypatch.context() as env:
        env.setenv("TLC_SERVER_URL", url)
        env.setenv("TLC_API_KEY", key)
        return Kernel(cwd)


def hold_and_wait(queue_url: str, practice_url: str) -> tuple[str, str]:
    """bob's request takes the only slot and keeps it; ada's then waits. (holder, waiting)"""
    with httpx.Client(base_url=queue_url, timeout=30) as http:
        return bob_holds_ada_waits(http, practice_url, "a task?")


def states(kernel: Kernel, comm_id: str) -> list[dict[str, Any]]:
    """The trait updates the kernel sent to the frontend for this widget."""
    return [
        m["content"]["data"]["state"]
        for m in kernel.comm_msgs(comm_id)
        if m["content"]["data"].get("method") == "update"
    ]


def test_a_teachers_kernel_sees_the_class_and_steers_it_over_the_comm(
    servers: tuple[BackgroundServer, BackgroundServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    practice, queue = servers
    holder, waiting = hold_and_wait(queue.url, practice.url)
    k = kernel_as(TINA_KEY, queue.url, tmp_path, monkeypatch)
    try:
        k.run("from tlc_widgets import TeacherPanel\npanel = TeacherPanel(interval_s=0.2)")
        comm_id = k.value("panel.model_id")
        live = k.poll("panel.live", lambda v: len(v.get("waiting", [])) == 1, "the live view")
        assert [r["user"] for r in live["running"]] == ["bob"]
        assert live["waiting"][0]["id"] == waiting and live["waiting"][0]["user"] == "ada"
        # What a frontend receives: the same view, as trait updates on the widget's comm.
        sent = [s["live"] for s in states(k, comm_id) if "live" in s]
        assert any(w["id"] == waiting for s in sent for w in s.get("waiting", []))
        updates = states(k, comm_id)
        size = sum(len(json.dumps(s)) for s in updates)
        print(
            f"\nwire: {len(updates)} trait updates, {size / len(updates):.0f} bytes each on average"
        )

        sub = k.create_subshell()

        def click(action: dict[str, Any]) -> None:
            k.comm_send(comm_id, {"method": "custom", "content": action}, sub)

        message = "Chat is paused for the quiz until 10:30"
        click({"k": "pause", "message": message})
        k.poll("panel.klass.get('mode')", lambda m: m == "paused", "the pause")
        refused = httpx.post(f"{queue.url}/api/requests", headers=ADA, json={"prompt": "hi"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (423, "class_paused")
        assert message in refused.json()["error"]["message"]

        click({"k": "cancel", "id": waiting})
        k.poll("panel.notice.get('text')", lambda t: t == "Request cancelled.", "the cancel")
        status = httpx.get(f"{queue.url}/api/requests/{waiting}", headers=ADA).json()
        assert (status["outcome"]["event"], status["outcome"]["by"]) == ("cancelled", "teacher")

        click({"k": "read", "user": "ada"})
        reader = k.poll("panel.reader", lambda r: r.get("user") == "ada", "ada's conversations")
        assert "a task?" in [m["content"] for r in reader["requests"] for m in r["messages"]]

        click({"k": "export", "format": "csv", "since": None})
        path = k.poll("panel.notice.get('path')", bool, "the export")
        exported = Path(path)
        assert exported.parent == tmp_path  # the kernel's folder: beside the notebook
        rows = list(csv.DictReader(io.StringIO(exported.read_text("utf-8"))))
        assert "a task?" in [r["prompt"] for r in rows]

        click({"k": "resume"})
        k.poll("panel.klass.get('mode')", lambda m: m == "open", "the resume")
        k.run("panel.close()")
        k.poll("len(panel._tasks.running)", lambda n: n == 0, "polling to stop")
    finally:
        k.shutdown()
        httpx.delete(f"{queue.url}/api/requests/{holder}", headers=BOB)


def test_a_students_kernel_gets_a_sentence_not_a_traceback(
    servers: tuple[BackgroundServer, BackgroundServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, queue = servers
    k = kernel_as(ADA_KEY, queue.url, tmp_path, monkeypatch)
    try:
        # The cell itself does not raise (Kernel.run fails on an error in the cell).
        k.run("from tlc_widgets import TeacherPanel\npanel = TeacherPanel(interval_s=0.2)")
        comm_id = k.value("panel.model_id")
        error = k.poll("panel.error", lambda e: "403" in e, "the refusal")
        assert error.startswith("The teacher's view is for teachers and admins")
        assert "ada, a student" in error
        assert k.value("panel.denied") is True
        sent = [s for s in states(k, comm_id) if "error" in s]
        assert sent and "Traceback" not in str(sent)
        assert not any(s.get("live") or s.get("students") for s in states(k, comm_id))
        k.run("panel.close()")
    finally:
        k.shutdown()
