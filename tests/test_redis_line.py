"""The line replicas share: a claim starts what the embedded scheduler would, on its replica.

Against a real redis-server (tests/redis_fixture.py). Two replicas push requests into one
shared queue; whichever claims, the request started is the one the embedded store's
`pop_and_lease` picks with the same running counts (the leases held, whoever holds them),
and it is started by the replica that holds it: another replica's claim names that
replica and changes nothing. A dead replica's requests are dropped on the way.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.redis_fixture import RedisServer, redis_server  # noqa: F401
from tests.test_redis_queue import POOLS, USERS
from tlc_widgets.server.scheduler import Entry
from tlc_widgets.server.store import EmbeddedQueue, EmbeddedSlots, Lease
from tlc_widgets.server.store.redis_queue import RedisQueue, connect
from tlc_widgets.server.store.redis_slots import RedisSlots

REPLICAS = ("ra", "rb")

push = st.tuples(
    st.just("push"), st.sampled_from(REPLICAS), st.sampled_from(USERS),
    st.sampled_from(["m", "n"]), st.integers(0, 2), st.integers(0, 2),
)  # fmt: skip
claim = st.tuples(st.just("claim"), st.sampled_from(REPLICAS), st.booleans())
release = st.tuples(st.just("release"), st.integers(0, 20))
remove = st.tuples(st.just("remove"), st.integers(0, 40))
plans = st.lists(
    st.tuples(push, st.lists(st.one_of(claim, claim, release, remove), max_size=2)),
    min_size=1,
    max_size=30,
).map(lambda rounds: [step for p, rest in rounds for step in (p, *rest)])


async def play_embedded(plan: list[tuple[Any, ...]]) -> list[Any]:
    """The decisions of one process's store, with running counts from the leases held."""
    queue, slots = EmbeddedQueue(), EmbeddedSlots(ttl_s=600)
    answers: list[Any] = []
    held: list[tuple[Lease, str]] = []
    for i, step in enumerate(plan):
        if step[0] == "push":
            await queue.push(Entry(f"r{i}", *step[2:]))
        elif step[0] == "remove":
            answers.append(await queue.remove(f"r{step[1]}"))
        elif step[0] == "release":
            if held:
                lease, _ = held.pop(step[1] % len(held))
                answers.append((lease.pool, await slots.release(lease)))
        else:
            running = Counter(user for _, user in held)
            got = await queue.pop_and_lease(slots, POOLS, running, step[2])
            answers.append(None if got is None else (got[0].id, got[1].pool))
            if got is not None:
                held.append((got[1], got[0].user))
        answers.append([await slots.busy(pool) for pool in ("A|m", "B|m", "A|n")])
    return answers


async def play_shared(client: Redis, plan: list[tuple[Any, ...]]) -> list[Any]:
    """The same plan on a shared line: each push made by its replica, each claim by the one
    the plan names — and, when that claim names another replica, by that one."""
    name = uuid.uuid4().hex
    slots = RedisSlots(client, name=name, ttl_s=600)
    lines = {r: RedisQueue(client, name=name, replica=r) for r in REPLICAS}
    for r in REPLICAS:  # both alive
        await client.set(f"tlc:{{{name}}}:alive:{r}", 1, ex=600)
    owner: dict[str, str] = {}
    answers: list[Any] = []
    held: list[Lease] = []
    for i, step in enumerate(plan):
        if step[0] == "push":
            owner[f"r{i}"] = step[1]
            await lines[step[1]].push(Entry(f"r{i}", *step[2:]))
        elif step[0] == "remove":
            answers.append(await lines[REPLICAS[0]].remove(f"r{step[1]}"))
        elif step[0] == "release":
            if held:
                lease = held.pop(step[1] % len(held))
                answers.append((lease.pool, await slots.release(lease)))
        else:
            size = await lines[step[1]].size()
            got = await lines[step[1]].claim(slots, POOLS, step[2])
            if got is not None and got.lease is None:
                assert got.owner == owner[got.entry.id] != step[1]
                assert await lines[step[1]].size() == size  # a claim for another changes nothing
                got = await lines[got.owner].claim(slots, POOLS, step[2])
                assert got is not None and got.lease is not None
            if got is not None:
                assert got.lease is not None
                held.append(got.lease)
            answers.append(None if got is None or not got.lease else (got.entry.id, got.lease.pool))
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


@settings(deadline=None, max_examples=150)  # speed is bench/'s business
@given(plan=plans)
def test_a_shared_line_starts_what_one_process_would(
    portal: BlockingPortal, client: Redis, plan: list[tuple[Any, ...]]
) -> None:
    assert portal.call(play_shared, client, plan) == portal.call(play_embedded, plan)


def test_a_dead_replicas_requests_are_dropped_and_a_live_ones_are_left_to_it(
    portal: BlockingPortal, client: Redis
) -> None:
    name = uuid.uuid4().hex
    slots = RedisSlots(client, name=name, ttl_s=600)
    ours, theirs, dead = (RedisQueue(client, name, r) for r in ("ours", "theirs", "dead"))
    for r in ("ours", "theirs"):
        portal.call(lambda r=r: client.set(f"tlc:{{{name}}}:alive:{r}", 1, ex=600))
    portal.call(dead.push, Entry("d1", "dan", "m"))  # first in line, but nobody runs it
    portal.call(theirs.push, Entry("t1", "tom", "m"))
    portal.call(ours.push, Entry("o1", "oli", "m"))
    got = portal.call(ours.claim, slots, POOLS, False)
    assert got is not None and (got.entry.id, got.lease, got.owner) == ("t1", None, "theirs")
    assert portal.call(ours.order) == portal.call(theirs.order)  # one line, seen alike
    assert [e.id for e in portal.call(ours.order)] == ["t1", "o1"]  # the dead one is gone
    started = portal.call(theirs.claim, slots, POOLS, False)
    assert started is not None and started.entry.id == "t1" and started.lease is not None
    assert started.lease.id.endswith("|tom")  # the lease names its user: caps count it
    mine = portal.call(ours.claim, slots, POOLS, False)
    assert mine is not None and mine.entry.id == "o1" and mine.lease is not None
    assert portal.call(ours.size) == 0


def test_a_claim_needs_the_queues_replica_and_its_slots(
    portal: BlockingPortal, client: Redis
) -> None:
    name = uuid.uuid4().hex
    with pytest.raises(TypeError, match="replica name"):
        portal.call(RedisQueue(client, name).claim, RedisSlots(client, name), POOLS, False)
    with pytest.raises(TypeError, match="RedisSlots of this queue"):
        portal.call(RedisQueue(client, name, "r").claim, RedisSlots(client, "other"), POOLS, False)


def test_a_dead_replicas_request_with_a_ticket_is_adopted_by_the_claimer(
    portal: BlockingPortal, client: Redis
) -> None:
    name = uuid.uuid4().hex
    slots = RedisSlots(client, name=name, ttl_s=600)
    ours, dead = RedisQueue(client, name, "ours"), RedisQueue(client, name, "dead")
    portal.call(lambda: client.set(f"tlc:{{{name}}}:alive:ours", 1, ex=600))
    who = '{"user":"dan","replica":"dead","model":"m"}'
    portal.call(lambda: client.set(f"tlc:{{{name}}}:who:d1", who))
    portal.call(lambda: client.hset(f"tlc:{{{name}}}:live", "d1", "dead"))  # type: ignore[misc]

    portal.call(dead.push, Entry("d1", "dan", "m"), '{"how": "to run it"}', 60)
    got = portal.call(ours.claim, slots, POOLS, False)
    assert got is not None and got.entry.id == "d1" and got.lease is not None
    assert got.ticket is not None and json.loads(got.ticket) == {"how": "to run it"}
    # Its log's notes name the adopter now, so no survivor ends it as the dead one's.
    assert portal.call(lambda: client.hget(f"tlc:{{{name}}}:live", "d1")) == b"ours"  # type: ignore[misc]
    assert (
        json.loads(portal.call(lambda: client.get(f"tlc:{{{name}}}:who:d1")))["replica"] == "ours"
    )
    assert portal.call(lambda: client.exists(f"tlc:{{{name}}}:b:d1")) == 0  # the ticket is spent


def test_a_request_arriving_at_a_free_place_is_pushed_and_claimed_in_one_step(
    portal: BlockingPortal, client: Redis
) -> None:
    name = uuid.uuid4().hex
    slots = RedisSlots(client, name=name, ttl_s=600)
    line = RedisQueue(client, name, "me")
    portal.call(lambda: client.set(f"tlc:{{{name}}}:alive:me", 1, ex=600))
    first = portal.call(line.push_and_claim, Entry("r1", "ann", "m"), "{}", 60, slots, POOLS, False)
    assert first is not None and first.entry.id == "r1" and first.lease is not None
    # B|m has one place, A|m two: three arrivals start, the fourth waits in line.
    started = [
        portal.call(
            line.push_and_claim, Entry(f"r{i}", f"u{i}", "m"), "{}", 60, slots, POOLS, False
        )
        for i in range(2, 5)
    ]
    assert [s is not None for s in started] == [True, True, False]
    assert [e.id for e in portal.call(line.order)] == ["r4"]
    again = portal.call(line.push_and_claim, Entry("r4", "u4", "m"), "{}", 60, slots, POOLS, False)
    assert again is None and [e.id for e in portal.call(line.order)] == ["r4"]  # joined once
