"""The Redis queue decides as the embedded scheduler, atomically, and says when Redis is gone.

Against a real redis-server (tests/redis_fixture.py): a random mix of pushes, cancels and
starts with busy models, caps and priorities gives the same answers on both queues; several
replicas popping at once start every request exactly once; a Redis that stops or freezes
gives `StoreUnavailable` (the service's 503), and the queue works again once it is back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.redis_fixture import RedisServer, redis_server, require_redis_server  # noqa: F401
from tlc_widgets.server.scheduler import Entry
from tlc_widgets.server.store import (
    EmbeddedQueue,
    EmbeddedSlots,
    FairQueue,
    Lease,
    SlotLeases,
    StoreUnavailable,
)
from tlc_widgets.server.store.redis_queue import RedisQueue, connect
from tlc_widgets.server.store.redis_slots import RedisSlots

USERS, MODELS = "abcd", ["m", "n"]

push = st.tuples(
    st.just("push"), st.sampled_from(USERS), st.sampled_from(MODELS), st.integers(0, 2),
    st.integers(0, 2),
)  # fmt: skip
remove = st.tuples(st.just("remove"), st.integers(0, 40))
pop = st.tuples(
    st.just("pop"),
    st.one_of(st.none(), st.frozensets(st.sampled_from(MODELS))),
    st.one_of(st.none(), st.dictionaries(st.sampled_from(USERS), st.integers(0, 2), min_size=1)),
    st.booleans(),
)
look = st.tuples(
    st.just("look"), st.one_of(st.none(), st.sampled_from(MODELS)), st.sampled_from(USERS)
)
# Each push is followed by up to two other steps, so queues grow and then get worked on.
steps = st.lists(
    st.tuples(push, st.lists(st.one_of(pop, remove, look), max_size=2)), min_size=1, max_size=30
).map(lambda rounds: [step for p, rest in rounds for step in (p, *rest)])


async def play(queue: FairQueue, plan: list[tuple[Any, ...]]) -> list[Any]:
    """Every answer the queue gives to `plan`; entries as their fields (not arrival numbers)."""

    def fields(e: Entry | None) -> Any:
        return None if e is None else (e.id, e.user, e.model, e.priority, e.cap)

    answers: list[Any] = []
    for i, step in enumerate(plan):
        if step[0] == "push":
            await queue.push(Entry(f"r{i}", step[1], step[2], step[3], step[4]))
        elif step[0] == "remove":
            answers.append(await queue.remove(f"r{step[1]}"))
        elif step[0] == "pop":
            answers.append(fields(await queue.pop_next(step[1], step[2], step[3])))
        else:
            answers.append([fields(e) for e in await queue.order(step[1])])
            answers.append(await queue.waiting_for(step[2]))
        answers.append(await queue.size())
    answers.append([fields(e) for e in await queue.order()])
    while (entry := await queue.pop_next()) is not None:
        answers.append(fields(entry))
    return answers


POOLS = {"m": [("A|m", 2), ("B|m", 1)], "n": [("A|n", 1)]}
start = st.tuples(
    st.just("start"),
    st.one_of(st.none(), st.dictionaries(st.sampled_from(USERS), st.integers(0, 2), min_size=1)),
    st.booleans(),
)
release = st.tuples(st.just("release"), st.integers(0, 20))
starts = st.lists(
    st.tuples(push, st.lists(st.one_of(start, start, release, remove), max_size=2)),
    min_size=1,
    max_size=30,
).map(lambda rounds: [step for p, rest in rounds for step in (p, *rest)])


async def play_starts(
    queue: FairQueue, slots: SlotLeases, plan: list[tuple[Any, ...]]
) -> list[Any]:
    """Every answer to `plan` when requests start with a lease (pop and lease in one step)."""
    answers: list[Any] = []
    leases: list[Lease] = []
    for i, step in enumerate(plan):
        if step[0] == "push":
            await queue.push(Entry(f"r{i}", step[1], step[2], step[3], step[4]))
        elif step[0] == "remove":
            answers.append(await queue.remove(f"r{step[1]}"))
        elif step[0] == "release":
            if leases:
                lease = leases.pop(step[1] % len(leases))
                answers.append((lease.pool, await slots.release(lease)))
        else:
            got = await queue.pop_and_lease(slots, POOLS, step[1], step[2])
            answers.append(None if got is None else (got[0].id, got[1].pool))
            if got is not None:
                leases.append(got[1])
        answers.append([await slots.busy(pool) for pool in ("A|m", "B|m", "A|n")])
    return answers


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as p:
        yield p


@pytest.fixture(scope="module")
def client(redis_server: RedisServer, portal: BlockingPortal) -> Iterator[Redis]:  # noqa: F811
    redis = connect(redis_server.url)
    yield redis
    portal.call(redis.aclose)


@settings(deadline=None, max_examples=200)  # speed is bench/'s business
@given(plan=steps)
def test_redis_makes_the_embedded_schedulers_every_decision(
    portal: BlockingPortal, client: Redis, plan: list[tuple[Any, ...]]
) -> None:
    embedded = portal.call(play, EmbeddedQueue(), plan)
    shared = portal.call(play, RedisQueue(client, name=uuid.uuid4().hex), plan)
    assert shared == embedded


@settings(deadline=None, max_examples=150)
@given(plan=starts)
def test_pop_and_lease_decides_as_the_embedded_store_and_never_overfills(
    portal: BlockingPortal, client: Redis, plan: list[tuple[Any, ...]]
) -> None:
    embedded = portal.call(play_starts, EmbeddedQueue(), EmbeddedSlots(ttl_s=600), plan)
    name = uuid.uuid4().hex
    slots = RedisSlots(client, name=name, ttl_s=600)
    shared = portal.call(play_starts, RedisQueue(client, name=name), slots, plan)
    assert shared == embedded
    for busy in (a for a in shared if isinstance(a, list) and len(a) == 3):
        assert busy[0] <= 2 and busy[1] <= 1 and busy[2] <= 1


def test_a_request_cannot_be_pushed_twice(portal: BlockingPortal, client: Redis) -> None:
    queue = RedisQueue(client, name=uuid.uuid4().hex)
    portal.call(queue.push, Entry("r1", "ann", "m"))
    with pytest.raises(ValueError, match="already waiting"):
        portal.call(queue.push, Entry("r1", "ann", "m"))


@pytest.mark.anyio
async def test_replicas_popping_at_once_start_every_request_exactly_once(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    name, n = uuid.uuid4().hex, 300
    setup = RedisQueue(connect(redis_server.url), name)
    for i in range(n):
        await setup.push(Entry(f"r{i}", f"user{i % 7}", "m"))
    started: list[str] = []

    async def replica() -> None:
        client = connect(redis_server.url)  # a connection of its own, like another process
        queue = RedisQueue(client, name)
        while (entry := await queue.pop_next({"m"})) is not None:
            started.append(entry.id)
        await client.aclose()

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(replica)
    assert sorted(started) == sorted(f"r{i}" for i in range(n))
    assert await setup.size() == 0
    await setup.client.aclose()


@pytest.mark.anyio
async def test_replicas_starting_at_once_never_exceed_capacity(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """Six replicas pop-and-lease 200 requests against one pool of 4 places: each request
    starts once, and no more than 4 ever hold a place, counted by Redis and by the tasks."""
    name, n, capacity = uuid.uuid4().hex, 200, 4
    setup = RedisQueue(connect(redis_server.url), name)
    for i in range(n):
        await setup.push(Entry(f"r{i}", f"user{i % 9}", "m"))
    started: list[str] = []
    holding, most = 0, 0

    async def replica(k: int) -> None:
        nonlocal holding, most
        client = connect(redis_server.url)
        queue, slots = RedisQueue(client, name), RedisSlots(client, name, 30, f"replica{k}")
        while await queue.size():
            got = await queue.pop_and_lease(slots, {"m": [("box|m", capacity)]})
            if got is None:
                await anyio.lowlevel.checkpoint()  # all places held: let a holder finish
                continue
            holding += 1
            most = max(most, holding, await slots.busy("box|m"))
            started.append(got[0].id)
            await anyio.lowlevel.checkpoint()
            holding -= 1
            assert await slots.release(got[1])
        await client.aclose()

    async with anyio.create_task_group() as tg:
        for k in range(6):
            tg.start_soon(replica, k)
    assert sorted(started) == sorted(f"r{i}" for i in range(n))
    assert 0 < most <= capacity
    await setup.client.aclose()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server this test may stop, freeze and restart."""
    with RedisServer(require_redis_server()) as server:
        yield server


@pytest.mark.anyio
async def test_redis_restarting_gives_store_unavailable_then_recovers(
    own_redis: RedisServer,
) -> None:
    queue = RedisQueue(connect(own_redis.url), "restart")
    await queue.push(Entry("before", "ann", "m"))
    own_redis.stop()
    with pytest.raises(StoreUnavailable, match="not answering"):
        await queue.push(Entry("during", "ann", "m"))
    with pytest.raises(StoreUnavailable):
        await queue.pop_next()
    own_redis.start()
    # Without persistence the restarted Redis is empty; the scripts load themselves again.
    await queue.push(Entry("after", "ann", "m"))
    entry = await queue.pop_next({"m"})
    assert entry is not None and entry.id == "after"
    await queue.client.aclose()


@pytest.mark.anyio
async def test_a_frozen_redis_gives_store_unavailable_not_a_hang(own_redis: RedisServer) -> None:
    queue = RedisQueue(connect(own_redis.url), "frozen")
    await queue.push(Entry("r1", "ann", "m"))
    own_redis.pause()
    try:
        with pytest.raises(StoreUnavailable):
            await queue.size()  # answered within the client's timeout, as an error
    finally:
        own_redis.resume()
    queue.client.connection_pool.reset()  # the timed-out connection may hold a late reply
    assert await queue.contains("r1")
    await queue.client.aclose()
