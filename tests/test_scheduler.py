"""The scheduler is pure, so fairness and priority are checked exhaustively, without servers.

Every test here runs twice: on the embedded queue (the pure `FairScheduler` behind the async
`FairQueue` interface) and on the Redis queue (the same rule in Lua, against a real
redis-server), both driven through one small synchronous adapter.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from typing import Any, TypeVar

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.redis_fixture import redis_server  # noqa: F401
from tlc_widgets.server.scheduler import FORGET_EVERY, Entry, FairScheduler
from tlc_widgets.server.store import EmbeddedQueue, FairQueue

T = TypeVar("T")


class Queue:
    """A `FairQueue` driven from synchronous test code, in a loop of its own."""

    def __init__(self, portal: BlockingPortal, queue: FairQueue) -> None:
        self._portal, self._queue = portal, queue

    def push(self, entry: Entry) -> None:
        self._portal.call(self._queue.push, entry)

    def remove(self, request_id: str) -> bool:
        return self._portal.call(self._queue.remove, request_id)

    def pop_next(
        self,
        eligible: Collection[str] | None = None,
        running: Mapping[str, int] | None = None,
        strict: bool = False,
    ) -> Entry | None:
        return self._portal.call(self._queue.pop_next, eligible, running, strict)

    def order(self, model: str | None = None) -> list[Entry]:
        return self._portal.call(self._queue.order, model)

    def waiting_for(self, user: str) -> int:
        return self._portal.call(self._queue.waiting_for, user)

    def run(self, steps: Callable[[FairQueue], Awaitable[T]]) -> T:
        """Many steps in one go (a long run would otherwise cost a thread hop per step)."""
        return self._portal.call(steps, self._queue)

    def __len__(self) -> int:
        return self._portal.call(self._queue.size)

    def __contains__(self, request_id: str) -> bool:
        return self._portal.call(self._queue.contains, request_id)


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as p:
        yield p


def redis_factory(request: pytest.FixtureRequest, portal: BlockingPortal) -> Iterator[Any]:
    from tlc_widgets.server.store.redis_queue import RedisQueue, connect

    server = request.getfixturevalue("redis_server")
    client = connect(server.url)
    # a fresh name per queue: nothing leaks from one example into the next
    yield lambda: Queue(portal, RedisQueue(client, name=uuid.uuid4().hex))
    portal.call(client.aclose)


@pytest.fixture(scope="module", params=["embedded", "redis"])
def make(request: pytest.FixtureRequest, portal: BlockingPortal) -> Iterator[Callable[[], Queue]]:
    if request.param == "embedded":
        yield lambda: Queue(portal, EmbeddedQueue(FairScheduler()))
    else:
        yield from redis_factory(request, portal)


def drain(s: Queue) -> list[str]:
    out = []
    while (entry := s.pop_next()) is not None:
        out.append(entry.id)
    return out


def test_light_users_start_before_the_heavy_users_second_request(make: Callable[[], Queue]) -> None:
    s = make()
    for i in range(10):
        s.push(Entry(f"heavy{i}", "heavy", "m"))
    s.push(Entry("a", "alice", "m"))
    s.push(Entry("b", "bob", "m"))
    assert drain(s)[:3] == ["heavy0", "a", "b"]


def test_fifo_within_a_user_and_order_predicts_pop_order(make: Callable[[], Queue]) -> None:
    s = make()
    for i in range(3):
        s.push(Entry(f"x{i}", "x", "m"))
        s.push(Entry(f"y{i}", "y", "m"))
    predicted = [e.id for e in s.order()]
    assert predicted == drain(s) == ["x0", "y0", "x1", "y1", "x2", "y2"]


def test_higher_priority_class_goes_first(make: Callable[[], Queue]) -> None:
    s = make()
    s.push(Entry("low", "a", "m", priority=0))
    s.push(Entry("high", "b", "m", priority=5))
    assert drain(s) == ["high", "low"]


def test_a_user_blocked_on_a_busy_model_does_not_block_others(make: Callable[[], Queue]) -> None:
    s = make()
    s.push(Entry("a1", "a", "busy-model"))
    s.push(Entry("b1", "b", "free-model"))
    entry = s.pop_next({"free-model"})
    assert entry is not None and entry.id == "b1"
    assert "a1" in s and len(s) == 1


def test_remove_takes_a_waiting_request_out_once(make: Callable[[], Queue]) -> None:
    s = make()
    s.push(Entry("a", "u", "m"))
    assert s.remove("a") is True
    assert s.remove("a") is False
    assert len(s) == 0 and drain(s) == []


def test_a_capped_user_yields_the_slot_unless_nobody_else_waits(make: Callable[[], Queue]) -> None:
    s = make()
    s.push(Entry("a2", user="ann", model="m", cap=1))
    s.push(Entry("b1", user="bob", model="m", cap=1))
    first = s.pop_next(running={"ann": 1})
    assert first is not None and first.id == "b1"
    assert s.pop_next(running={"ann": 1}, strict=True) is None  # strict keeps the slot free
    second = s.pop_next(running={"ann": 1})
    assert second is not None and second.id == "a2"


@pytest.mark.timeout(300)  # 8,000 starts, one Redis round trip each, on a busy machine
def test_idle_users_are_forgotten_alike(make: Callable[[], Queue]) -> None:
    """After FORGET_EVERY starts, a user idle that long ranks as never served again."""
    s = make()
    s.push(Entry("c1", "carol", "m"))
    s.push(Entry("c2", "carol", "blocked"))  # keeps carol waiting (and remembered)
    assert [s.pop_next({"m"}).id for _ in range(1)] == ["c1"]  # type: ignore[union-attr]
    s.push(Entry("a1", "ann", "m"))
    assert [s.pop_next({"m"}).id for _ in range(1)] == ["a1"]  # type: ignore[union-attr]

    async def bob_runs_alone(queue: FairQueue) -> int:
        started = 0
        for i in range(2 * FORGET_EVERY - 2):  # up to a forgetting round: ann is forgotten
            await queue.push(Entry(f"b{i}", "bob", "m"))
            started += await queue.pop_next({"m"}) is not None
        return started

    assert s.run(bob_runs_alone) == 2 * FORGET_EVERY - 2
    s.push(Entry("a2", "ann", "blocked"))
    entry = s.pop_next({"blocked"})
    assert entry is not None and entry.id == "a2"  # remembered, carol (served first) would go


requests = st.lists(
    st.tuples(st.sampled_from("abcdef"), st.integers(0, 2)), min_size=1, max_size=60
)


@settings(deadline=None)  # speed is bench/'s business, not a test's
@given(reqs=requests)
def test_order_always_matches_what_pop_next_does(
    make: Callable[[], Queue], reqs: list[tuple[str, int]]
) -> None:
    s = make()
    for i, (user, prio) in enumerate(reqs):
        s.push(Entry(str(i), user, "m", prio))
    assert [e.id for e in s.order()] == drain(s)


@settings(deadline=None)  # speed is bench/'s business, not a test's
@given(reqs=requests)
def test_no_backlogged_user_waits_more_than_one_round(
    make: Callable[[], Queue], reqs: list[tuple[str, int]]
) -> None:
    """Within a priority class, between two starts of one user every other user that was
    waiting the whole time starts at least once (round robin), and a user's own requests
    start in the order they came (FIFO)."""
    s = make()
    for i, (user, _) in enumerate(reqs):
        s.push(Entry(str(i), user, "m"))
    started = drain(s)
    users = [reqs[int(i)][0] for i in started]
    for user in set(users):
        mine = [int(i) for i, u in zip(started, users, strict=True) if u == user]
        assert mine == sorted(mine)
    # Round robin: while k users still have work, each run of k starts serves each once.
    remaining = {u: users.count(u) for u in set(users)}
    pos = 0
    while remaining:
        round_users = users[pos : pos + len(remaining)]
        assert sorted(round_users) == sorted(remaining)
        for u in round_users:
            remaining[u] -= 1
        pos += len(round_users)
        remaining = {u: n for u, n in remaining.items() if n}


@settings(deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["push", "pop", "remove"]), st.sampled_from("mnp"), st.integers(0, 30)
        ),
        max_size=60,
    )
)
def test_the_waiting_models_are_those_in_the_line(steps: list[tuple[str, str, int]]) -> None:
    """`models()` (what the dispatcher asks before walking the line for a free slot) is
    always the set of models in `order()`, through pushes, starts and cancels."""
    s = FairScheduler()
    for i, (step, model, n) in enumerate(steps):
        if step == "push":
            s.push(Entry(str(i), f"u{n % 4}", model))
        elif step == "pop":
            s.pop_next(lambda m, model=model: m == model)
        else:
            s.remove(str(n))
        assert s.models() == {e.model for e in s.order()}
