"""`tlc lab`: the queue server and JupyterLab together, in one command.

    $ tlc lab                              # LM Studio if it answers, else the practice model
    $ tlc lab --upstream http://10.0.0.5:1234/v1 --no-browser
    $ tlc lab --practice --server-port 8001 --port 8890

1. Pick the model server: `--upstream URL` (or LM Studio at http://localhost:1234/v1) if its
   `/models` answers within a second, otherwise the built-in practice model — and say
   which in a banner, because a student must never mistake one for the other.
2. Start the queue server (`python -m tlc_widgets.cli serve`) on `--server-port` (8000).
   If a TLC queue server already answers there, use it; if something else holds the port,
   pick a free one. Kernels find it through `TLC_SERVER_URL`, set in JupyterLab's env.
3. Start JupyterLab on the project's `notebooks/` folder. Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from .config import DEFAULT_UPSTREAM

__all__ = ["add_parser", "find_notebooks", "probe_upstream", "run"]

PROBE_TIMEOUT_S = 1.0
START_TIMEOUT_S = 30.0


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
    try:
        return httpx.get(url.rstrip("/") + "/models", timeout=timeout_s).is_success
    except httpx.HTTPError:
        return False


def is_tlc_server(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if a TLC queue server answers at `url` (its `/healthz` has our shape)."""
    try:
        body = httpx.get(url + "/healthz", timeout=timeout_s).json()
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(body, dict) and body.get("status") == "ok" and "upstreams" in body


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
    print("\n" + "=" * width, *(f"  {line}" for line in lines), "=" * width + "\n", sep="\n")


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"tlc lab: the queue server exited (code {process.returncode}).")
        if is_tlc_server(url, timeout_s=0.5):
            return
        time.sleep(0.2)
    raise SystemExit(f"tlc lab: the queue server did not answer at {url} in {timeout_s:.0f} s.")


def start_queue_server(port: int, upstream: str | None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tlc_widgets.cli", "serve", "--port", str(port)]
    cmd += ["--practice"] if upstream is None else ["--upstream", upstream]
    # Own session: the terminal's Ctrl-C reaches only us, and we stop the children in order.
    return subprocess.Popen(cmd, start_new_session=True)


def lab_command(ns: argparse.Namespace, root: Path) -> list[str]:
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}"]
    if ns.port:
        cmd.append(f"--port={ns.port}")
    if ns.no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # JupyterLab refuses to start as root without it
    return cmd


def stop(process: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(ns: argparse.Namespace) -> None:
    """The `tlc lab` command (see the module docstring)."""
    # The children run in sessions of their own, so a terminal's signals reach only us: make
    # `kill` and a closed terminal stop them as Ctrl-C does, instead of orphaning them.
    signal.signal(signal.SIGTERM, _interrupt)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _interrupt)
    wanted = ns.upstream or DEFAULT_UPSTREAM
    upstream = None if ns.practice or not probe_upstream(wanted) else wanted
    server_url = f"http://127.0.0.1:{ns.server_port}"
    server: subprocess.Popen[bytes] | None = None
    if is_tlc_server(server_url):
        reuse = f"Using the queue server already running at {server_url} (as it is set up)."
    else:
        reuse = ""
        port = ns.server_port if port_is_free(ns.server_port) else free_port()
        server_url = f"http://127.0.0.1:{port}"
        server = start_queue_server(port, upstream)
    lab: subprocess.Popen[bytes] | None = None
    try:
        if server is not None:
            wait_until_up(server_url, server, START_TIMEOUT_S)
        if reuse:
            model_line = describe_existing(server_url)
        elif upstream is not None:
            model_line = f"MODEL SERVER: {upstream} (answering) — real models."
        else:
            model_line = (
                "PRACTICE MODEL — a statistical text generator, NOT an LLM. "
                f"({'--practice given' if ns.practice else f'nothing answered at {wanted}'})"
            )
        lines = ["TLC LLM Playground", model_line]
        lines.append(reuse or f"Queue server: {server_url} (kernels find it via TLC_SERVER_URL)")
        if upstream is None and not reuse:
            lines.append(
                "For real models: start LM Studio's server (port 1234), run `tlc lab` again."
            )
        lines.append("Ctrl-C stops JupyterLab" + ("." if reuse else " and the queue server."))
        banner(*lines)
        root = ns.notebook_dir or find_notebooks()
        env = {**os.environ, "TLC_SERVER_URL": server_url}
        lab = subprocess.Popen(lab_command(ns, root), env=env, start_new_session=True)
        lab.wait()
    except KeyboardInterrupt:
        print("\ntlc lab: stopping JupyterLab and the queue server …", flush=True)
    finally:
        stop(lab)
        stop(server)
