"""Lesson helpers: make sure a queue server runs, so any notebook can be opened cold.

    >>> from tlc_widgets.lesson import ensure_server, server_info
    >>> url = ensure_server()          # doctest: +SKIP
    Started the queue server at http://127.0.0.1:8000 with the PRACTICE MODEL (…)
    >>> server_info()["models"]        # doctest: +SKIP

`ensure_server` reuses a queue server that already answers; otherwise it starts `tlc serve`
as a separate process (in its own session, so it outlives the kernel and other notebooks
can share it), in front of LM Studio if LM Studio answers, else with the practice model.
It sets `TLC_SERVER_URL`, so a `QueueClient()` made later in the same kernel finds it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from .client import DEFAULT_URL
from .config import DEFAULT_UPSTREAM
from .launch import (
    LOOPBACK,
    ServerExited,
    ServerNotReady,
    answers,
    free_port,
    is_queue_server,
    port_is_free,
    spawn,
    stop_process,
    wait_ready,
)
from .ownership import remember_server

__all__ = ["ensure_server", "server_info"]

#: Servers this kernel started (tests and cleanup code stop them; lessons leave them running).
_started: list[subprocess.Popen[bytes]] = []

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_PRACTICE_NOTE = "the PRACTICE MODEL (a statistical text generator, not an LLM)"


def ensure_server(
    url: str | None = None, *, practice: bool | None = None, timeout: float = 30
) -> str:
    """The URL of a running queue server: the one at `url` if it answers, else a new one.

    `practice`: True starts it with the practice model, False in front of LM Studio, None
    (the default) picks LM Studio if it answers at http://localhost:1234 within a second.
    Raises `RuntimeError` (with the end of the server's log) if it does not come up in time.
    """
    url = (url or os.environ.get("TLC_SERVER_URL") or DEFAULT_URL).rstrip("/")
    if is_queue_server(url, timeout=2.0) is None:
        url = _start(url, practice, timeout)
    os.environ["TLC_SERVER_URL"] = url
    return url


def server_info(url: str | None = None) -> dict[str, Any]:
    """What the server at `url` (default `TLC_SERVER_URL`) runs on: upstreams and models.

    >>> server_info()                                               # doctest: +SKIP
    {'url': 'http://127.0.0.1:8000', 'upstreams': [{'url': …, 'reachable': True}],
     'models': ['practice-fast', …], 'default': 'practice-fast', 'practice': True}
    """
    url = (url or os.environ.get("TLC_SERVER_URL") or DEFAULT_URL).rstrip("/")
    with httpx.Client(base_url=url, timeout=5) as http:
        health = http.get("/healthz").raise_for_status().json()
        listed = http.get("/api/models").raise_for_status().json()
    models = listed["models"]
    return {
        "url": url,
        "upstreams": health["upstreams"],
        "models": [m["id"] for m in models],
        "default": listed["default"],
        "practice": bool(models) and all(m["practice"] for m in models),
    }


# ---------------------------------------------------------------------------- internals


def _start(url: str, practice: bool | None, timeout: float) -> str:
    parts = urlsplit(url)
    host, port = parts.hostname or LOOPBACK, parts.port or 80
    if host not in _LOOPBACK:
        raise RuntimeError(
            f"No queue server answers at {url}, and one can only be started on this machine. "
            "Check the address (TLC_SERVER_URL), or ask whoever runs that server."
        )
    host = LOOPBACK
    if not port_is_free(port, host):  # held by something that is not a queue server
        port = free_port(host)
    url = f"http://{host}:{port}"
    if practice is None:
        practice = not answers(DEFAULT_UPSTREAM, "/models")

    log = Path(tempfile.mkdtemp(prefix="tlc-server-")) / "server.log"
    command = [sys.executable, "-m", "tlc_widgets.cli", "serve", "--host", host]
    command += ["--port", str(port)] + (["--practice"] if practice else [])
    # Said explicitly, so a TLC_PRACTICE in the environment or in .env cannot contradict it.
    env = {**os.environ, "TLC_PRACTICE": "true" if practice else "false"}
    # Its own session: the server outlives this kernel, and other notebooks can share it.
    process = spawn(command, log, env=env)
    _started.append(process)
    try:
        wait_ready(url, process=process, timeout=timeout, interval=0.1)
    except ServerExited:
        raise RuntimeError(
            f"The queue server stopped at once (exit code {process.returncode}). "
            f"The end of its log ({log}):\n{_tail(log)}"
        ) from None
    except ServerNotReady:
        stop_process(process)
        raise RuntimeError(
            f"The queue server did not answer at {url} within {timeout:g} s. "
            f"The end of its log ({log}):\n{_tail(log)}"
        ) from None
    remember_server(process.pid, port, log)  # `tlc lab` may reuse it: it is this user's
    upstream = _PRACTICE_NOTE if practice else f"LM Studio at {DEFAULT_UPSTREAM}"
    joined = "with" if practice else "in front of"
    print(f"Started the queue server at {url} {joined} {upstream} (log: {log})")
    return url


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
