"""One way to reach Redis: a client with short timeouts, Lua steps, and one error for "down".

    >>> client = connect("redis://127.0.0.1:6390/0")
    >>> client.connection_pool.connection_kwargs["socket_timeout"]
    2.0
    >>> script_text("slots.lua").startswith("-- Slot leases")
    True

Every call to Redis goes through `guard`, which turns redis-py's connection and timeout
errors (refused, reset, loading after a restart, read-only replica) into `StoreUnavailable`,
the one error the service maps to a 503. Scripts run with EVALSHA; redis-py loads them
again when a restarted Redis has forgotten them (NOSCRIPT).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import anyio
from redis import exceptions
from redis.asyncio import BlockingConnectionPool, Redis

from .errors import StoreUnavailable

__all__ = ["check_redis", "connect", "guard", "reach_redis", "script_text"]

#: seconds: a Redis that does not answer in this long counts as down (a 503, not a hang)
TIMEOUT_S = 2.0


#: connections one replica opens at most; more callers at once wait their turn (up to
#: TIMEOUT_S) instead of failing at once, as redis-py's default pool does past 100
MAX_CONNECTIONS = 64


def connect(url: str) -> Redis:
    """A client for `url` (redis://host:port/db); it connects on first use."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=TIMEOUT_S,
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
        health_check_interval=30,
    )
    return Redis.from_pool(pool)  # the client closes the pool with itself


def script_text(name: str) -> str:
    """The Lua source of one store step, shipped inside the package."""
    return resources.files(__package__).joinpath("lua", name).read_text(encoding="utf-8")


def where(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


@contextmanager
def guard(client: Redis) -> Iterator[None]:
    try:
        yield
    except (exceptions.ConnectionError, exceptions.TimeoutError, exceptions.ReadOnlyError) as e:
        raise StoreUnavailable(where(client)) from e
    except exceptions.ResponseError as e:
        # A script that meets a Redis still loading its data says so as a response error.
        if str(e).startswith(("LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")):
            raise StoreUnavailable(where(client)) from e
        raise


async def check_redis(client: Redis) -> None:
    """Raise `StoreUnavailable` unless a Redis 7 (or Valkey) answers: a replica that cannot
    share its slots must not start and overload the upstream."""
    with guard(client):
        info = await client.info("server")
    version = str(info.get("redis_version", "0"))
    if int(version.split(".")[0]) < 7:
        raise ValueError(f"{where(client)} runs Redis {version}; --redis needs Redis 7 or Valkey")


def reach_redis(url: str) -> None:
    """`tlc serve --redis URL` checks before it starts: a `ValueError` in one sentence unless
    a Redis 7 (or Valkey) answers at `url`.

    >>> reach_redis("redis://127.0.0.1:9/0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --redis: nothing answers at redis://127.0.0.1:9; start Redis 7 or Valkey ...
    """

    async def check() -> None:
        client = connect(url)
        try:
            await check_redis(client)
        finally:
            await client.aclose()

    try:
        anyio.run(check)
    except StoreUnavailable as down:
        raise ValueError(
            f"--redis: nothing answers at {down.where}; start Redis 7 or Valkey there, "
            "or leave out --redis to run one process alone."
        ) from None
