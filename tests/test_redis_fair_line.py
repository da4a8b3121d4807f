"""Three `tlc serve --redis` replicas keep one fair line: the order and the places are the
whole class's, whichever replica each student's notebook talks to.

Real parts: a redis-server, the practice model behind a counting pass-through (it notes
each request's prompt in the order it arrives), and three real `tlc serve` processes with
one place between them. The class is paused while ten requests arrive on different
replicas; each client's place in line is then the one the embedded scheduler gives the
same arrivals; on resume the upstream receives them in exactly that order. And a replica
killed with `kill -9` while its requests wait: the others run them, and each client that
reconnects elsewhere with `Last-Event-ID` reads on to `done`, no event missed or doubled.
"""

from __future__ import annotations

import os
import signal
import uuid
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import anyio
import httpx
import pytest

from tests.conftest import practice_server, read_events, wait_until
from tests.counting_upstream import Counter, counting_upstream
from tests.redis_fixture import RedisServer, redis_server  # noqa: F401
from tests.test_redis_replicas import replica
from tlc_widgets.server.scheduler import Entry, FairScheduler
from tlc_widgets.server.store.redis_conn import connect

pytestmark = pytest.mark.anyio

TERMINAL = ("done", "error", "cancelled")

#: (replica, user) for each arrival: a heavy user on two replicas, light users on the others
ARRIVALS = [(0, "heavy")] * 5 + [(1, "ann"), (2, "bob"), (2, "heavy"), (1, "cat"), (0, "ann")]


def fair_order() -> list[str]:
    """The prompts in the order one process's scheduler starts these arrivals."""
    line = FairScheduler()
    for i, (_, user) in enumerate(ARRIVALS):
        line.push(Entry(f"p{i}", user, "m"))
    return [entry.id for entry in iter(lambda: line.pop_next(lambda model: True), None)]


@pytest.mark.timeout(180)
async def test_three_replicas_keep_one_fair_line_with_places_for_everyone(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    name, expected = uuid.uuid4().hex, fair_order()
    with practice_server(parallel=8, tokens_per_second=200) as practice, ExitStack() as stack:
        upstream: Counter = stack.enter_context(counting_upstream(practice.url))
        urls = [
            stack.enter_context(
                replica(upstream.url + "/v1", redis_server, name, tmp_path / f"r{i}.log", slots=1)
            )[1]
            for i in range(3)
        ]
        async with AsyncExitStack() as clients_stack:
            clients = [
                await clients_stack.enter_async_context(httpx.AsyncClient(base_url=u, timeout=60))
                for u in urls
            ]
            await pause_all(clients)
            ids: list[tuple[int, str]] = []
            for i, (r, user) in enumerate(ARRIVALS):
                body = {"prompt": f"p{i}", "user": user, "max_tokens": 4}
                answer = await clients[r].post("/api/requests", json=body)
                assert answer.status_code == 202, answer.text
                ids.append((r, answer.json()["id"]))
            want = [(expected.index(f"p{i}") + 1, len(ARRIVALS)) for i in range(len(ARRIVALS))]

            async def places_are_the_whole_lines() -> bool:
                views = [(await clients[r].get(f"/api/requests/{rid}")).json() for r, rid in ids]
                return [(v["position"], v["waiting"]) for v in views] == want

            await wait_until(places_are_the_whole_lines, "each client's place in the whole line")
            await clients[2].post("/api/admin/resume")
            endings: list[list[str]] = []

            async def follow(client: httpx.AsyncClient, request_id: str) -> None:
                names = [n async for _, n, _ in read_events(client, request_id)]
                endings.append([n for n in names if n in TERMINAL])

            async with anyio.create_task_group() as tg:
                for r, rid in ids:
                    tg.start_soon(follow, clients[r], rid)
    assert upstream.prompts == expected  # started in the fair order, across replicas
    assert upstream.peak == 1  # one place, counted across the three
    assert endings == [["done"]] * len(ARRIVALS)


@pytest.mark.timeout(180)
async def test_a_killed_replicas_waiting_requests_are_run_by_the_others(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = uuid.uuid4().hex
    with practice_server(parallel=8, tokens_per_second=200) as practice, ExitStack() as stack:
        upstream: Counter = stack.enter_context(counting_upstream(practice.url))
        (_, url_a), (_, url_b), (pid_c, url_c) = [
            stack.enter_context(
                replica(upstream.url + "/v1", redis_server, name, tmp_path / f"r{i}.log", slots=2)
            )
            for i in range(3)
        ]
        async with (
            httpx.AsyncClient(base_url=url_a, timeout=60) as a,
            httpx.AsyncClient(base_url=url_b, timeout=60) as b,
        ):
            async with httpx.AsyncClient(base_url=url_c, timeout=60) as c:
                await pause_all([a, c])
                bodies = [{"prompt": f"c{i}", "user": f"u{i}", "max_tokens": 6} for i in range(4)]
                on_c = [(await c.post("/api/requests", json=body)).json()["id"] for body in bodies]
            body = {"prompt": "a0", "user": "ann", "max_tokens": 6}
            on_a = (await a.post("/api/requests", json=body)).json()["id"]
            seen: dict[str, list[tuple[int, str]]] = {rid: [] for rid in on_c}

            async def read_on_c_then_on_b(request_id: str) -> None:
                async with httpx.AsyncClient(base_url=url_c, timeout=60) as client:
                    try:
                        async for n, event, _ in read_events(client, request_id):
                            seen[request_id].append((n, event))
                    except httpx.TransportError:
                        pass  # replica C is gone: read on from B, after the last event seen
                last = seen[request_id][-1][0] if seen[request_id] else None
                async for n, event, _ in read_events(b, request_id, last):
                    seen[request_id].append((n, event))

            async def each_saw_its_place() -> bool:
                return all(any(e == "queued" for _, e in got) for got in seen.values())

            async with anyio.create_task_group() as tg:
                for rid in on_c:
                    tg.start_soon(read_on_c_then_on_b, rid)
                await wait_until(each_saw_its_place, "each client of C saw its place")
                os.kill(pid_c, signal.SIGKILL)
                await a.post("/api/admin/resume")
            ending_a = [n async for _, n, _ in read_events(a, on_a) if n in TERMINAL]
            texts = [(await b.get(f"/api/requests/{rid}")).json()["text"] for rid in on_c]
    assert sorted(upstream.prompts) == ["a0", "c0", "c1", "c2", "c3"]  # each run once
    assert ending_a == ["done"]
    for rid in on_c:
        ids = [n for n, _ in seen[rid]]
        assert ids == list(range(1, len(ids) + 1))  # no event missed or doubled
        assert [e for _, e in seen[rid] if e in TERMINAL] == ["done"]
    assert all(texts)


async def pause_all(clients: list[httpx.AsyncClient]) -> None:
    """Pause the class on the first replica; return once each of `clients` says so."""
    assert (await clients[0].post("/api/admin/pause")).json()["paused"]

    async def all_paused() -> bool:
        states = [(await c.get("/api/admin/requests")).json() for c in clients]
        return all(state["paused"] for state in states)

    await wait_until(all_paused, "every replica paused")


@pytest.mark.timeout(180)
async def test_a_replica_taken_for_dead_while_stopped_runs_nothing_twice(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """SIGSTOP a replica past its lease time while its requests wait: the other adopts and
    runs them; once it runs again it finds out, leaves them to the other, and its own
    clients still read each reply to one `done` — and the upstream runs each once."""
    name = uuid.uuid4().hex
    with practice_server(parallel=8, tokens_per_second=200) as practice, ExitStack() as stack:
        upstream: Counter = stack.enter_context(counting_upstream(practice.url))
        (_, url_a), (pid_b, url_b) = [
            stack.enter_context(
                replica(upstream.url + "/v1", redis_server, name, tmp_path / f"r{i}.log", slots=2)
            )
            for i in range(2)
        ]
        async with (
            httpx.AsyncClient(base_url=url_a, timeout=60) as a,
            httpx.AsyncClient(base_url=url_b, timeout=60) as b,
        ):
            await pause_all([a, b])
            bodies = [{"prompt": f"b{i}", "user": f"u{i}", "max_tokens": 6} for i in range(2)]
            on_b = [(await b.post("/api/requests", json=body)).json()["id"] for body in bodies]
            endings: dict[str, list[str]] = {}

            async def read_on_b(request_id: str) -> None:
                async with httpx.AsyncClient(base_url=url_b, timeout=60) as client:
                    names = [n async for _, n, _ in read_events(client, request_id)]
                endings[request_id] = [n for n in names if n in TERMINAL]

            redis = connect(redis_server.url)

            async def only_a_alive() -> bool:
                return len(await redis.keys(f"tlc:{{{name}}}:alive:*")) == 1

            async def both_ran() -> bool:
                return sorted(upstream.prompts) == ["b0", "b1"]

            async with anyio.create_task_group() as tg:
                for rid in on_b:
                    tg.start_soon(read_on_b, rid)
                os.kill(pid_b, signal.SIGSTOP)
                try:
                    await wait_until(only_a_alive, "B taken for dead")
                    await a.post("/api/admin/resume")
                    await wait_until(both_ran, "A running B's requests")
                finally:
                    os.kill(pid_b, signal.SIGCONT)
            await redis.aclose()
            texts = [(await a.get(f"/api/requests/{rid}")).json()["text"] for rid in on_b]
    assert sorted(upstream.prompts) == ["b0", "b1"]  # each once: B ran neither again
    assert endings == {rid: ["done"] for rid in on_b}  # B's own clients got the ending
    assert all(texts)
