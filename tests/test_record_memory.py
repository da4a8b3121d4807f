"""What a finished record keeps in memory is what `TLC_RETAIN_BYTES` budgets (issue 13).

Before, the budget counted only the bytes of the encoded events (`Record.size`): a reply
of short tokens really kept 3–10 times that (object headers, one string per token, the
record itself), so 400 replies of 792 KB took the server to 960 MB under a 256 MB budget.
"""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import pytest

from tlc_widgets.protocol import Delta, Done, Queued
from tlc_widgets.server.record_store import RecordStore
from tlc_widgets.server.records import Record


def _finished(token: str, tokens: int, user: str = "ada") -> Record:
    prompt = [{"role": "user", "content": "Tell me a story"}]
    record = Record.new(user=user, model="m", messages=prompt, params={"max_tokens": tokens})
    record.emit(Queued(position=1, waiting=1, eta_s=None))
    record.start("http://127.0.0.1:1234/v1")
    for n in range(tokens):
        # a string of its own per token, as parsing each upstream chunk makes
        record.add_delta(Delta(content=f"{token}{n % 10}"))
    record.finish(Done("length"))
    return record


@pytest.mark.parametrize(
    ("token", "tokens"), [(" w", 1000), ("x" * 199, 1000), ("hi", 1)], ids=["short", "long", "one"]
)
def test_held_is_what_a_finished_record_really_keeps(token: str, tokens: int) -> None:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        records = [_finished(token, tokens) for _ in range(10)]
        gc.collect()
        real = (tracemalloc.get_traced_memory()[0] - before) / len(records)
    finally:
        tracemalloc.stop()
    held = records[0].held
    size = records[0].size
    print(f"{token[:3]!r} × {tokens}: held {held:,} B, measured {real:,.0f} B, size {size:,} B")
    assert 0.8 * real <= held <= 1.25 * real
    assert held > size  # the old count, which missed the objects' own cost


def test_the_store_keeps_finished_records_within_their_budget_in_held_bytes() -> None:
    import asyncio

    async def fill() -> tuple[RecordStore, list[Record]]:
        sample = _finished(" w", 500)
        store = RecordStore(retain_s=900, retain_bytes=int(2.5 * sample.held))
        records = [_finished(" w", 500, user=f"u{n}") for n in range(5)]
        for record in records:
            store.add(record)
            store.forget_later(record)
        return store, records

    store, records = asyncio.run(fill())
    assert [store.get(r.id) is not None for r in records] == [False] * 3 + [True] * 2
    assert store.finished_bytes == sum(r.held for r in records[3:])


def test_a_record_pushed_out_by_the_budget_is_freed_at_once() -> None:
    """Its retain timer must not keep it alive (it did, for `retain_s`: 15 minutes)."""
    import asyncio

    async def push_out() -> list[Record | None]:
        store = RecordStore(retain_s=900, retain_bytes=1)  # every finished one goes at once
        refs = []
        for n in range(3):
            record = _finished(" w", 100, user=f"u{n}")
            store.add(record)
            store.forget_later(record)  # the timer is armed, 900 s away
            refs.append(weakref.ref(record))
        del record
        gc.collect()
        assert len(store) == 0
        return [ref() for ref in refs]  # while the loop and its timers still live

    assert asyncio.run(push_out()) == [None, None, None]
