"""Three `tlc serve --redis` processes, 300 clients, one upstream with 4 places, one kill -9.

Real parts only: a redis-server (the fixture), the practice model behind a counting
pass-through (it counts the replies it was asked for at once), and three real `tlc serve`
processes sharing the upstream's slots through Redis. What this shows of #15 today (the
slots are shared; each replica keeps its own line and records, docs/scale-out.md):

- the upstream never runs more than its 4 places, counted across the three replicas;
- every request of a surviving replica ends in exactly one terminal event;
- a replica killed with `kill -9` holds its places only until its leases run out: after
  that the survivors use all 4 again.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from tests.conftest import collect, practice_server, wait_until
from tests.counting_upstream import Counter, counting_upstream
from tests.redis_fixture import RedisServer, redis_server  # noqa: F401
from tlc_widgets.launch import spawn, wait_ready
from tlc_widgets.serving import free_port

pytestmark = pytest.mark.anyio

LEASE_S = 1.0  #: short, so the dead replica's places come back within the test


@contextmanager
def replica(upstream: str, redis: RedisServer, name: str, log: Path) -> Iterator[tuple[int, str]]:
    """One `tlc serve --redis` process: (pid, url)."""
    port = free_port()
    env = {**os.environ, "TLC_REDIS_NAME": name, "TLC_LEASE_S": str(LEASE_S)}
    argv = [sys.executable, "-m", "tlc_widgets.cli", "serve", "--port", str(port)]
    argv += ["--upstream", upstream, "--slots", "4", "--redis", redis.url]
    process = spawn(argv, log, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process=process)
        yield process.pid, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


async def test_300_clients_on_3_replicas_and_one_killed_mid_run(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = uuid.uuid4().hex
    with practice_server(parallel=64, tokens_per_second=100) as practice, ExitStack() as stack:
        upstream: Counter = stack.enter_context(counting_upstream(practice.url))
        replicas = [
            stack.enter_context(
                replica(upstream.url + "/v1", redis_server, name, tmp_path / f"r{i}.log")
            )
            for i in range(3)
        ]
        (_, url_a), (_, url_b), (pid_c, url_c) = replicas
        ends: dict[str, list[list[str]]] = {url_a: [], url_b: [], url_c: []}
        cut: list[str] = []  # requests of the killed replica whose stream broke

        async def one(url: str, i: int) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                body = {"prompt": f"story {i}", "user": f"u{i % 30}", "max_tokens": 20}
                try:
                    r = await client.post("/api/requests", json=body)
                    assert r.status_code == 202, r.text
                    events = await collect(client, r.json()["id"])
                except httpx.TransportError:
                    assert url == url_c, "only the killed replica's clients lose their stream"
                    cut.append(url)
                    return
                ends[url].append([n for _, n, _ in events if n in ("done", "error", "cancelled")])

        async def kill_c_then_watch_the_places() -> None:
            await wait_until(lambda: _at_least(upstream, 40), "40 replies under way", 6000)
            os.kill(pid_c, signal.SIGKILL)
            print(f"killed replica C after {upstream.started} replies had started")
            # Its leases run out within LEASE_S; the survivors look once a second.
            await anyio.sleep(LEASE_S + 1.5)
            upstream.peak = upstream.now  # from here on: only the two survivors

        async with anyio.create_task_group() as tg:
            urls = itertools.cycle([url_a, url_b, url_c])
            for i, url in zip(range(300), urls, strict=False):
                tg.start_soon(one, url, i)
            tg.start_soon(kill_c_then_watch_the_places)
    survivors = ends[url_a] + ends[url_b]
    print(
        f"upstream: {upstream.started} replies; survivors ended {len(survivors)} requests; "
        f"killed replica: {len(ends[url_c])} ended before the kill, {len(cut)} cut"
    )
    assert upstream.peak <= 4  # never more than its places, across replicas, after the kill too
    assert upstream.peak == 4  # and after the dead leases ran out, the survivors used all 4
    assert survivors == [["done"]] * 200  # one terminal event each, all of them done
    assert all(e == ["done"] for e in ends[url_c])
    assert len(ends[url_c]) + len(cut) == 100


async def _at_least(upstream: Counter, n: int) -> bool:
    return upstream.started >= n


def test_a_redis_password_is_kept_secret() -> None:
    """--redis URL may carry a password: settings hold it as a secret (never printed)."""
    from tlc_widgets.config import Settings

    settings = Settings(_env_file=None, redis_url="redis://:hunter2@127.0.0.1:6379/0")  # type: ignore[call-arg]
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert settings.redis_url is not None
    assert "hunter2" in settings.redis_url.get_secret_value()
