"""What every benchmark shares: server processes, percentiles, tables, the machine, profiles.

    >>> with Workspace() as ws:                                           # doctest: +SKIP
    ...     upstream = ws.start(practice_argv(tokens_per_second=0), "/v1/models")
    ...     queue = ws.start(queue_argv(upstream.url + "/v1"), "/readyz")
    ...     print(table(["path", "ms"], [["direct", fmt_ms(0.0012)]]))

Servers always run as processes of their own (`python -m tlc_widgets.cli …`, `python -m
uvicorn …`), so a client measuring them never shares their GIL, and their CPU time and peak
memory can be read from `/proc/<pid>` on their own.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tlc_widgets.serving import free_port

__all__ = [
    "PYTHON",
    "ROOT",
    "Goal",
    "Profiler",
    "Result",
    "ServerProcess",
    "Workspace",
    "base_parser",
    "cpu_seconds",
    "fmt_ms",
    "free_port",
    "goal_rows",
    "iter_sse",
    "machine",
    "machine_lines",
    "peak_rss_mb",
    "percentile",
    "practice_argv",
    "queue_argv",
    "raise_fd_limit",
    "save_json",
    "self_by_package",
    "source_fingerprint",
    "start_queue",
    "summary",
    "table",
    "top_frames",
]

ROOT = Path(__file__).resolve().parent.parent
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
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
            )
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited at start-up:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.url + self.ready_path).status_code == 200:
                        return self
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready after {timeout_s} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Ctrl-C (graceful), then SIGTERM, then SIGKILL; always reaped."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for sig, wait_s in ((signal.SIGINT, 8.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if proc.poll() is not None:
                break
            proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait_s)
        proc.wait()

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


# ---------------------------------------------------------------------------- profiles


class Profiler:
    """`py-spy record` on a running server, written as collapsed stacks on exit.

    >>> with Profiler(queue.pid, out_dir / "queue.txt"):            # doctest: +SKIP
    ...     run_load()
    >>> print(top_frames(out_dir / "queue.txt"))                    # doctest: +SKIP
    """

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        self.out = out
        exe = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        if not Path(exe).exists():
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        self.argv = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
        self.argv += ["--nonblocking", "--output", str(out)]
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(0.3)  # py-spy attaches
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            self._proc.wait(20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def top_frames(collapsed: Path, top: int = 25, only: str | None = None) -> str:
    """Inclusive and self shares of the most-sampled functions in a py-spy raw profile."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text("utf-8", "replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        if only and not any(only in f for f in frames):
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    rows = [
        [f"{100 * n / total:.1f} %", f"{100 * own[name] / total:.1f} %", name]
        for name, n in inclusive.most_common(top)
    ]
    return f"{total} samples\n" + table(["inclusive", "self", "function (file:line)"], rows)


def self_by_package(collapsed: Path) -> str:
    """Self time by the package of the innermost frame: where the CPU actually went."""
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text("utf-8", "replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        total += int(count_text)
        own[_package(stack.split(";")[-1])] += int(count_text)
    rows = [[f"{100 * n / total:.1f} %", name] for name, n in own.most_common()]
    return table(["self", "package of the innermost frame"], rows)


def _package(frame: str) -> str:
    where = frame.partition(" (")[2].rstrip(")").split(":", 1)[0]
    top = where.split("/", 1)[0].removesuffix(".py")
    if not where or where.startswith("<"):
        return "stdlib (frozen)" if where.startswith("<frozen") else frame
    return f"stdlib {top}" if top in sys.stdlib_module_names else top


def _short(frame: str) -> str:
    # "handle (uvicorn/protocols/http/httptools_impl.py:123)" -> keep package-relative path
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


# ---------------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100), linearly interpolated between the nearest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, median, p99, mean, min, max of some samples."""
    if not values:
        return {"n": 0, "median": math.nan, "p99": math.nan, "mean": math.nan}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def fmt_ms(seconds: float | None, digits: int = 2) -> str:
    if seconds is None or math.isnan(seconds):
        return "–"
    return f"{seconds * 1000:.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table, its columns padded so it also reads well in a terminal."""
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


@dataclass
class Goal:
    """One goal of issue #5: what was measured against what was asked."""

    name: str
    target: str
    measured: str
    met: bool | None  #: None: not measured

    def row(self) -> list[str]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[self.met]
        return [self.name, self.target, self.measured, verdict]


def goal_rows(goals: Sequence[Goal]) -> str:
    return table(["goal", "target", "measured", "verdict"], [g.row() for g in goals])


# ---------------------------------------------------------------------------- SSE


def iter_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event name, data) per server-sent event; unnamed events are called "message"."""
    name, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
    if data:
        yield name, "\n".join(data)


# ---------------------------------------------------------------------------- machine


_PACKAGES = (
    "tlc_widgets",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "httpx",
    "anyio",
    "pydantic",
)


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python, package versions and the load right now."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = math.nan
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        mem_gb = round(int(mem_kb) / 1024 / 1024, 1)
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "source": source_fingerprint(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
        "load": [round(x, 2) for x in os.getloadavg()],
    }


def source_fingerprint() -> str:
    """A short hash of the package's Python files: which server a result was measured on
    (the tree changes under a benchmark while others work; a commit id may not exist yet)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "tlc_widgets").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine_lines(info: dict[str, Any] | None = None) -> str:
    info = info or machine()
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    return (
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, {info['os']}, "
        f"Python {info['python']}\npackages: {packages}\n"
        f"tlc_widgets source fingerprint: {info['source']}\n"
        f"load average (1/5/15 min) at start: {' / '.join(map(str, info['load']))}"
    )


# ---------------------------------------------------------------------------- command line


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--smoke", action="store_true", help="a handful of requests: checks that it runs"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record the queue server with py-spy into DIR and print its hottest functions",
    )
    parser.add_argument(
        "--queue-cmd",
        help="start the queue server with this command instead of `python -m tlc_widgets.cli` "
        "(`serve --upstream URL …` is appended), e.g. to compare a patched server",
    )
    parser.add_argument(
        "--queue-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment of the queue server, e.g. TLC_LOG_LEVEL=warning (repeatable)",
    )
    return parser


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


@dataclass
class Result:
    """What a benchmark's `main` returns (and `--json` writes)."""

    name: str
    machine: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    goals: list[Goal] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "machine": self.machine,
            "load_at_end": [round(x, 2) for x in os.getloadavg()],
            "data": self.data,
            "goals": [g.__dict__ for g in self.goals],
        }


def save_json(path: Path | None, result: Result) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.as_dict(), indent=2, default=str) + "\n")
