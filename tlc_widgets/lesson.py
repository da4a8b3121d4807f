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
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from .client import DEFAULT_URL
from .config import DEFAULT_UPSTREAM
from .serving import free_port

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
    if _health(url) is None:
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


def _health(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """`/healthz` of a queue server at `url`, or None if no queue server answers there."""
    try:
        response = httpx.get(f"{url}/healthz", timeout=timeout)
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    ours = response.status_code == 200 and isinstance(body, dict) and "upstreams" in body
    return body if ours else None


def _lm_studio_answers() -> bool:
    try:
        return httpx.get(f"{DEFAULT_UPSTREAM}/models", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as s:
        # The same option uvicorn binds with: a port only in TIME_WAIT counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _start(url: str, practice: bool | None, timeout: float) -> str:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in _LOOPBACK:
        raise RuntimeError(
            f"No queue server answers at {url}, and one can only be started on this machine. "
            "Check the address (TLC_SERVER_URL), or ask whoever runs that server."
        )
    host = "127.0.0.1"
    if _port_taken(host, port):  # by something that is not a queue server
        port = free_port(host)
    url = f"http://{host}:{port}"
    if practice is None:
        practice = not _lm_studio_answers()

    log = Path(tempfile.mkdtemp(prefix="tlc-server-")) / "server.log"
    command = [sys.executable, "-m", "tlc_widgets.cli", "serve", "--host", host]
    command += ["--port", str(port)] + (["--practice"] if practice else [])
    # Said explicitly, so a TLC_PRACTICE in the environment or in .env cannot contradict it.
    env = {**os.environ, "TLC_PRACTICE": "true" if practice else "false"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    _started.append(process)
    _wait_until_up(url, process, log, timeout)
    upstream = _PRACTICE_NOTE if practice else f"LM Studio at {DEFAULT_UPSTREAM}"
    joined = "with" if practice else "in front of"
    print(f"Started the queue server at {url} {joined} {upstream} (log: {log})")
    return url


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _health(url, timeout=1.0) is not None:
            return
        if process.poll() is not None:
            raise RuntimeError(
                f"The queue server stopped at once (exit code {process.returncode}). "
                f"The end of its log ({log}):\n{_tail(log)}"
            )
        time.sleep(0.1)
    process.terminate()
    process.wait(5)
    raise RuntimeError(
        f"The queue server did not answer at {url} within {timeout:g} s. "
        f"The end of its log ({log}):\n{_tail(log)}"
    )


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
