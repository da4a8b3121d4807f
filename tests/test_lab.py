"""`tlc lab` reuses only the queue server this user started, and restarts one that died."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import practice_server, queue_server
from tlc_widgets import lab, lesson
from tlc_widgets.launch import free_port, is_tlc_serve, pid_alive, stop_process, wait_ready
from tlc_widgets.ownership import our_server


def lab_ns(server_port: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    lab.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["lab", "--practice", "--server-port", str(server_port)])


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[subprocess.Popen[bytes]]]:
    monkeypatch.delenv("TLC_SERVER_URL", raising=False)
    monkeypatch.setattr(lesson, "_started", [])
    yield lesson._started
    for process in lesson._started:
        process.kill()
        process.wait()


def test_a_port_held_by_someone_elses_server_is_not_reused() -> None:
    with practice_server() as practice, queue_server(practice.url + "/v1") as queue:
        # A queue server answers there, but no record says this user started it.
        server, note = lab.choose_server(lab_ns(queue.port), None)
        assert server.port != queue.port and server.reused_pid is None
        assert note == (
            f"Port {queue.port} is taken by another program; the queue server uses {server.port}."
        )
    port = free_port()
    server, note = lab.choose_server(lab_ns(port), None)
    assert (server.port, note) == (port, "")


def test_the_users_own_server_is_reused(started: list[subprocess.Popen[bytes]]) -> None:
    url = lesson.ensure_server(f"http://127.0.0.1:{free_port()}", practice=True)
    mine = our_server()
    assert mine is not None and mine["url"] == url and is_tlc_serve(mine["pid"])
    server, note = lab.choose_server(lab_ns(mine["port"]), None)
    assert server.reused_pid == started[0].pid == mine["pid"]
    assert note.startswith(f"Using your queue server already running at {url}")


def test_a_dead_queue_server_is_restarted_on_its_port_a_bounded_number_of_times(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = lab.QueueServer(free_port(), None)
    server.start()
    try:
        assert server.process is not None and our_server() is not None
        for attempt in range(1, lab.MAX_RESTARTS + 1):
            server.process.kill()
            server.process.wait()
            assert not server.alive()
            assert server.restart()
            assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
            said = capsys.readouterr().out
            assert f"restarting it ({attempt} of {lab.MAX_RESTARTS})" in said
        server.process.kill()
        server.process.wait()
        assert not server.restart()
        assert "not restarting it" in capsys.readouterr().out
    finally:
        server.stop()
    assert our_server() is None


SCRIPT = """
import sys
from tlc_widgets import cli, lab
# JupyterLab's place taken by a process that just waits: the queue server is what is tested.
lab.lab_command = lambda ns, root: [sys.executable, "-c", "import time; time.sleep(120)"]
cli.main(sys.argv[1:])
"""


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_lab_and_its_queue_server_without_a_traceback(
    how: signal.Signals, tmp_path: Path
) -> None:
    port = free_port()
    out = tmp_path / "lab.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, "lab", "--practice", "--server-port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_text(out, "Ctrl-C stops JupyterLab and the queue server.")  # after the start
        wait_ready(f"http://127.0.0.1:{port}", process=process, timeout=5)
        mine = our_server()
        assert mine is not None and mine["port"] == port
        process.send_signal(how)
        assert process.wait(30) == 0
    finally:
        stop_process(process)
    said = out.read_text()
    assert "Traceback" not in said
    assert "tlc lab: stopping JupyterLab and the queue server" in said
    assert not pid_alive(mine["pid"]) and our_server() is None


def wait_for_text(path: Path, text: str, tries: int = 1200) -> None:
    """Poll a file another process writes until `text` is in it (bounded: ~60 s)."""
    for _ in range(tries):
        if text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path.read_text()!r}")
