"""History: every request saved in SQLite, the text so far too, surviving a `kill -9`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import collect, hold_slot, practice_server, queue_server, wait_until
from tlc_widgets.serving import free_port

pytestmark = pytest.mark.anyio


async def test_every_request_is_recorded_with_its_reply_timings_and_outcome(
    tmp_path: Path,
) -> None:
    db = tmp_path / "history.sqlite3"
    with practice_server() as practice:
        with queue_server(practice.url + "/v1", history_path=str(db)) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                body = {"messages": [{"role": "user", "content": "Tell me a fable"}]}
                ok = (await client.post("/api/requests", json={**body, "user": "ada"})).json()
                await collect(client, ok["id"])
                live = (await client.get(f"/api/requests/{ok['id']}")).json()
                await client.put(practice.url + "/practice/faults", json={"fail_after_tokens": 2})
                bad = (
                    await client.post("/api/requests", json={"prompt": "x", "user": "bob"})
                ).json()
                await collect(client, bad["id"])

                row = (await client.get(f"/api/history/{ok['id']}")).json()
                assert row["user"] == "ada" and row["model"] == live["model"]
                assert row["messages"] == body["messages"]
                assert row["status"] == "done" and row["outcome"] in ("stop", "length")
                assert row["text"] == live["text"] and row["tokens"] == live["tokens"]
                assert set(row["timings"]) == {"waited_s", "ttft_s", "total_s", "tokens_per_s"}
                assert row["timings"]["total_s"] is not None and row["created"] > 0

                failed = (await client.get(f"/api/history/{bad['id']}")).json()
                assert (failed["status"], failed["outcome"]) == ("error", "upstream_error")
                assert "text so far is kept" in failed["message"] and failed["text"]

                listed = (await client.get("/api/history")).json()
                assert listed["enabled"] is True
                assert [r["id"] for r in listed["requests"]] == [
                    bad["id"],
                    ok["id"],
                ]  # newest first
                only_ada = (await client.get("/api/history?user=ada&limit=5")).json()["requests"]
                assert [r["id"] for r in only_ada] == [ok["id"]]

                exported = await client.get("/api/history/export?format=json")
                assert "attachment" in exported.headers["Content-Disposition"]
                assert len(exported.json()["requests"]) == 2
                md = await client.get("/api/history/export?format=md&user=ada")
                assert md.headers["Content-Type"].startswith("text/markdown")
                assert "**user:** Tell me a fable" in md.text and live["text"] in md.text
                assert (await client.get("/api/history/nope")).status_code == 404
    assert db.exists()


async def test_the_text_so_far_is_saved_while_a_request_runs() -> None:
    with practice_server(parallel=1) as practice, queue_server(practice.url + "/v1") as queue:
        async with httpx.AsyncClient(base_url=queue.url) as client:
            holder = await hold_slot(client, practice.url)  # one token, then silence

            async def saved() -> dict[str, Any] | None:
                row = (await client.get(f"/api/history/{holder}")).json()
                return row if row.get("text") else None

            row = await wait_until(saved, "the periodic save of the running text")
            assert row["status"] == "running" and row["tokens"] == 1
            await client.delete(f"/api/requests/{holder}")
            row = (await client.get(f"/api/history/{holder}")).json()
            assert (row["status"], row["outcome"]) == ("cancelled", "client") and row["text"]


async def test_a_graceful_stop_saves_how_every_live_request_ended(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    with practice_server(parallel=1) as practice:
        with queue_server(practice.url + "/v1", history_path=str(db)) as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                holder = await hold_slot(client, practice.url)
                waiting = (await client.post("/api/requests", json={"prompt": "x"})).json()["id"]
        with closing(sqlite3.connect(db)) as saved:
            rows = dict(saved.execute("SELECT id, status || '/' || outcome FROM requests"))
    assert rows == {holder: "cancelled/shutdown", waiting: "cancelled/shutdown"}


async def test_no_history_when_the_path_is_empty() -> None:
    with practice_server() as practice:
        with queue_server(practice.url + "/v1", history_path="") as queue:
            async with httpx.AsyncClient(base_url=queue.url) as client:
                r = await client.post("/api/requests", json={"prompt": "hi"})
                await collect(client, r.json()["id"])
                assert (await client.get("/api/history")).json() == {
                    "enabled": False,
                    "requests": [],
                }
                assert (await client.get(f"/api/history/{r.json()['id']}")).status_code == 404


# ---------------------------------------------------------------------------- kill -9


@contextmanager
def serve_process(
    upstream: str, db: Path, workdir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`tlc serve` as a real process of its own, with its history in `db`."""
    port = free_port()
    env = {**os.environ, "TLC_HISTORY_PATH": str(db)}
    log = (workdir / f"serve-{port}.log").open("wb")
    cmd = [sys.executable, "-m", "tlc_widgets.cli", "serve", "--upstream", upstream]
    process = subprocess.Popen(
        [*cmd, "--port", str(port)], env=env, cwd=workdir, stdout=log, stderr=log
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()


async def _up(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


async def test_history_survives_kill_9_and_the_cut_off_requests_are_interrupted(
    tmp_path: Path,
) -> None:
    db = tmp_path / "history.sqlite3"
    with practice_server(parallel=1, tokens_per_second=20) as practice:
        upstream = practice.url + "/v1"
        with serve_process(upstream, db, tmp_path) as (process, url):
            async with httpx.AsyncClient(base_url=url) as client:
                await wait_until(lambda: _up(client), "the server process to answer")
                short = {"prompt": "Hello", "user": "ada", "max_tokens": 3}
                done = (await client.post("/api/requests", json=short)).json()["id"]
                done_events = await collect(client, done)
                long = {"prompt": "Tell me a long story", "user": "ada", "max_tokens": 400}
                running = (await client.post("/api/requests", json=long)).json()["id"]
                queued = (await client.post("/api/requests", json={**long, "user": "bob"})).json()

                async def saved_text() -> str | None:
                    row = (await client.get(f"/api/history/{running}")).json()
                    return row["text"] if row.get("text") else None

                await wait_until(saved_text, "the running text to be saved")
                live = (await client.get(f"/api/requests/{running}")).json()["text"]
            os.kill(process.pid, signal.SIGKILL)
            assert process.wait() == -signal.SIGKILL

        with serve_process(upstream, db, tmp_path) as (_, url):
            async with httpx.AsyncClient(base_url=url) as client:
                await wait_until(lambda: _up(client), "the restarted server to answer")
                rows = {r["id"]: r for r in (await client.get("/api/history")).json()["requests"]}
    assert set(rows) == {done, running, queued["id"]}
    finished = rows[done]
    assert finished["status"] == "done"
    assert finished["text"] == "".join(d["content"] for _, n, d in done_events if n == "delta")
    cut = rows[running]
    assert (cut["status"], cut["outcome"]) == ("interrupted", "interrupted")
    assert cut["text"] and (live.startswith(cut["text"]) or cut["text"].startswith(live))
    assert "text so far is kept" in cut["message"]
    assert rows[queued["id"]]["status"] == "interrupted" and rows[queued["id"]]["text"] == ""
    print(
        f"kill -9: {len(cut['text'])} characters of the running reply kept "
        f"(the live view had {len(live)} just before); 2 rows interrupted, 1 done row intact"
    )


async def test_a_full_disk_loses_no_row(tmp_path: Path) -> None:
    """SQLite's own 'database or disk is full' (a page cap, as a full disk gives it): rows
    are kept and tried again (`history.failing`, which `/readyz` reports, is True
    meanwhile), and once there is room again every row is written."""
    from tlc_widgets.server.history import History
    from tlc_widgets.server.records import Record

    history = History(str(tmp_path / "full.sqlite3"), flush_s=0.05)
    await history.open()

    def cap(pages: int | None) -> Any:
        def run(db: sqlite3.Connection) -> Any:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            now = db.execute("PRAGMA page_count").fetchone()[0]
            return db.execute(f"PRAGMA max_page_count = {pages or now}").fetchone()[0]

        return run

    await history._call(cap(None))  # no room to grow: the disk is "full"
    records = [
        Record.new(user="ada", model="m", messages=[{"content": "x" * 4000}], params={})
        for _ in range(30)
    ]
    for record in records:
        history.record_changed(record)

    async def failing() -> bool:
        return history.failing

    await wait_until(failing, "the writes to fail")
    await history._call(cap(1_000_000))  # room again

    async def saved() -> bool:
        return not history.failing and len(await history.recent(None, -1)) == len(records)

    await wait_until(saved, "every row to be written")
    await history.close()
    with sqlite3.connect(tmp_path / "full.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == len(records)
