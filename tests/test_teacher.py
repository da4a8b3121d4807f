"""The teacher's API and page over HTTP, the class export (API and `tlc export`), history
retention, and `tlc lessons`."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tlc_widgets.cli import main as tlc
from tlc_widgets.server.history_rows import SCHEMA
from tlc_widgets.server.routes.teacher import router as class_router
from tlc_widgets.serving import BackgroundServer

from .class_keys import ADA, ADA_KEY, BOB, KEYS, ROOT, TINA, TINA_KEY
from .conftest import collect, hold_slot, practice_server, queue_server, wait_until

pytestmark = pytest.mark.anyio


#: Every teacher route, with a body where it takes one.
CLASS_ROUTES: list[tuple[str, str, dict[str, object] | None]] = [
    ("GET", "/api/class", None),
    ("POST", "/api/class/pause", {"message": "quiz"}),
    ("POST", "/api/class/resume", None),
    ("PUT", "/api/class/prompt", {"text": "Be kind.", "model": None}),
    ("PUT", "/api/class/budget", {"prompts": 0, "tokens": 0}),
    ("PUT", "/api/class/budget/bob", {"prompts": 5}),
    ("DELETE", "/api/class/budget/bob", None),
    ("POST", "/api/class/session", {"label": "Lab 3"}),
    ("DELETE", "/api/class/session", None),
    ("GET", "/api/class/live", None),
    ("GET", "/api/class/students", None),
    ("GET", "/api/class/students/bob/history", None),
    ("DELETE", "/api/class/requests/no-such-id", None),
    ("GET", "/api/class/export?format=jsonl", None),
    ("GET", "/api/class/export?format=csv", None),
]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[BackgroundServer, BackgroundServer, Path]]:
    history = tmp_path / "history.sqlite3"
    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", keys=KEYS, history_path=str(history)) as queue:
            yield practice, queue, history


async def test_students_get_403_on_every_teacher_route_and_teachers_and_admins_get_in(
    servers: tuple[BackgroundServer, BackgroundServer, Path],
) -> None:
    _, queue, _ = servers
    assert len(class_router.routes) == len(CLASS_ROUTES) - 1  # all tried (export: twice)
    for headers, allowed in ((ADA, False), (TINA, True), (ROOT, True)):
        async with httpx.AsyncClient(base_url=queue.url, headers=headers) as client:
            for method, path, body in CLASS_ROUTES:
                r = await client.request(method, path, json=body)
                if allowed:
                    expected = 404 if path.endswith("no-such-id") else 200
                    assert r.status_code == expected, (headers, method, path, r.text)
                else:
                    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), path
    async with httpx.AsyncClient(base_url=queue.url) as anonymous:
        assert (await anonymous.get("/api/class")).status_code == 401
        page = await anonymous.get("/teacher")  # the page itself needs no key; its calls do
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "teacher.js" in page.text
        script = await anonymous.get("/teacher/teacher.js")
        assert script.status_code == 200 and '"api/class/live"' in script.text  # relative
        assert (await anonymous.get("/teacher/login")).status_code == 401  # not an open path
        assert (await anonymous.get("/teacher/other.js")).status_code in (401, 422)
    async with httpx.AsyncClient(base_url=queue.url, headers=TINA) as tina:
        back = await tina.get("/teacher/login")  # on a Hub: after its login, back to the page
        assert (back.status_code, back.headers["location"]) == (303, "../teacher")


async def test_the_teacher_sees_who_waits_and_runs_reads_and_cancels_a_student(
    servers: tuple[BackgroundServer, BackgroundServer, Path],
) -> None:
    practice, queue, _ = servers
    async with (
        httpx.AsyncClient(base_url=queue.url, headers=ADA, timeout=30) as ada,
        httpx.AsyncClient(base_url=queue.url, headers=BOB, timeout=30) as bob,
        httpx.AsyncClient(base_url=queue.url, headers=TINA, timeout=30) as tina,
    ):
        first = (await ada.post("/api/requests", json={"prompt": "first", "max_tokens": 4})).json()
        assert (await collect(ada, first["id"]))[-1][1] == "done"
        holder = await hold_slot(bob, practice.url)
        waiting = (await ada.post("/api/requests", json={"prompt": "help me"})).json()["id"]

        live = (await tina.get("/api/class/live")).json()
        assert [(r["user"], r["id"]) for r in live["running"]] == [("bob", holder)]
        assert live["running"][0]["running_s"] >= 0
        assert [(r["user"], r["position"]) for r in live["waiting"]] == [("ada", 1)]
        assert live["waiting"][0]["running_s"] is None

        students = {
            s["user"]: s for s in (await tina.get("/api/class/students")).json()["students"]
        }
        assert (students["ada"]["prompts"], students["ada"]["live"]) == (2, 1)
        assert students["ada"]["tokens"] > 0 and students["ada"]["errors"] == 0
        assert (students["bob"]["prompts"], students["bob"]["live"]) == (1, 1)
        assert students["ada"]["role"] == "student" and students["ada"]["budget"]["text"]
        assert "tina" not in students  # only who sent something today
        mine = (await tina.post("/api/requests", json={"prompt": "t", "max_tokens": 2})).json()
        await tina.delete(f"/api/class/requests/{mine['id']}")
        students = {
            s["user"]: s for s in (await tina.get("/api/class/students")).json()["students"]
        }
        assert (students["tina"]["role"], students["tina"]["budget"]) == ("teacher", None)

        history = (await tina.get("/api/class/students/ada/history")).json()["requests"]
        assert [row["messages"][-1]["content"] for row in history] == ["help me", "first"]
        assert history[1]["text"] and history[1]["status"] == "done"

        r = await tina.delete(f"/api/class/requests/{waiting}")
        assert r.json()["cancelled"] is True
        assert (await collect(ada, waiting))[-1][1:] == ("cancelled", {"by": "teacher"})
        await tina.delete(f"/api/class/requests/{holder}")
        assert (await tina.get("/api/class/live")).json() == {
            "mode": "open",
            "message": "",
            "running": [],
            "waiting": [],
        }


async def test_the_class_history_exports_as_jsonl_and_csv_over_http_and_with_tlc_export(
    servers: tuple[BackgroundServer, BackgroundServer, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, queue, path = servers
    async with (
        httpx.AsyncClient(base_url=queue.url, headers=ADA, timeout=30) as ada,
        httpx.AsyncClient(base_url=queue.url, headers=BOB, timeout=30) as bob,
        httpx.AsyncClient(base_url=queue.url, headers=TINA, timeout=30) as tina,
    ):
        ids = []
        for client, prompt in ((ada, 'a, "quoted"\nprompt'), (bob, "bob's prompt")):
            r = await client.post("/api/requests", json={"prompt": prompt, "max_tokens": 4})
            ids.append(r.json()["id"])
            await collect(client, ids[-1])

        r = await tina.get("/api/class/export", params={"format": "jsonl"})
        assert r.headers["content-type"].startswith("application/x-ndjson")
        assert "attachment" in r.headers["content-disposition"]
        rows = [json.loads(line) for line in r.text.splitlines()]
        assert [(row["id"], row["user"], row["status"]) for row in rows] == [
            (ids[0], "ada", "done"),
            (ids[1], "bob", "done"),
        ]
        assert rows[0]["messages"] == [{"role": "user", "content": 'a, "quoted"\nprompt'}]
        assert rows[0]["text"] and rows[0]["timings"]["total_s"] is not None

        r = await tina.get("/api/class/export", params={"format": "csv"})
        assert r.headers["content-type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(r.text)))
        assert [(t["user"], t["prompt"]) for t in table] == [
            ("ada", 'a, "quoted"\nprompt'),
            ("bob", "bob's prompt"),
        ]
        assert table[0]["reply"] == rows[0]["text"] and table[0]["created"].endswith("Z")
        later = await tina.get("/api/class/export", params={"since": str(time.time() + 60)})
        assert later.text == ""
        bad = await tina.get("/api/class/export", params={"since": "last tuesday"})
        assert (bad.status_code, bad.json()["error"]["param"]) == (422, "since")

    # `tlc export` reads the same file (read-only) while the server runs.
    await wait_until(_async(lambda: _done_rows(path) == 2), "both rows to be saved")
    tlc(["export", "--format", "csv", "--history", str(path)])
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [t["id"] for t in table] == ids
    tlc(["export", "--history", str(path), "--since", "2000-01-01"])
    assert [json.loads(line)["user"] for line in capsys.readouterr().out.splitlines()] == [
        "ada",
        "bob",
    ]
    tlc(["export", "--history", str(path), "--since", str(time.time() + 60)])
    assert capsys.readouterr().out == ""


async def test_tlc_export_asks_a_running_server_as_the_teacher_and_a_student_is_told_no(
    servers: tuple[BackgroundServer, BackgroundServer, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, queue, _ = servers
    async with httpx.AsyncClient(base_url=queue.url, headers=ADA, timeout=30) as ada:
        r = await ada.post("/api/requests", json={"prompt": "for the export", "max_tokens": 4})
        await collect(ada, r.json()["id"])
    out = tmp_path / "class.csv"
    argv = ["export", "--server", queue.url, "--format", "csv", "-o", str(out)]
    monkeypatch.setenv("TLC_API_KEY", TINA_KEY)  # the teacher's key, as the client reads it
    await anyio.to_thread.run_sync(tlc, argv)  # a sync CLI: off this test's event loop
    table = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [(t["id"], t["user"]) for t in table] == [(r.json()["id"], "ada")]

    monkeypatch.setenv("TLC_API_KEY", ADA_KEY)
    with pytest.raises(SystemExit) as refused:
        await anyio.to_thread.run_sync(tlc, [*argv[:-1], str(tmp_path / "not.csv")])
    assert "tlc export:" in str(refused.value) and "teacher" in str(refused.value)
    assert not (tmp_path / "not.csv").exists()


def _async(check: object) -> object:
    async def run() -> object:
        return check()  # type: ignore[operator]

    return run


def _done_rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM requests WHERE status = 'done'").fetchone()[0])
    finally:
        db.close()


async def test_retention_deletes_rows_older_than_history_days(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    now = time.time()
    for rid, age_days in (("old", 40), ("edge", 31), ("recent", 2)):
        created = now - age_days * 86_400
        db.execute(
            "INSERT INTO requests VALUES (?, 'ada', 'm', '[]', '{}', 0, ?, 'done', 'stop', NULL,"
            " 'hi', '', 1, NULL, NULL, NULL, NULL, NULL, ?)",
            (rid, created, created),
        )
    db.commit()
    db.close()
    with practice_server() as practice:
        with queue_server(practice.url + "/v1", history_path=str(path), history_days=30) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                rows = (await client.get("/api/history")).json()["requests"]
    assert [row["id"] for row in rows] == ["recent"]


def test_tlc_lessons_copies_the_notebooks_and_keeps_a_students_own(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parent.parent / "notebooks"
    names = sorted(p.name for p in repo.glob("*.ipynb"))
    (tmp_path / names[0]).write_text("my work")
    tlc(["lessons", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == names
    assert (tmp_path / names[0]).read_text() == "my work"  # never overwritten unasked
    assert (tmp_path / names[1]).read_bytes() == (repo / names[1]).read_bytes()
    tlc(["lessons", str(tmp_path), "--overwrite"])
    assert (tmp_path / names[0]).read_bytes() == (repo / names[0]).read_bytes()


async def test_retention_also_runs_a_day_later_without_a_restart(tmp_path: Path) -> None:
    """The writer thread deletes old rows every `PURGE_EVERY_S`; here "a day later" is made
    to be now by moving its next-purge time, and a read wakes the thread."""
    from tlc_widgets.server.history import History

    path = tmp_path / "history.sqlite3"
    history = History(str(path), days=30)
    await history.open()
    try:
        db = sqlite3.connect(path)
        aged = time.time() - 31 * 86_400  # it became older than 30 days while the server ran
        db.execute(
            "INSERT INTO requests VALUES ('aged', 'ada', 'm', '[]', '{}', 0, ?, 'done', 'stop',"
            " NULL, 'hi', '', 1, NULL, NULL, NULL, NULL, NULL, ?)",
            (aged, aged),
        )
        db.commit()
        db.close()
        assert [row["id"] for row in await history.recent(None, 10)] == ["aged"]
        assert history.purged == 0
        history._next_purge = 0.0  # a day has passed
        await history.recent(None, 10)  # wakes the writer thread; it purges after this read
        assert await history.recent(None, 10) == []
        assert history.purged == 1
    finally:
        await history.close()
