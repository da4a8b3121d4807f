"""Bounded connections on a real server: slow headers time out (408), oversized headers are
refused (431), and past the connection cap the slow ones make room while /healthz answers;
when every connection is busy a newcomer gets 503 `too_many_connections` at once."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import wait_until
from tlc_widgets.config import Settings
from tlc_widgets.server import create_app
from tlc_widgets.server.connections import connection_cap, uvicorn_options
from tlc_widgets.serving import BackgroundServer

pytestmark = pytest.mark.anyio

SLOW = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # never finished


@contextmanager
def guarded_server(**overrides: Any) -> Iterator[BackgroundServer]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        upstreams=["http://127.0.0.1:9/v1"],  # nothing there: health is what is under test
        history_path=":memory:",
        **overrides,
    )
    with BackgroundServer(create_app(settings), **uvicorn_options(settings)) as server:
        yield server


def slow_socket(server: BackgroundServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=30)
    sock.sendall(SLOW)
    return sock


def answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of the one response the server writes before it closes."""
    data = b""
    with sock:
        while chunk := sock.recv(65_536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    return int(head.split()[1]), json.loads(body)


def test_slow_and_oversized_headers_are_refused_with_a_named_error() -> None:
    with guarded_server(header_timeout_s=0.3, max_header_bytes=4096) as server:
        sock = slow_socket(server)
        status, body = answer(sock)
        assert (status, body["error"]["code"]) == (408, "request_timeout")
        # A connection that trickles a byte at a time gains nothing: the clock runs from
        # the first byte, not from the last.
        sock = slow_socket(server)
        for _ in range(3):
            sock.sendall(b"a")
        assert answer(sock)[0] == 408

        sock = socket.create_connection((server.host, server.port), timeout=30)
        sock.sendall(SLOW + b"x" * 8192)
        status, body = answer(sock)
        assert (status, body["error"]["code"]) == (431, "headers_too_large")

        with httpx.Client(base_url=server.url) as client:
            # Ordinary traffic is untouched: keep-alive requests, a body larger than the
            # header cap (a body is not a header).
            for _ in range(20):
                assert client.get("/healthz").status_code == 200
            r = client.post("/api/requests", json={"prompt": "x" * 50_000})
            assert r.status_code not in (408, 431) and "error" in r.json()

        # A kept-alive connection's *next* request is timed too.
        sock = socket.create_connection((server.host, server.port), timeout=30)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(65_536).startswith(b"HTTP/1.1 200")
        sock.sendall(SLOW)
        assert answer(sock)[0] == 408


def test_past_the_cap_slow_sockets_make_room_and_health_answers() -> None:
    with guarded_server(header_timeout_s=60, max_connections=10) as server:
        socks = [slow_socket(server) for _ in range(25)]
        with httpx.Client(base_url=server.url) as client:
            for _ in range(5):
                assert client.get("/healthz").status_code == 200
        # The oldest waiting connections were pushed out, named; the newest still wait.
        pushed = [answer(s) for s in socks[:10]]
        assert {(status, body["error"]["code"]) for status, body in pushed} == {
            (503, "too_many_connections")
        }
        socks[-1].settimeout(0.05)
        with pytest.raises(TimeoutError):
            socks[-1].recv(1)
        for s in socks:
            s.close()


async def test_when_every_connection_is_busy_a_newcomer_is_refused_at_once() -> None:
    with guarded_server(max_connections=3) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            streams = [client.stream("GET", "/api/queue/events") for _ in range(3)]
            opened = [await s.__aenter__() for s in streams]
            assert all(r.status_code == 200 for r in opened)
            sock = socket.create_connection((server.host, server.port), timeout=30)
            status, body = answer(sock)
            assert (status, body["error"]["code"]) == (503, "too_many_connections")
            assert "try again" in body["error"]["message"]
            for s in streams:
                await s.__aexit__(None, None, None)

            async def healthy() -> bool:
                async with httpx.AsyncClient(base_url=server.url) as fresh:
                    try:
                        return (await fresh.get("/healthz")).status_code == 200
                    except httpx.HTTPError:
                        return False

            await wait_until(healthy, "room for a new connection once the streams closed")


def test_the_cap_fits_the_open_file_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    settings = Settings(_env_file=None, max_connections=10**9)  # type: ignore[call-arg]
    assert connection_cap(settings) < soft


def test_the_slow_header_bench_runs_and_health_answers_throughout() -> None:
    """`bench/slow_headers.py --smoke`: the figure is the bench's; here only that it runs,
    that the attack reached the cap and the timeout, and that no probe failed."""
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench import slow_headers

    data = slow_headers.main(["--smoke"]).data
    assert data["probes_ok"] and not data["probes_failed"], data
    assert {"answered 408", "answered 503"} <= set(data["attacker"]), data["attacker"]
