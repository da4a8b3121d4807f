"""The scheduler is pure, so fairness and priority are checked exhaustively, without servers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tlc_widgets.server.scheduler import Entry, FairScheduler


def drain(s: FairScheduler) -> list[str]:
    out = []
    while (entry := s.pop_next(lambda model: True)) is not None:
        out.append(entry.id)
    return out


def test_light_users_start_before_the_heavy_users_second_request() -> None:
    s = FairScheduler()
    for i in range(10):
        s.push(Entry(f"heavy{i}", "heavy", "m"))
    s.push(Entry("a", "alice", "m"))
    s.push(Entry("b", "bob", "m"))
    assert drain(s)[:3] == ["heavy0", "a", "b"]


def test_fifo_within_a_user_and_order_predicts_pop_order() -> None:
    s = FairScheduler()
    for i in range(3):
        s.push(Entry(f"x{i}", "x", "m"))
        s.push(Entry(f"y{i}", "y", "m"))
    predicted = [e.id for e in s.order()]
    assert predicted == drain(s) == ["x0", "y0", "x1", "y1", "x2", "y2"]


def test_higher_priority_class_goes_first() -> None:
    s = FairScheduler()
    s.push(Entry("low", "a", "m", priority=0))
    s.push(Entry("high", "b", "m", priority=5))
    assert drain(s) == ["high", "low"]


def test_a_user_blocked_on_a_busy_model_does_not_block_others() -> None:
    s = FairScheduler()
    s.push(Entry("a1", "a", "busy-model"))
    s.push(Entry("b1", "b", "free-model"))
    entry = s.pop_next(lambda model: model == "free-model")
    assert entry is not None and entry.id == "b1"
    assert "a1" in s and len(s) == 1


def test_remove_takes_a_waiting_request_out_once() -> None:
    s = FairScheduler()
    s.push(Entry("a", "u", "m"))
    assert s.remove("a") is True
    assert s.remove("a") is False
    assert len(s) == 0 and drain(s) == []


requests = st.lists(
    st.tuples(st.sampled_from("abcdef"), st.integers(0, 2)), min_size=1, max_size=60
)


@given(requests)
def test_order_always_matches_what_pop_next_does(reqs: list[tuple[str, int]]) -> None:
    s = FairScheduler()
    for i, (user, prio) in enumerate(reqs):
        s.push(Entry(str(i), user, "m", prio))
    assert [e.id for e in s.order()] == drain(s)


@given(requests)
def test_no_backlogged_user_waits_more_than_one_round(reqs: list[tuple[str, int]]) -> None:
    """Within a priority class, between two starts of one user every other user that was
    waiting the whole time starts at least once (round robin), and a user's own requests
    start in the order they came (FIFO)."""
    s = FairScheduler()
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
