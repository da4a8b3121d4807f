"""`QueueClient`: the async client of the queue server, over HTTP and Server-Sent Events.

    >>> async with QueueClient() as client:                       # doctest: +SKIP
    ...     print(await client.chat("What is a queue?"))
    ...     request = await client.submit("And a stack?", model="practice-fast")
    ...     async for event in client.stream(request.id):
    ...         print(event)          # Queued(…) … Started(…) Delta(…) … Done(…)

The server is found at `TLC_SERVER_URL` (default http://127.0.0.1:8000). A stream that
breaks is resumed with `Last-Event-ID`, so no event is lost or seen twice. Errors are the
classes of `tlc_widgets.errors`, re-exported here.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, cast

import anyio
import httpx

from .errors import (
    AccessDenied,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    QueueFull,
    RequestCancelled,
    RequestFailed,
    ServerUnavailable,
    TLCError,
    TooManyRequests,
    UpstreamUnavailable,
    error_for,
    error_from_response,
)
from .protocol import TERMINAL, Cancelled, Delta, Done, ErrorEvent, Event, EventName, parse_event
from .sse_parse import ServerSentEvent, iter_sse

__all__ = [
    "DEFAULT_URL",
    "AccessDenied",
    "InvalidRequest",
    "ModelNotFound",
    "NotFound",
    "QueueClient",
    "QueueFull",
    "RequestCancelled",
    "RequestFailed",
    "ServerSentEvent",
    "ServerUnavailable",
    "Submitted",
    "TLCError",
    "TooManyRequests",
    "UpstreamUnavailable",
    "iter_sse",
]

DEFAULT_URL = "http://127.0.0.1:8000"
#: Pauses before each reconnect of a broken stream; after the last one we give up.
RECONNECT_BACKOFF_S = (0.2, 0.5, 1.0, 2.0)
KNOWN_EVENTS = frozenset(EventName)


@dataclass(frozen=True)
class Submitted:
    """The server's answer to a submit: the request's id and the place it took in line."""

    id: str
    position: int
    waiting: int
    eta_s: float | None
    model: str


def _default_user() -> str:
    for var in ("TLC_USER", "JUPYTERHUB_USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser() or "anonymous"
    except Exception:  # no login name at all (some containers): getpass raises OSError/KeyError
        return "anonymous"


class QueueClient:
    """One connection pool to one queue server. Use it with `async with`, or call `aclose()`.

    `transport` is the seam for tests (an `httpx.MockTransport`); leave it out otherwise.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        user: str | None = None,
        api_key: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url: str = (url or os.environ.get("TLC_SERVER_URL") or DEFAULT_URL).rstrip("/")
        self.user: str = user or _default_user()
        key = api_key or os.environ.get("TLC_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        # Events may be minutes apart behind a long queue; the server pings every 15 s.
        self._stream_timeout = httpx.Timeout(timeout, read=None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"QueueClient(url={self.url!r}, user={self.user!r})"

    # ------------------------------------------------------------------ plain requests

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; its JSON answer, or the `TLCError` its error body names."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnavailable(self.url) from exc
        if response.is_error:
            raise error_from_response(response)
        return response.json()

    async def submit(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, Any]] | None = None,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        priority: int = 0,
    ) -> Submitted:
        """Queue a request (a `prompt`, or a conversation in `messages`); it runs in its turn."""
        body: dict[str, Any] = {"user": self.user, "priority": priority}
        optional = {
            "prompt": prompt,
            "messages": messages,
            "model": model,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        answer = await self._call("POST", "/api/requests", json=body)
        return Submitted(
            id=answer["id"],
            position=answer["position"],
            waiting=answer["waiting"],
            eta_s=answer["eta_s"],
            model=answer["model"],
        )

    async def cancel(self, request_id: str) -> bool:
        """Stop a request. True if this call cancelled it, False if it had already ended."""
        return bool((await self._call("DELETE", f"/api/requests/{request_id}"))["cancelled"])

    async def status(self, request_id: str) -> dict[str, Any]:
        """Status, text so far and timings of a request."""
        return cast(dict[str, Any], await self._call("GET", f"/api/requests/{request_id}"))

    async def queue(self) -> dict[str, Any]:
        """The queue now: waiting, running, upstreams and their slots, served, rates."""
        return cast(dict[str, Any], await self._call("GET", "/api/queue"))

    async def models(self) -> list[dict[str, Any]]:
        """Models offered across upstreams, each with its preset."""
        return cast(list[dict[str, Any]], (await self._call("GET", "/api/models"))["models"])

    async def history(self, limit: int = 20, *, user: str | None = None) -> list[dict[str, Any]]:
        """Past requests, newest first (yours; an admin may name another `user`)."""
        params: dict[str, Any] = {"limit": limit} | ({"user": user} if user else {})
        answer = await self._call("GET", "/api/history", params=params)
        return cast(list[dict[str, Any]], answer["requests"])

    async def history_item(self, request_id: str) -> dict[str, Any]:
        """One past request: its messages, the reply (so far), timings and outcome."""
        return cast(dict[str, Any], await self._call("GET", f"/api/history/{request_id}"))

    async def health(self) -> dict[str, Any]:
        """`/healthz`: the server is up; the body says which upstreams answer."""
        return cast(dict[str, Any], await self._call("GET", "/healthz"))

    # ------------------------------------------------------------------ streams

    async def _sse(
        self, path: str, last_event_id: str | None
    ) -> AsyncGenerator[ServerSentEvent, None]:
        """One connection's events; raises `httpx.TransportError` if the connection breaks."""
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        request = self._http.build_request(
            "GET", path, headers=headers, timeout=self._stream_timeout
        )
        response = await self._http.send(request, stream=True)
        try:
            if response.is_error:
                await response.aread()
                raise error_from_response(response)
            async for sse in iter_sse(response.aiter_lines()):
                yield sse
        finally:
            await response.aclose()

    async def _resuming(
        self, path: str, last_event_id: str | None, final: frozenset[str]
    ) -> AsyncGenerator[ServerSentEvent, None]:
        """Events of `path` across reconnects, resumed after the last id seen, until one
        named in `final` (or forever if none is)."""
        failures = 0
        while True:
            cause: Exception | None = None
            try:
                async with aclosing(self._sse(path, last_event_id)) as events:
                    async for sse in events:
                        failures = 0
                        last_event_id = sse.id or last_event_id
                        yield sse
                        if sse.event in final:
                            return
            except httpx.TransportError as exc:
                cause = exc
            if failures == len(RECONNECT_BACKOFF_S):
                raise ServerUnavailable(self.url) from cause
            await anyio.sleep(RECONNECT_BACKOFF_S[failures])
            failures += 1

    async def stream(
        self, request_id: str, *, last_event_id: int | None = None
    ) -> AsyncGenerator[Event, None]:
        """The events of a request, from the start or after `last_event_id`, until its
        terminal event (`Done`, `ErrorEvent` or `Cancelled`). Close it early with
        `contextlib.aclosing` if you stop reading before the end."""
        path = f"/api/requests/{request_id}/events"
        start = None if last_event_id is None else str(last_event_id)
        async with aclosing(self._resuming(path, start, TERMINAL)) as events:
            async for sse in events:
                if sse.event in KNOWN_EVENTS:  # a newer server's new events are skipped
                    yield parse_event(sse.event, sse.data)

    async def queue_events(self) -> AsyncGenerator[dict[str, Any], None]:
        """`/api/queue` snapshots as they change, forever; reconnects if the server restarts."""
        async with aclosing(self._resuming("/api/queue/events", None, frozenset())) as events:
            async for sse in events:
                if sse.event == "queue":
                    yield cast(dict[str, Any], json.loads(sse.data))

    # ------------------------------------------------------------------ all in one

    async def chat(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, Any]] | None = None,
        model: str | None = None,
        **params: Any,
    ) -> str:
        """Submit, wait for the whole reply and return its text. Raises the error it ended
        with. If the calling task is cancelled meanwhile, the request is cancelled too."""
        request = await self.submit(prompt, messages=messages, model=model, **params)
        parts: list[str] = []
        try:
            async with aclosing(self.stream(request.id)) as events:
                async for event in events:
                    if isinstance(event, Delta) and event.content:
                        parts.append(event.content)
                    elif isinstance(event, ErrorEvent):
                        raise error_for(event.code, event.message)
                    elif isinstance(event, Cancelled):
                        raise RequestCancelled(
                            f"The request was cancelled ({event.by}).", code="cancelled"
                        )
                    elif isinstance(event, Done):
                        return "".join(parts)
        except anyio.get_cancelled_exc_class():
            # Shielded: the outer cancellation would otherwise cancel the DELETE too, and
            # the request would keep its slot until the server noticed nobody listens.
            with anyio.CancelScope(shield=True):
                try:
                    await self.cancel(request.id)
                except TLCError:
                    pass  # it ended meanwhile, or the server is gone: nothing to free
            raise
        raise RequestFailed("The stream ended without a final event.", code="internal_error")
