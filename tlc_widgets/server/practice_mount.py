"""`tlc serve --practice`: run the practice model in this process, as a real HTTP upstream.

    >>> async with practice_upstream(Settings(practice=True)) as effective:   # doctest: +SKIP
    ...     effective.upstreams
    ['http://127.0.0.1:40123/v1']

The practice model gets its own uvicorn server on a loopback port in the same event loop,
and the queue server talks to it over HTTP like to LM Studio: the queue never knows, and
every byte of the wire format is exercised even in the simplest setup.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import uvicorn

from ..config import Settings

__all__ = ["practice_upstream"]

log = logging.getLogger("tlc.practice")


@asynccontextmanager
async def practice_upstream(settings: Settings) -> AsyncIterator[Settings]:
    """Yield `settings`, or — with `practice` on — a copy whose upstream is a practice model
    started here for as long as the context lasts."""
    if not settings.practice:
        yield settings
        return
    from ..practice import PracticeSettings
    from ..practice import create_app as create_practice_app

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", settings.practice_port))
    port = sock.getsockname()[1]
    practice = PracticeSettings(host="127.0.0.1", port=port)
    config = uvicorn.Config(create_practice_app(practice), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    # The outer server (the queue) owns Ctrl-C; this inner one must not take the signals.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    url = f"http://127.0.0.1:{port}/v1"
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await anyio.sleep(0.01)
        log.warning(
            "upstream: PRACTICE MODEL at %s (a statistical text generator, not an LLM)", url
        )
        try:
            yield settings.model_copy(update={"upstreams": [url]})
        finally:
            server.should_exit = True
    sock.close()
