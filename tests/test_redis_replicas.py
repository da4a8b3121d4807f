"""Three `tlc serve --redis` processes, 300 clients, one upstream with 4 places, one kill -9.

Real parts only: a redis-server (the fixture), the practice model behind a counting
pass-through (it counts the replies it was asked for at once), and three real `tlc serve`
processes sharing the upstream's slots and event logs through Redis. What this shows of
#15 (docs/scale-out.md):

- the upstream never runs more than its 4 places, counted across the three replicas;
- every request of a surviving replica ends in exactly one terminal event;
- a replica killed with `kill -9` holds its places only until its leases run out (that the
  others then use them is `test_redis_service.py`'s dead-replica test);
- each request the killed replica had accepted ends exactly once for a client that moves
  to a survivor (`done` for those still waiting, which a survivor adopts and runs;
  `replica_lost` for those it was running), and the upstream is asked for none twice.
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
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import practice_server, read_events, wait_until
from tests.counting_upstream import Counter, counting_upstream
from tests.redis_fixture import RedisServer, redis_server  # noqa: F401
from tlc_widgets.launch import spawn, wait_ready
from tlc_widgets.server.store.redis_slots import RedisSlots, connect
from tlc_widgets.serving import free_port

pytestmark = pytest.mark.anyio

LEASE_S = 2.0  #: short, so the dead replica's places come back within the test


@contextmanager
def replica(
    upstream: str,
    redis: RedisServer,
    name: str,
    log: Path,
    slots: int = 4,
    settings: dict[str, str] | None = None,
) -> Iterator[tuple[int, str]]:
    """One `tlc serve --redis` process: (pid, url); `settings`: more TLC_* variables."""
    port = free_port()
    env = {**os.environ, "TLC_REDIS_NAME": name, "TLC_LEASE_S": str(LEASE_S), **(settings or {})}
    argv = [sys.executable, "-m", "tlc_widgets.cli", "serve", "--port", str(port)]
    argv += ["--upstream", upstream, "--slots", str(slots), "--redis", redis.url]
    process = spawn(argv, log, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process=process)
        yield process.pid, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.mark.timeout(300)  # 300 clients and four servers on a shared 2-core machine
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
        codes: dict[str, list[str]] = {url_a: [], url_b: [], url_c: []}
        cut: list[str] = []  # requests of the killed replica whose stream broke
        refused: list[int] = []  # submitted to the killed replica as it died: no answer

        async def one(url: str, i: int) -> None:
            body = {"prompt": f"story {i}", "user": f"u{i % 30}", "max_tokens": 20}
            events: list[tuple[int, str, dict[str, Any]]] = []
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                try:
                    r = await client.post("/api/requests", json=body)
                except httpx.TransportError:
                    assert url == url_c, "only the killed replica refuses"
                    refused.append(i)
                    return
                assert r.status_code == 202, r.text
                request_id = r.json()["id"]
                try:
                    events += [e async for e in read_events(client, request_id)]
                except httpx.TransportError:
                    assert url == url_c, "only the killed replica's clients lose their stream"
                    cut.append(request_id)
            if request_id in cut:  # the client moves to a survivor and reads on from there
                async with httpx.AsyncClient(base_url=url_a, timeout=120) as client:
                    after = events[-1][0] if events else None
                    events += [e async for e in read_events(client, request_id, after)]
            ends[url].append([n for _, n, _ in events if n in ("done", "error", "cancelled")])
            codes[url].extend(d.get("code", "") for _, n, d in events if n == "error")

        async def kill_c_mid_run() -> None:
            await wait_until(lambda: _at_least(upstream, 40), "40 replies under way", 6000)
            os.kill(pid_c, signal.SIGKILL)
            print(f"killed replica C after {upstream.started} replies had started")

        async with anyio.create_task_group() as tg:
            urls = itertools.cycle([url_a, url_b, url_c])
            for i, url in zip(range(300), urls, strict=False):
                tg.start_soon(one, url, i)
            tg.start_soon(kill_c_mid_run)
        slots = RedisSlots(connect(redis_server.url), name)

        async def all_free() -> bool:  # the killed replica's leases run out within LEASE_S
            return await slots.busy(upstream.url + "/v1") == 0

        await wait_until(all_free, "no lease left behind")
        await slots.client.aclose()
    survivors = ends[url_a] + ends[url_b]
    print(
        f"upstream: {upstream.started} replies; survivors ended {len(survivors)} requests; "
        f"killed replica: {len(ends[url_c])} accepted, {len(cut)} of them cut and read on "
        f"from a survivor, {len(refused)} refused as it died"
    )
    assert len(upstream.prompts) == len(set(upstream.prompts))  # none run twice
    assert upstream.peak <= 4  # never more than its places, across replicas, the kill too
    assert upstream.peak == 4  # and all 4 were used
    assert survivors == [["done"]] * 200  # one terminal event each, all of them done
    # Every request the killed replica accepted ended exactly once: done before the kill,
    # or `replica_lost`, written by a survivor, for a client that moved there.
    assert all(len(e) == 1 for e in ends[url_c])
    assert set(codes[url_c]) <= {"replica_lost"}
    assert len(ends[url_c]) + len(refused) == 100


async def _at_least(upstream: Counter, n: int) -> bool:
    return upstream.started >= n


def test_a_redis_password_is_kept_secret() -> None:
    """--redis URL may carry a password: settings hold it as a secret (never printed)."""
    from tlc_widgets.config import Settings

    settings = Settings(_env_file=None, redis_url="redis://:hunter2@127.0.0.1:6379/0")  # type: ignore[call-arg]
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert settings.redis_url is not None
    assert "hunter2" in settings.redis_url.get_secret_value()
