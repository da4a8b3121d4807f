"""Three `tlc serve --redis` replicas keep one fair line: the order and the places are the
whole class's, whichever replica each student's notebook talks to.

Real parts: a redis-server, the practice model behind a counting pass-through (it notes
each request's prompt in the order it arrives), and three real `tlc serve` processes with
one place between them. The class is paused while ten requests arrive on different
replicas; each client's place in line is then the one the embedded scheduler gives the
same arrivals; on resume the upstream receives them in exactly that order.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from pathlib import Path

import anyio
import httpx
import pytest

from tests.conftest import practice_server, read_events, wait_until
from tests.counting_upstream import Counter, counting_upstream
from tests.redis_fixture import RedisServer, redis_server  # noqa: F401
from tests.test_redis_replicas import replica
from tlc_widgets.server.scheduler import Entry, FairScheduler

pytestmark = pytest.mark.anyio

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
        clients = [stack.enter_context(httpx.Client(base_url=u, timeout=60)) for u in urls]
        assert clients[0].post("/api/admin/pause").json()["paused"]

        async def all_paused() -> bool:
            return all(c.get("/api/admin/requests").json()["paused"] for c in clients)

        await wait_until(all_paused, "every replica paused")
        ids: list[tuple[int, str]] = []
        for i, (r, user) in enumerate(ARRIVALS):
            body = {"prompt": f"p{i}", "user": user, "max_tokens": 4}
            answer = clients[r].post("/api/requests", json=body)
            assert answer.status_code == 202, answer.text
            ids.append((r, answer.json()["id"]))

        want = [(expected.index(f"p{i}") + 1, len(ARRIVALS)) for i in range(len(ARRIVALS))]

        async def places_are_the_whole_lines() -> bool:
            views = [clients[r].get(f"/api/requests/{rid}").json() for r, rid in ids]
            return [(v["position"], v["waiting"]) for v in views] == want

        await wait_until(places_are_the_whole_lines, "each client's place in the whole line")
        clients[2].post("/api/admin/resume")
        endings: list[list[str]] = []

        async def follow(url: str, request_id: str) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                names = [n async for _, n, _ in read_events(client, request_id)]
            endings.append([n for n in names if n in ("done", "error", "cancelled")])

        async with anyio.create_task_group() as tg:
            for r, rid in ids:
                tg.start_soon(follow, urls[r], rid)
    assert upstream.prompts == expected  # started in the fair order, across replicas
    assert upstream.peak == 1  # one place, counted across the three
    assert endings == [["done"]] * len(ARRIVALS)
