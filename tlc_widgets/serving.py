"""Run an ASGI app with uvicorn on a loopback port, in a thread of its own.

    >>> from tlc_widgets.serving import BackgroundServer
    >>> with BackgroundServer(app) as server:          # doctest: +SKIP
    ...     httpx.get(server.url + "/healthz")

Tests, benchmarks and lessons use this to start *real* servers that are spoken to over HTTP,
while the calling code keeps its own event loop (a notebook kernel's, or pytest's). The
thread owns a private event loop, so nothing the server does can block the caller.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Any

import uvicorn

__all__ = ["BackgroundServer", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """uvicorn in a daemon thread; `url` is ready once `start()` returns.

    The port is bound by us and handed to uvicorn as a socket, so two servers started at once
    can never race for the same port.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
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
        deadline = threading.Event()
        for _ in range(int(timeout / 0.01)):
            if self._server.started:
                return self
            if not self._thread.is_alive():
                break
            deadline.wait(0.01)
        raise RuntimeError(f"server on {self.url} did not start")

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
