"""Start, probe and stop servers: the one place that knows ports, readiness and PIDs.

    >>> port = free_port()
    >>> port_is_free(port)
    True
    >>> answers(f"http://127.0.0.1:{port}")          # nothing listens there
    False
    >>> with BackgroundServer(app) as server:          # doctest: +SKIP
    ...     assert is_queue_server(server.url)

Two ways to run a server, for two kinds of caller:

* `BackgroundServer`: uvicorn in a thread of this process, for tests and benchmarks that
  keep their own event loop (a kernel's, pytest's) and only talk to the server over HTTP;
* `spawn` + `wait_ready` + `stop_process`: a process of its own, for `tlc lab`, the lesson
  helper and the benchmarks, which must measure a server that does not share their GIL.

`pid_alive` and `is_tlc_serve` tell whether a PID is this user's queue server; `ownership`
keeps the record of which one `tlc lab` or a lesson started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn

__all__ = [
    "BackgroundServer",
    "ServerExited",
    "ServerNotReady",
    "answers",
    "free_port",
    "is_queue_server",
    "is_tlc_serve",
    "pid_alive",
    "port_is_free",
    "spawn",
    "stop_pid",
    "stop_process",
    "wait_ready",
]

LOOPBACK = "127.0.0.1"


class ServerExited(RuntimeError):
    """The server's process ended before it answered."""


class ServerNotReady(RuntimeError):
    """The server did not answer in time."""


# ---------------------------------------------------------------------------- ports


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True if `port` can be bound now (a port in TIME_WAIT counts as free, as for uvicorn)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# ---------------------------------------------------------------------------- probes


def answers(url: str, path: str = "/healthz", timeout: float = 1.0) -> bool:
    """True if `GET url+path` answers 200 in time (`/healthz` for a queue server,
    `/v1/models` for an OpenAI-compatible upstream)."""
    try:
        return httpx.get(url.rstrip("/") + path, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def is_queue_server(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """The `/healthz` of a TLC queue server at `url`, or None if none answers there."""
    try:
        response = httpx.get(url.rstrip("/") + "/healthz", timeout=timeout)
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    ours = response.status_code == 200 and isinstance(body, dict) and "upstreams" in body
    return body if ours else None


def wait_ready(
    url: str,
    path: str = "/healthz",
    *,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = 30.0,
    interval: float = 0.02,
) -> None:
    """Return once `url+path` answers 200; raise `ServerExited` if `process` ends first,
    `ServerNotReady` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise ServerExited(f"exit code {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url.rstrip("/") + path).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ServerNotReady(f"{url}{path} did not answer within {timeout:g} s")
            time.sleep(interval)


# ---------------------------------------------------------------------------- processes


def spawn(
    argv: Sequence[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    own_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Start `argv` with its output appended to `log` (a file never fills as a pipe can).

    `own_session`: the terminal's Ctrl-C reaches only the caller, which stops its children
    in order (and a lesson's server outlives the kernel that started it).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=own_session,
        )


def stop_process(process: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; always reaped."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_pid(pid: int, grace: float = 5.0) -> bool:
    """Stop a process that is not our child (SIGTERM, then SIGKILL); False if it was gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    return True


def pid_alive(pid: int) -> bool:
    """True if a process `pid` exists and is not a zombie.

    >>> pid_alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def is_tlc_serve(pid: int) -> bool:
    """True if `pid` is this user's `tlc serve` (read from `/proc`; False where there is none).

    >>> is_tlc_serve(os.getpid())
    False
    """
    proc = Path(f"/proc/{pid}")
    try:
        if proc.stat().st_uid != os.getuid():
            return False
        argv = proc.joinpath("cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [Path(a.decode(errors="replace")).name for a in argv if a]
    if "serve" not in words:
        return False
    return "tlc" in words[:2] or "tlc_widgets.cli" in words


# ---------------------------------------------------------------------------- in a thread


class BackgroundServer:
    """uvicorn in a daemon thread of this process; `url` is ready once `start()` returns.

    The port is bound by us and handed to uvicorn as a socket, so two servers started at once
    can never race for the same port.
    """

    def __init__(self, app: Any, host: str = LOOPBACK, port: int = 0, **config: Any) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        config.setdefault("log_level", "warning")
        config.setdefault("lifespan", "on")
        self._server = uvicorn.Server(uvicorn.Config(app, **config))
        # uvicorn installs signal handlers only in the main thread; we are never there.
        self._thread = threading.Thread(target=self._run, name=f"uvicorn:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        # `started` flips once lifespan start-up finished and the socket is listening.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            if self._server.started:
                return self
            time.sleep(0.01)
        raise ServerNotReady(f"server on {self.url} did not start")

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
