"""Slot leases: never more holders than capacity across replicas, and a dead holder's places return.

Against a real redis-server: many tasks with connections of their own race for 4 places; a
lease nobody renews runs out and its place comes back; a replica killed with `kill -9` stops
renewing and its places come back after the lease time; `holding` renews while the body
runs and cancels it with `LeaseLost` when the lease is gone. The basic rules run on the
embedded table too, so both keep the same contract.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.lowlevel
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.redis_fixture import RedisServer, redis_server, require_redis_server  # noqa: F401
from tlc_widgets.server.store import (
    EmbeddedSlots,
    LeaseLost,
    SlotLeases,
    StoreUnavailable,
    holding,
    renewing,
)
from tlc_widgets.server.store.redis_slots import RedisSlots, connect

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["embedded", "redis"])
async def make(
    request: pytest.FixtureRequest, anyio_backend: str
) -> AsyncIterator[Callable[[float], SlotLeases]]:
    if request.param == "embedded":
        yield lambda ttl: EmbeddedSlots(ttl_s=ttl)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = connect(server.url)
    name = uuid.uuid4().hex
    yield lambda ttl: RedisSlots(client, name=name, ttl_s=ttl)
    await client.aclose()


async def eventually(check: Callable[[], object], within_s: float = 20.0) -> None:
    """Wait for a lease to run out: time passing is the thing under test here."""
    deadline = time.monotonic() + within_s
    while not await check():  # type: ignore[misc]
        assert time.monotonic() < deadline, "the lease never ran out"
        await anyio.sleep(0.05)


async def test_capacity_holds_and_release_gives_the_place_back(
    make: Callable[[float], SlotLeases],
) -> None:
    slots = make(30)
    first, second = await slots.acquire("p", 2), await slots.acquire("p", 2)
    assert first is not None and second is not None and first.id != second.id
    assert await slots.acquire("p", 2) is None
    assert await slots.busy("p") == 2 and await slots.busy("other") == 0
    assert await slots.release(first) is True
    assert await slots.release(first) is False  # once
    assert await slots.renew(second) is True
    assert await slots.acquire("p", 2) is not None


async def test_a_lease_nobody_renews_runs_out(make: Callable[[float], SlotLeases]) -> None:
    slots = make(1.0)
    lease = await slots.acquire("p", 1)
    assert lease is not None and await slots.acquire("p", 1) is None

    async def free() -> bool:
        return await slots.busy("p") == 0

    await eventually(free)
    assert await slots.renew(lease) is False  # too late: the place may be someone else's
    assert await slots.acquire("p", 1) is not None


async def test_holding_renews_while_the_body_runs(make: Callable[[float], SlotLeases]) -> None:
    slots = make(0.6)  # renewed every 0.2 s: a loaded machine's stalls stay well inside
    async with holding(slots, "p", 1):
        await anyio.sleep(2.0)  # over three lease times: only renewals keep it
        assert await slots.busy("p") == 1 and await slots.acquire("p", 1) is None
    assert await slots.busy("p") == 0


async def test_a_lost_lease_cancels_the_body(make: Callable[[float], SlotLeases]) -> None:
    slots = make(0.3)
    reached_end = False
    with pytest.raises(LeaseLost, match="ran out"):
        async with holding(slots, "p", 1) as lease:
            await slots.release(lease)  # as if Redis had lost it, or it had run out
            await anyio.sleep_forever()
            reached_end = True
    assert not reached_end


async def test_renewing_holds_a_lease_taken_by_pop_and_lease(
    make: Callable[[float], SlotLeases],
) -> None:
    slots = make(0.6)
    lease = await slots.acquire("p", 1)
    assert lease is not None
    async with renewing(slots, lease):
        await anyio.sleep(2.0)  # over three lease times: only renewals keep it
        assert await slots.acquire("p", 1) is None
    assert await slots.busy("p") == 0


async def test_racing_replicas_never_hold_more_than_capacity(redis_server: RedisServer) -> None:  # noqa: F811
    capacity, replicas, rounds, name = 4, 16, 15, uuid.uuid4().hex
    holders, most, taken, watcher = 0, 0, 0, connect(redis_server.url)
    seen_busy: list[int] = []

    async def replica() -> None:
        nonlocal holders, most, taken
        client = connect(redis_server.url)  # a connection of its own, like another process
        slots = RedisSlots(client, name=name, ttl_s=30)
        for _ in range(rounds):
            lease = await slots.acquire("box|m", capacity)
            if lease is None:
                await anyio.lowlevel.checkpoint()
                continue
            holders += 1
            taken += 1
            most = max(most, holders)
            seen_busy.append(await RedisSlots(watcher, name=name).busy("box|m"))
            await anyio.lowlevel.checkpoint()
            holders -= 1
            assert await slots.release(lease)
        await client.aclose()

    async with anyio.create_task_group() as tg:
        for _ in range(replicas):
            tg.start_soon(replica)
    assert taken > 0 and most <= capacity and max(seen_busy) <= capacity
    assert await RedisSlots(watcher, name=name).busy("box|m") == 0
    await watcher.aclose()


HOLDER = """
import sys, anyio
from tlc_widgets.server.store import holding
from tlc_widgets.server.store.redis_slots import RedisSlots, connect

async def main(url, name, capacity):
    slots = RedisSlots(connect(url), name=name, ttl_s=1.5, replica="doomed")
    async with holding(slots, "box|m", capacity), holding(slots, "box|m", capacity):
        print("held", flush=True)
        await anyio.sleep_forever()

anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


async def test_a_replica_killed_with_kill_9_gives_its_places_back(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    name = uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, "-c", HOLDER, redis_server.url, name, "2"]
    async with await anyio.open_process(args, env=env, stderr=None) as doomed:
        assert doomed.stdout is not None
        line = await BufferedByteReceiveStream(doomed.stdout).receive_until(b"\n", 100)
        assert line.strip() == b"held"
        client = connect(redis_server.url)
        slots = RedisSlots(client, name=name, ttl_s=30)
        assert await slots.acquire("box|m", 2) is None  # the live replica renews both
        doomed.send_signal(signal.SIGKILL)
        assert await doomed.wait() == -signal.SIGKILL

        async def free() -> bool:
            return await slots.busy("box|m") == 0

        await eventually(free)
        assert await slots.acquire("box|m", 2) is not None
        assert await slots.acquire("box|m", 2) is not None
        await client.aclose()


async def test_slots_say_store_unavailable_while_redis_is_down() -> None:
    with RedisServer(require_redis_server()) as server:
        slots = RedisSlots(connect(server.url), name="down", ttl_s=5)
        lease = await slots.acquire("p", 1)
        assert lease is not None
        server.stop()
        with pytest.raises(StoreUnavailable):
            await slots.acquire("p", 1)
        server.start()
        assert await slots.renew(lease) is False  # a restarted Redis without data: it is gone
        assert await slots.acquire("p", 1) is not None
        await slots.client.aclose()
