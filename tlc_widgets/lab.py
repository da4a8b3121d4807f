"""`tlc lab`: the queue server and JupyterLab together, in one command.

    $ tlc lab                              # LM Studio if it answers, else the practice model
    $ tlc lab --upstream http://10.0.0.5:1234/v1 --no-browser
    $ tlc lab --practice --server-port 8001 --port 8890

    >>> probe_upstream(f"http://127.0.0.1:{free_port()}/v1")      # nothing answers there
    False

1. Pick the model server: `--upstream URL` (or LM Studio at http://localhost:1234/v1) if its
   `/models` answers within a second, otherwise the built-in practice model — and say
   which in a banner, because a student must never mistake one for the other.
2. Start the queue server (`python -m tlc_widgets.cli serve`) on `--server-port` (8000), its
   log in a file. A queue server there is reused only if this user started it (`ownership`:
   its PID runs and is a `tlc serve`); if anything else holds the port, a free port is
   picked, and the banner says so. Kernels find it through `TLC_SERVER_URL`.
3. Start JupyterLab on the project's `notebooks/` folder. If the queue server dies, it is
   started again on the same port (a few times at most), and the terminal says so.
   Ctrl-C (or SIGTERM, or closing the terminal) stops both, in order.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .config import DEFAULT_UPSTREAM
from .launch import (
    LOOPBACK,
    ServerExited,
    ServerNotReady,
    answers,
    free_port,
    is_queue_server,
    pid_alive,
    port_is_free,
    spawn,
    stop_process,
    wait_ready,
)
from .ownership import forget_server, our_server, remember_server, runtime_dir

__all__ = ["add_parser", "find_notebooks", "probe_upstream", "run"]

PROBE_TIMEOUT_S = 1.0
START_TIMEOUT_S = 30.0
#: Restarts of a queue server that died, before `tlc lab` gives up on it (JupyterLab runs on).
MAX_RESTARTS = 3


def add_parser(sub: Any) -> None:
    """Add `tlc lab` to the `tlc` command's subparsers."""
    p = sub.add_parser("lab", help="queue server + JupyterLab on the lesson notebooks")
    p.add_argument("--upstream", metavar="URL", help=f"model server (default {DEFAULT_UPSTREAM})")
    p.add_argument(
        "--practice", action="store_true", help="use the practice model even if LM Studio runs"
    )
    p.add_argument("--server-port", type=int, default=8000, help="queue server port (8000)")
    p.add_argument("--port", type=int, help="JupyterLab port (default: JupyterLab's, 8888)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--notebook-dir", type=Path, help="folder to open (default: notebooks/)")
    p.set_defaults(run=run)


# ---------------------------------------------------------------------------- decisions


def find_notebooks(cwd: Path | None = None) -> Path:
    """`notebooks/` under the current directory, else the one beside the package (a
    checkout), else the current directory itself."""
    cwd = cwd or Path.cwd()
    for candidate in (cwd / "notebooks", Path(__file__).resolve().parent.parent / "notebooks"):
        if candidate.is_dir():
            return candidate
    return cwd


def probe_upstream(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if an OpenAI-compatible server answers `GET {url}/models` in time."""
    return answers(url, "/models", timeout_s)


def is_tlc_server(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if a TLC queue server answers at `url` (its `/healthz` has our shape)."""
    body = is_queue_server(url, timeout_s)
    return body is not None and body.get("status") == "ok"


def describe_existing(url: str) -> str:
    """What an already running queue server serves, in one line for the banner."""
    try:
        models = httpx.get(url + "/api/models", timeout=PROBE_TIMEOUT_S).json()["models"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return "MODELS: unknown (the running queue server did not list them)."
    if models and all(m.get("practice") for m in models):
        return "PRACTICE MODEL — a statistical text generator, NOT an LLM (existing server)."
    return "MODELS: " + (", ".join(str(m.get("id")) for m in models) or "none loaded")


# ---------------------------------------------------------------------------- running


def banner(*lines: str) -> None:
    width = max(len(line) for line in lines) + 4
    rule = "=" * width
    print("\n" + rule, *(f"  {line}" for line in lines), rule + "\n", sep="\n", flush=True)


def say(text: str) -> None:
    print(f"tlc lab: {text}", flush=True)


def lab_command(ns: argparse.Namespace, root: Path) -> list[str]:
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}"]
    if ns.port:
        cmd.append(f"--port={ns.port}")
    if ns.no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # JupyterLab refuses to start as root without it
    return cmd


@dataclass
class QueueServer:
    """The queue server `tlc lab` uses: one it started (`process`), or this user's own that
    it found running (`reused_pid`), on `port`."""

    port: int
    upstream: str | None
    process: subprocess.Popen[bytes] | None = None
    reused_pid: int | None = None
    restarts: int = 0
    log: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        """Start `tlc serve` on `port`; SystemExit with the end of its log if it fails."""
        self.log = runtime_dir() / f"server-{self.port}.log"
        cmd = [sys.executable, "-m", "tlc_widgets.cli", "serve", "--port", str(self.port)]
        cmd += ["--practice"] if self.upstream is None else ["--upstream", self.upstream]
        self.process = spawn(cmd, self.log)
        try:
            wait_ready(self.url, process=self.process, timeout=START_TIMEOUT_S, interval=0.2)
        except (ServerExited, ServerNotReady) as exc:
            stop_process(self.process)
            raise SystemExit(
                f"tlc lab: the queue server did not start ({exc}).\n{self.tail()}"
            ) from None
        remember_server(self.process.pid, self.port, self.log)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.reused_pid is not None and pid_alive(self.reused_pid)

    def restart(self) -> bool:
        """Start it again on the same port (kernels keep its URL); False once it has been
        restarted `MAX_RESTARTS` times, or the port was taken meanwhile."""
        code = "?" if self.process is None else self.process.returncode
        if self.restarts >= MAX_RESTARTS or not port_is_free(self.port):
            say(f"the queue server at {self.url} stopped (exit code {code}); not restarting it.")
            if self.log.name:
                say(f"its log: {self.log}")
            return False
        self.restarts += 1
        say(
            f"the queue server at {self.url} stopped (exit code {code}); restarting it "
            f"({self.restarts} of {MAX_RESTARTS}) …"
        )
        self.reused_pid = None
        try:
            self.start()
        except SystemExit as failed:
            say(f"{failed}".removeprefix("tlc lab: "))
            return False
        say(f"the queue server answers again at {self.url}.")
        return True

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            forget_server(self.process.pid)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def choose_server(ns: argparse.Namespace, upstream: str | None) -> tuple[QueueServer, str]:
    """This user's running queue server on `--server-port`, else a new one (on a free port if
    that one is taken); and a line for the banner saying which."""
    mine = our_server()
    if mine is not None and mine["port"] == ns.server_port:
        server = QueueServer(ns.server_port, upstream, reused_pid=int(mine["pid"]))
        return server, f"Using your queue server already running at {server.url} (as it is set up)."
    if port_is_free(ns.server_port):
        return QueueServer(ns.server_port, upstream), ""
    port = free_port()
    note = f"Port {ns.server_port} is taken by another program; the queue server uses {port}."
    return QueueServer(port, upstream), note


def run(ns: argparse.Namespace) -> None:
    """The `tlc lab` command (see the module docstring)."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stopping.set()

    # The children run in sessions of their own, so the terminal's signals reach only us:
    # Ctrl-C, `kill` and a closed terminal all end the loop below, which stops them in order.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_signal)
    wanted = ns.upstream or DEFAULT_UPSTREAM
    upstream = None if ns.practice or not probe_upstream(wanted) else wanted
    server, note = choose_server(ns, upstream)
    reused = server.reused_pid is not None
    lab: subprocess.Popen[bytes] | None = None
    try:
        if not reused:
            server.start()
        if reused:
            model_line = describe_existing(server.url)
        elif upstream is not None:
            model_line = f"MODEL SERVER: {upstream} (answering) — real models."
        else:
            model_line = (
                "PRACTICE MODEL — a statistical text generator, NOT an LLM. "
                f"({'--practice given' if ns.practice else f'nothing answered at {wanted}'})"
            )
        lines = ["TLC LLM Playground", model_line]
        if note:
            lines.append(note)
        lines.append(f"Queue server: {server.url} (kernels find it via TLC_SERVER_URL)")
        if not reused:
            lines.append(f"Queue server log: {server.log}")
        if upstream is None and not reused:
            lines.append(
                "For real models: start LM Studio's server (port 1234), run `tlc lab` again."
            )
        lines.append("Ctrl-C stops JupyterLab" + (" and the queue server." if not reused else "."))
        banner(*lines)
        root = ns.notebook_dir or find_notebooks()
        env = {**os.environ, "TLC_SERVER_URL": server.url}
        lab = subprocess.Popen(lab_command(ns, root), env=env, start_new_session=True)
        watching = True
        while not stopping.wait(1.0) and lab.poll() is None:
            if watching and not server.alive():
                watching = server.restart()
    finally:
        if stopping.is_set():
            ours = server.process is not None
            print()
            say("stopping JupyterLab" + (" and the queue server …" if ours else " …"))
        stop_process(lab, grace=10.0)
        server.stop()
