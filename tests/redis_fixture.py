"""A real `redis-server` on a free loopback port, for the tests that share state through it.

    from tests.redis_fixture import redis_server  # noqa: F401  (makes the fixture visible)

    async def test_x(redis_server: RedisServer) -> None:
        client = connect(redis_server.url)

No persistence (`--save '' --appendonly no`), so a restart starts empty — what a Redis
without persistence does, and the worst case the service must survive. Skipped, with the
reason, where `redis-server` is not installed, unless TLC_REQUIRE_REDIS=1 (CI sets it, so a
missing package fails instead of silently skipping the scale-out tests).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tlc_widgets.serving import free_port

__all__ = ["RedisServer", "redis_server", "require_redis_server"]


class RedisServer:
    """One redis-server process; `stop()` and `start()` again keep the same port."""

    def __init__(self, executable: str, port: int | None = None) -> None:
        self.executable = executable
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        args = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--protected-mode", "yes"]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while not self._answers():  # it is up when it answers PING
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {err}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections stay open, nothing answers."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def find_redis_server() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def require_redis_server() -> str:
    """The redis-server executable; skip the test without one (fail if TLC_REQUIRE_REDIS=1)."""
    executable = find_redis_server()
    if executable is None:
        reason = "redis-server is not installed (apt-get install -y redis-server)"
        if os.environ.get("TLC_REQUIRE_REDIS") == "1":
            pytest.fail(reason + ", and TLC_REQUIRE_REDIS=1")
        pytest.skip(reason)
    return executable


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(require_redis_server()) as server:
        yield server
