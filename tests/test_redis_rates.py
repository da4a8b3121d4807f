"""Rate windows across replicas: what one replica admits counts on the others.

Against a real redis-server (tests/redis_fixture.py), two `RateLimiter`s as two replicas'
would be, each with its `SharedRates`; syncs are called directly, so no clock is raced.
"""

from __future__ import annotations

import uuid

import pytest

from tests.redis_fixture import RedisServer, redis_server  # noqa: F401
from tlc_widgets.server.api_error import ApiError
from tlc_widgets.server.auth import Role
from tlc_widgets.server.limits import Rate, RateLimiter
from tlc_widgets.server.shared_rates import SharedRates
from tlc_widgets.server.store.redis_conn import connect

pytestmark = pytest.mark.anyio


async def test_requests_on_one_replica_fill_the_window_on_the_other(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    name, client = uuid.uuid4().hex, connect(redis_server.url)
    try:
        limit = {Role.STUDENT: Rate(rpm=3, tpm=1_000)}
        a, b = RateLimiter(limit), RateLimiter(limit)
        share_a, share_b = SharedRates(client, name, "a", a), SharedRates(client, name, "b", b)
        a.admit("zed", Role.STUDENT, prompt_tokens=100)
        a.admit("zed", Role.STUDENT, prompt_tokens=100)
        a.spend("zed", 800)  # zed's replies: 1,000 tokens this minute, all through A
        a.admit("kim", Role.STUDENT, prompt_tokens=1)
        a.admit("kim", Role.STUDENT, prompt_tokens=1)
        b.admit("kim", Role.STUDENT, prompt_tokens=1)  # kim's third request, through B
        await share_a.sync()
        await share_b.sync()  # B hears of zed's and kim's requests on A
        await share_a.sync()  # A hears of kim's on B
        with pytest.raises(ApiError) as refused:
            b.admit("zed", Role.STUDENT, prompt_tokens=1)  # 1,000 tokens: the limit
        assert refused.value.code.value == "rate_limited" and refused.value.retry_after
        for rates in (a, b):  # 3 requests this minute across both: refused on each
            with pytest.raises(ApiError):
                rates.admit("kim", Role.STUDENT, prompt_tokens=1)
        b.admit("amy", Role.STUDENT, prompt_tokens=10)  # amy's own window is open
        assert a.unsent == {} and b.unsent == {"amy": [1, 10]}
    finally:
        await client.aclose()
