"""`ensure_server` starts a real `tlc serve` process once, and reuses whatever answers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import practice_server, queue_server
from tlc_widgets import lesson
from tlc_widgets.client import QueueClient
from tlc_widgets.lesson import ensure_server, server_info
from tlc_widgets.serving import free_port


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The processes `ensure_server` starts during the test; killed at its end."""
    monkeypatch.delenv("TLC_SERVER_URL", raising=False)  # restored after the test
    monkeypatch.setattr(lesson, "_started", [])
    yield lesson._started
    for process in lesson._started:
        process.kill()
        process.wait()


def test_ensure_server_starts_a_practice_server_once(
    started: list[subprocess.Popen[bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert ensure_server(url, practice=True) == url
    assert len(started) == 1 and started[0].poll() is None
    said = capsys.readouterr().out
    assert said.startswith(f"Started the queue server at {url} with the PRACTICE MODEL")
    assert said.count("\n") == 1
    assert httpx.get(url + "/healthz").json()["status"] == "ok"

    assert os.environ["TLC_SERVER_URL"] == url
    assert QueueClient().url == url

    assert ensure_server(url, practice=True) == url  # it answers: nothing new is started
    assert len(started) == 1 and capsys.readouterr().out == ""

    info = server_info()
    assert info["url"] == url and info["practice"] is True
    assert "practice-fast" in info["models"] and info["upstreams"][0]["reachable"]


def test_ensure_server_reuses_a_running_server_and_moves_off_a_taken_port(
    started: list[subprocess.Popen[bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    with practice_server() as practice, queue_server(practice.url + "/v1") as queue:
        assert ensure_server(queue.url) == queue.url
        assert started == []

        # A port held by something that is not a queue server (here: the practice model).
        taken = practice.url
        url = ensure_server(taken, practice=True)
        assert url != taken and len(started) == 1
        assert httpx.get(url + "/healthz").json()["status"] == "ok"
        assert url in capsys.readouterr().out


def test_a_server_that_cannot_start_is_reported_with_its_log(
    started: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLC_MAX_QUEUE", "0")  # the child's settings refuse this
    with pytest.raises(RuntimeError, match="stopped at once") as exc:
        ensure_server(f"http://127.0.0.1:{free_port()}", practice=True)
    assert "max_queue" in str(exc.value)  # the end of its log says why
    assert started[0].returncode not in (None, 0)


def test_a_remote_url_that_does_not_answer_is_not_started_here(
    started: list[subprocess.Popen[bytes]],
) -> None:
    with pytest.raises(RuntimeError, match="only be started on this machine"):
        ensure_server("http://192.0.2.1:8000", practice=True, timeout=1)
    assert started == []
