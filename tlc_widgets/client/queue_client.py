"""`QueueClient`: the async client of the queue server, over HTTP and Server-Sent Events.

    >>> async with QueueClient() as client:                       # doctest: +SKIP
    ...     print(await client.chat("What is a queue?"))
    ...     request = await client.submit("And a stack?", model="practice-fast")
    ...     async for event in client.stream(request.id):
    ...         print(event)          # Queued(…) … Started(…) Delta(…) … Done(…)

The server is found at `TLC_SERVER_URL` (default http://127.0.0.1:8000).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from contextlib import aclosing
from types import TracebackType
from typing import Any, Self, cast

import httpx

from ..errors import RequestFailed, ServerUnavailable, error_from_response
from ..protocol import ACCEPTED, TERMINAL, ErrorCode, Event
from ..sse import ServerSentEvent
from .events import closing, is_event_stream, json_body, read_sse, resuming, to_json, typed
from .follow import Opened, Submitted, follow
from .whoami import authorization, default_user

__all__ = ["DEFAULT_URL", "QueueClient"]

DEFAULT_URL = "http://127.0.0.1:8000"


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
        self.user: str = user or default_user()
        headers = authorization(api_key)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        # Events may be minutes apart behind a long queue; the server sends keep-alives.
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
        try:
            return response.json()
        except ValueError as exc:
            raise RequestFailed(
                f"The queue server answered {path} with something that is not JSON.",
                code=ErrorCode.INTERNAL_ERROR,
            ) from exc

    def _body(
        self,
        prompt: str | None,
        messages: list[dict[str, Any]] | None,
        model: str | None,
        temperature: float | None,
        max_tokens: int | None,
        priority: int,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"user": self.user, "priority": priority}
        optional = {
            "prompt": prompt,
            "messages": messages,
            "model": model,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        return body | {k: v for k, v in optional.items() if v is not None}

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
        body = self._body(prompt, messages, model, temperature, max_tokens, priority)
        return Submitted.from_json(await self._call("POST", "/api/requests", json=body))

    async def open(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, Any]] | None = None,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        priority: int = 0,
    ) -> Opened:
        """Submit and start reading the events, in one round trip: `POST /api/requests` with
        `Accept: text/event-stream` answers the stream itself, its first event `accepted`.
        A server that answers 202 JSON instead (the two-step form) is followed with
        `stream()`. Either way the events resume with `Last-Event-ID` if the connection
        breaks. Close the result (`aclose()`) if you stop reading before the end."""
        body = self._body(prompt, messages, model, temperature, max_tokens, priority)
        post = self._http.build_request(
            "POST",
            "/api/requests",
            json=body,
            headers={"Accept": "text/event-stream, application/json"},
            timeout=self._stream_timeout,
        )
        try:
            response = await self._http.send(post, stream=True)
        except httpx.TransportError as exc:
            raise ServerUnavailable(self.url) from exc
        try:
            if response.is_error or not is_event_stream(response):
                await response.aread()
                if response.is_error:
                    raise error_from_response(response)
                submitted = Submitted.from_json(json_body(response))
                return Opened(submitted, self.stream(submitted.id))
            sse_events: AsyncGenerator[ServerSentEvent, None] | None = read_sse(response)
            assert sse_events is not None
            accepted = await anext(sse_events, None)
            if accepted is None or accepted.event != ACCEPTED:
                await sse_events.aclose()
                raise RequestFailed(
                    "The queue server's event stream did not start with `accepted`.",
                    code=ErrorCode.INTERNAL_ERROR,
                )
            submitted = Submitted.from_json(to_json(accepted))
        except httpx.TransportError as exc:
            await response.aclose()
            raise ServerUnavailable(self.url) from exc
        except BaseException:
            await response.aclose()
            raise

        def connect(last_event_id: str | None) -> AsyncGenerator[ServerSentEvent, None]:
            # The POST's own stream first; if it breaks, GET the rest after the last id.
            nonlocal sse_events
            rest, sse_events = sse_events, None
            if rest is not None:
                return closing(response, rest)
            return self._sse(_events_path(submitted.id), last_event_id)

        events = typed(resuming(connect, self.url, None, TERMINAL))
        return Opened(submitted, events, release=response.aclose)

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

    async def me(self, model: str | None = None) -> dict[str, Any]:
        """Who the server takes you for, your budget today, the class's mode and the
        teacher's instructions (for `model`), and who can read your conversations."""
        params = {"model": model} if model else {}
        return cast(dict[str, Any], await self._call("GET", "/api/me", params=params))

    async def health(self) -> dict[str, Any]:
        """`/healthz`: the server is up; the body says which upstreams answer."""
        return cast(dict[str, Any], await self._call("GET", "/healthz"))

    # ------------------------------------------------------------------ streams

    async def _sse(
        self, path: str, last_event_id: str | None
    ) -> AsyncGenerator[ServerSentEvent, None]:
        """One GET's events; raises `httpx.TransportError` if the connection breaks."""
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        request = self._http.build_request(
            "GET", path, headers=headers, timeout=self._stream_timeout
        )
        response = await self._http.send(request, stream=True)
        try:
            async with aclosing(read_sse(response)) as events:
                async for sse in events:
                    yield sse
        finally:
            await response.aclose()

    async def stream(
        self, request_id: str, *, last_event_id: int | None = None
    ) -> AsyncGenerator[Event, None]:
        """The events of a request, from the start or after `last_event_id`, until its
        terminal event (`Done`, `ErrorEvent` or `Cancelled`). A broken connection is resumed
        with `Last-Event-ID`, so no event is lost or seen twice. Close it early with
        `contextlib.aclosing` if you stop reading before the end."""
        path = _events_path(request_id)
        start = None if last_event_id is None else str(last_event_id)

        def connect(after: str | None) -> AsyncGenerator[ServerSentEvent, None]:
            return self._sse(path, after)

        async with aclosing(typed(resuming(connect, self.url, start, TERMINAL))) as events:
            async for event in events:
                yield event

    async def queue_events(self) -> AsyncGenerator[dict[str, Any], None]:
        """`/api/queue` snapshots as they change, forever; reconnects if the server restarts."""

        def connect(after: str | None) -> AsyncGenerator[ServerSentEvent, None]:
            return self._sse("/api/queue/events", after)

        async with aclosing(resuming(connect, self.url, None, frozenset())) as events:
            async for sse in events:
                if sse.event == "queue":
                    yield to_json(sse)

    # ------------------------------------------------------------------ all in one

    async def chat(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, Any]] | None = None,
        model: str | None = None,
        **params: Any,
    ) -> str:
        """Submit, wait for the whole reply and return its text, by `follow()`'s rule: the
        error it ended with is raised, and cancelling the calling task cancels the request."""
        request = {"prompt": prompt, "messages": messages, "model": model, **params}
        return (await follow(self, **request)).text


def _events_path(request_id: str) -> str:
    return f"/api/requests/{request_id}/events"
