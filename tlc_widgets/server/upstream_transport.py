"""The upstream's HTTP transport: httpx's own, plus the one retry a stale connection earns.

    >>> transport = StaleRetry(httpx.AsyncHTTPTransport())
    >>> isinstance(transport, httpx.AsyncBaseTransport)
    True

An HTTP server closes a keep-alive connection that idled for a while (Node's default, so
LM Studio's, and uvicorn's: 5 s). A request written on it just as the server closes it gets
no answer at all: "Server disconnected without sending a response", or a read or write
error, before any status line. The server never read that request, so it is sent once more
on a fresh connection. Only then: `handle_async_request` returns when the status line and
headers have arrived, and an error after that (in the body, once tokens may have been
relayed) is never retried. httpx's own `retries=` covers only failures to connect.
"""

from __future__ import annotations

import logging

import httpx

__all__ = ["STALE", "StaleRetry"]

log = logging.getLogger("tlc.upstream")

#: What a request on a connection the server had just closed raises, before any answer.
STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class StaleRetry(httpx.AsyncBaseTransport):
    """Wraps a transport: a request that met a closed pooled connection is sent again once."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.retried = 0  #: requests sent again (a figure for tests and curious admins)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except STALE as exc:
            # Bodies the queue sends are bytes in memory (json=...), so they can be re-sent.
            self.retried += 1
            log.info("upstream %s closed a pooled connection (%s): sent again", request.url, exc)
            return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
