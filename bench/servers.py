"""The servers a benchmark measures, each in a process of its own, stopped on exit.

    >>> argv = practice_argv(tokens_per_second=0)
    >>> argv[1:4]
    ['-m', 'tlc_widgets.cli', 'practice']
    >>> with Workspace() as ws:                                           # doctest: +SKIP
    ...     upstream = ws.start(practice_argv(), "/v1/models")
    ...     queue = ws.start(queue_argv(upstream.url + "/v1"), "/readyz")

A client measuring a server in a process of its own never shares its GIL, and the server's
CPU time and peak memory can be read from `/proc/<pid>`. Starting, waiting until ready and
stopping are `tlc_widgets.launch`'s, as for `tlc lab` and the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from bench.harness import ROOT
from tlc_widgets.launch import (
    ServerExited,
    ServerNotReady,
    free_port,
    spawn,
    stop_process,
    wait_ready,
)

if TYPE_CHECKING:
    from tests.redis_fixture import RedisServer

__all__ = [
    "PYTHON",
    "ServerProcess",
    "Workspace",
    "cpu_seconds",
    "peak_rss_mb",
    "practice_argv",
    "private_redis",
    "queue_argv",
    "raise_fd_limit",
    "start_queue",
    "start_uvicorn_app",
]

PYTHON = sys.executable
_CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------- processes


def practice_argv(
    *,
    tokens_per_second: float = 0,
    first_token_latency_s: float = 0,
    parallel: int = 4,
    slot_log: bool = False,
) -> list[str]:
    """The practice model as a process (`tlc practice`); with `slot_log`, wrapped by
    `bench.slotlog`, which also records when each slot is taken and freed."""
    module = "bench.slotlog" if slot_log else "tlc_widgets.cli"
    head = [PYTHON, "-m", module] + ([] if slot_log else ["practice"])
    return [
        *head,
        "--tokens-per-second",
        str(tokens_per_second),
        "--first-token-latency",
        str(first_token_latency_s),
        "--parallel",
        str(parallel),
    ]


def queue_argv(upstream: str, *extra: str) -> list[str]:
    """The queue server as users run it: `tlc serve --upstream URL …` (uvicorn[standard])."""
    return [PYTHON, "-m", "tlc_widgets.cli", "serve", "--upstream", upstream, *extra]


class ServerProcess:
    """One server in a process of its own, started with `--port` appended, ready once
    `ready_path` answers 200. Its output goes to a log file, never to a pipe that could fill."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        ready_path: str,
        log_dir: Path,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        port_flag: str | None = "--port",
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [*argv, port_flag, str(self.port)] if port_flag else list(argv)
        self.ready_path = ready_path
        self.log_path = log_dir / f"{name}.log"
        # A queue server keeps a history: in the workspace, never in the user's own file.
        self.env = _child_env({"TLC_HISTORY_PATH": str(log_dir / f"{name}-history.sqlite3")})
        self.env.update(env or {})
        self.cwd = log_dir  # no stray .env of the caller's working directory is read
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        # Not in a session of its own: an interrupted benchmark takes its servers with it.
        self._proc = spawn(self.argv, self.log_path, env=self.env, cwd=self.cwd, own_session=False)
        try:
            wait_ready(self.url, self.ready_path, process=self._proc, timeout=timeout_s)
        except ServerExited:
            raise RuntimeError(f"{self.name} exited at start-up:\n{self.log_tail()}") from None
        except ServerNotReady:
            self.stop()
            raise RuntimeError(
                f"{self.name} was not ready after {timeout_s} s:\n{self.log_tail()}"
            ) from None
        return self

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL after a grace; always reaped."""
        proc, self._proc = self._proc, None
        stop_process(proc, grace=8.0)

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _child_env(extra: dict[str, str] | None) -> dict[str, str]:
    # A caller's TLC_* variables must not change what is measured; the bench package must be
    # importable (bench.slotlog, bench.passthrough) from the servers' working directory.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLC_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


class Workspace:
    """A temporary directory for logs, and every server started in it, stopped on exit."""

    def __init__(self, keep: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tlc-bench-"))
        self.keep = keep
        self.servers: list[ServerProcess] = []

    def start(
        self,
        argv: Sequence[str],
        ready_path: str,
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float = 60.0,
        port_flag: str | None = "--port",
    ) -> ServerProcess:
        name = name or f"server{len(self.servers)}"
        server = ServerProcess(name, argv, ready_path, self.dir, env=env, port_flag=port_flag)
        self.servers.append(server)
        return server.start(timeout_s)

    def close(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            for server in self.servers:
                print(f"--- {server.name} log ---\n{server.log_tail()}", file=sys.stderr)
        self.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (`/proc/<pid>/stat`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (`VmHWM`), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit (children inherit it); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        soft = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def start_queue(
    ws: Workspace, ns: argparse.Namespace, upstream: str, *extra: str, name: str = "queue"
) -> ServerProcess:
    """The queue server in front of `upstream`, as `--queue-cmd` / `--queue-env` say."""
    argv = queue_argv(upstream, *extra)
    if ns.queue_cmd:
        argv = [*shlex.split(ns.queue_cmd), *argv[3:]]
    # The history is kept as by default, but in the workspace: never in the user's own file.
    env = {"TLC_HISTORY_PATH": str(ws.dir / f"{name}-history.sqlite3")}
    env.update(kv.split("=", 1) for kv in ns.queue_env)
    return ws.start(argv, "/readyz", name=name, env=env)


def start_uvicorn_app(ws: Workspace, app: str, name: str, env: dict[str, str]) -> ServerProcess:
    """One of the bench's own ASGI apps (`bench.passthrough:app`, `bench.fast_upstream:app`)."""
    argv = [PYTHON, "-m", "uvicorn", app, "--log-level", "warning"]
    return ws.start(argv, "/v1/models", name=name, env=env)


@contextlib.contextmanager
def private_redis() -> Iterator[RedisServer]:
    """A `redis-server` of the benchmark's own on a free loopback port (no persistence),
    stopped at the end: the tests' fixture, so benchmarks and tests start it alike."""
    from tests.redis_fixture import RedisServer, find_redis_server

    executable = find_redis_server()
    if executable is None:
        sys.exit("redis-server is not installed (apt-get install -y redis-server)")
    with RedisServer(executable) as server:
        yield server
