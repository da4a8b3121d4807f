"""`QueueClient` against real servers on loopback (and, for the parser, a mock transport)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import aclosing, contextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from anyio.abc import SocketAttribute

import tlc_widgets.client
import tlc_widgets.client.events
from tests.conftest import practice_server, queue_server, wait_until
from tlc_widgets import errors
from tlc_widgets.client import (
    InvalidRequest,
    ModelNotFound,
    NotFound,
    Opened,
    QueueClient,
    QueueFull,
    RequestCancelled,
    RequestFailed,
    ServerUnavailable,
    Submitted,
    TLCError,
    TooManyRequests,
)
from tlc_widgets.protocol import Delta, Done, ErrorCode, Event, Queued, Started
from tlc_widgets.serving import BackgroundServer, free_port
from tlc_widgets.sse import decode_text

pytestmark = pytest.mark.anyio

PROMPT = "Tell me about the rabbit"


@contextmanager
def queue_over_practice(**practice: Any) -> Iterator[tuple[BackgroundServer, BackgroundServer]]:
    queue_settings = practice.pop("queue", {})
    with practice_server(**practice) as upstream:
        with queue_server(upstream.url + "/v1", **queue_settings) as queue:
            yield upstream, queue


def text_of(events: list[Event]) -> str:
    return "".join(e.content or "" for e in events if isinstance(e, Delta))


poll = wait_until  # bounded polling of server state (the server is another thread)


# -- the happy path ---------------------------------------------------------------------------


async def test_submit_and_stream_tell_the_whole_life_of_a_request(
    queue: BackgroundServer,
) -> None:
    async with QueueClient(queue.url, user="ada") as client:
        submitted = await client.submit(PROMPT, max_tokens=30, temperature=0.5)
        assert isinstance(submitted, Submitted)
        assert submitted.position == 1 and submitted.model.startswith("practice-")
        events = [e async for e in client.stream(submitted.id)]

        assert isinstance(events[0], Queued) and isinstance(events[1], Started)
        assert all(isinstance(e, Delta) for e in events[2:-1]) and len(events) > 3
        assert isinstance(events[-1], Done)
        status = await client.status(submitted.id)
        assert status["status"] == "done" and status["user"] == "ada"
        assert text_of(events) == status["text"] != ""


async def test_chat_returns_the_text_and_the_read_only_calls_answer(
    queue: BackgroundServer,
) -> None:
    async with QueueClient(queue.url) as client:
        text = await client.chat(messages=[{"role": "user", "content": PROMPT}], max_tokens=20)
        assert text

        models = await client.models()
        assert {m["id"] for m in models} >= {"practice-fast", "practice-small"}
        snapshot = await client.queue()
        assert snapshot["waiting"] == 0 and snapshot["served"] >= 1
        health = await client.health()
        assert health["status"] == "ok" and health["upstreams"][0]["reachable"]
        async with aclosing(client.queue_events()) as snapshots:
            first = await anext(snapshots)
        assert first["served"] == snapshot["served"]


async def test_url_user_and_key_come_from_arguments_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok", "upstreams": []})

    monkeypatch.setenv("TLC_SERVER_URL", "http://queue.example:8001/")
    monkeypatch.setenv("TLC_USER", "grace")
    monkeypatch.setenv("TLC_API_KEY", "sk-test")
    async with QueueClient(transport=httpx.MockTransport(answer)) as client:
        assert (client.url, client.user) == ("http://queue.example:8001", "grace")
        await client.health()
    assert seen[0].url == "http://queue.example:8001/healthz"
    assert seen[0].headers["Authorization"] == "Bearer sk-test"

    monkeypatch.delenv("TLC_USER")
    monkeypatch.setenv("JUPYTERHUB_USER", "hub-user")
    client = QueueClient("http://other:9/", user=None, api_key="sk-arg")
    assert (client.url, client.user) == ("http://other:9", "hub-user")
    await client.aclose()


# -- errors -----------------------------------------------------------------------------------


async def test_refusals_map_to_exceptions_with_the_servers_sentence(
    queue: BackgroundServer,
) -> None:
    async with QueueClient(queue.url) as client:
        with pytest.raises(ModelNotFound) as missing:
            await client.submit(PROMPT, model="no-such-model")
        assert missing.value.code == ErrorCode.MODEL_NOT_FOUND
        assert "practice-fast" in missing.value.message  # it lists what is available

        with pytest.raises(InvalidRequest) as zero:
            await client.submit(PROMPT, max_tokens=0)
        assert zero.value.code == ErrorCode.INVALID_REQUEST and "max_tokens" in zero.value.message

        with pytest.raises(InvalidRequest) as hot:
            await client.submit(PROMPT, temperature=5)
        assert "temperature" in hot.value.message

        with pytest.raises(InvalidRequest) as huge:
            await client.submit(PROMPT, max_tokens=10**9)
        assert huge.value.code == ErrorCode.MAX_TOKENS_TOO_LARGE

        with pytest.raises(NotFound):
            await client.status("no-such-request")
        with pytest.raises(NotFound):
            async for _ in client.stream("no-such-request"):
                pass


async def test_a_full_queue_and_a_busy_user_are_told_when_to_retry() -> None:
    # One slot, held by a request that stalls after its first token; then the line fills.
    limits = {"max_queue": 2, "max_per_user": 1}
    with queue_over_practice(parallel=1, queue=limits) as (practice, queue):
        clients = {name: QueueClient(queue.url, user=name) for name in "abcd"}
        faults = httpx.AsyncClient(base_url=practice.url)
        try:
            await faults.put("/practice/faults", json={"stall_after_tokens": 1})
            holder = await clients["a"].submit(PROMPT, model="practice-fast")
            async with aclosing(clients["a"].stream(holder.id)) as events:
                async for event in events:
                    if isinstance(event, Delta):
                        break
            await faults.put("/practice/faults", json={"stall_after_tokens": None})

            waiting = [await clients["b"].submit(PROMPT, model="practice-fast")]
            with pytest.raises(TooManyRequests) as busy:
                await clients["b"].submit(PROMPT, model="practice-fast")
            assert busy.value.retry_after is not None and busy.value.retry_after >= 1
            assert "1 waiting" in busy.value.message

            waiting.append(await clients["c"].submit(PROMPT, model="practice-fast"))
            assert waiting[-1].waiting == 2
            with pytest.raises(QueueFull) as full:
                await clients["d"].submit(PROMPT, model="practice-fast")
            assert full.value.retry_after is not None and full.value.retry_after >= 1
            assert isinstance(full.value, TLCError) and full.value.code == "queue_full"

            for request in [*waiting, holder]:  # the waiting first, or they would start
                assert await clients["a"].cancel(request.id)
            assert not await clients["a"].cancel(holder.id)  # already over
        finally:
            await faults.aclose()
            for client in clients.values():
                await client.aclose()


async def test_nothing_listening_raises_server_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with QueueClient(url) as client:
        with pytest.raises(ServerUnavailable) as exc:
            await client.health()
        assert url in exc.value.message and "tlc serve --practice" in exc.value.message
        with pytest.raises(ServerUnavailable):
            await client.chat(PROMPT)


async def test_chat_raises_the_error_a_request_ended_with() -> None:
    with queue_over_practice(fail_after_tokens=2) as (_, queue):
        async with QueueClient(queue.url) as client:
            with pytest.raises(RequestFailed) as failed:
                await client.chat(PROMPT)
            assert failed.value.code == ErrorCode.UPSTREAM_ERROR
            assert failed.value.message.startswith("The model server failed")


class RecordingClient(QueueClient):
    """Remembers what it submitted, so a test can find the request `chat()` made."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.submitted: list[Submitted] = []

    async def open(self, *args: Any, **kwargs: Any) -> Opened:
        opened = await super().open(*args, **kwargs)
        self.submitted.append(opened.submitted)
        return opened


async def running_request(client: RecordingClient) -> str:
    """The id of the request `client.chat()` made, once it is streaming tokens."""

    async def running() -> str | None:
        requests = client.submitted
        if requests and (await client.status(requests[0].id))["tokens"] >= 1:
            return requests[0].id
        return None

    result: str = await poll(running, "the request is streaming")
    return result


async def test_cancelling_chat_from_outside_cancels_the_request_on_the_server() -> None:
    with queue_over_practice(stall_after_tokens=1) as (_, queue):
        async with RecordingClient(queue.url) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.chat, PROMPT)
                request_id = await running_request(client)
                tg.cancel_scope.cancel()
            status = await client.status(request_id)
            assert status["status"] == "cancelled"
            assert status["outcome"] == {"event": "cancelled", "by": "client"}


async def test_chat_raises_request_cancelled_when_someone_else_cancels() -> None:
    with queue_over_practice(stall_after_tokens=1) as (_, queue):
        async with RecordingClient(queue.url) as client:
            outcome: list[BaseException] = []

            async def chat() -> None:
                try:
                    await client.chat(PROMPT)
                except RequestCancelled as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(chat)
                assert await client.cancel(await running_request(client))
            assert len(outcome) == 1 and "client" in str(outcome[0])


# -- resuming ---------------------------------------------------------------------------------


async def test_stream_resumes_after_a_given_last_event_id(queue: BackgroundServer) -> None:
    async with QueueClient(queue.url) as client:
        request = await client.submit(PROMPT, max_tokens=30)
        everything = [e async for e in client.stream(request.id)]

        k = 3
        first: list[Event] = []
        async with aclosing(client.stream(request.id)) as events:
            async for event in events:
                first.append(event)
                if len(first) == k:
                    break
        rest = [e async for e in client.stream(request.id, last_event_id=k)]
        assert first + rest == everything and len(first) == k


class Proxy:
    """A loopback TCP proxy to `target_port`, for cutting connections under the client.

    With `hold` set, once the server has sent those bytes the proxy forwards only half of
    them and then nothing more, and sets `held`: the client is left mid-event. `kill()`
    closes the port and every connection; `run()` again listens on the same port.
    """

    def __init__(self, target_port: int, hold: bytes) -> None:
        self.target_port = target_port
        self.port = 0
        self.hold = hold
        self.held = anyio.Event()
        self.accepted = 0
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self._stopped = anyio.Event()
        try:
            with anyio.CancelScope() as self._scope:
                listener = await anyio.create_tcp_listener(
                    local_host="127.0.0.1", local_port=self.port
                )
                async with listener:
                    self.port = listener.extra(SocketAttribute.local_port)
                    task_status.started()
                    await listener.serve(self._forward)
        finally:
            self._stopped.set()

    async def kill(self) -> None:
        """Close the port and every connection through it; return once they are closed."""
        self._scope.cancel()
        await self._stopped.wait()

    async def _forward(self, client: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        server = await anyio.connect_tcp("127.0.0.1", self.target_port)
        async with client, server, anyio.create_task_group() as tg:

            async def pipe(src: anyio.abc.SocketStream, dst: anyio.abc.SocketStream) -> None:
                seen = b""
                async for chunk in src:
                    before, seen = len(seen), seen + chunk
                    at = seen.find(self.hold) if src is server and not self.held.is_set() else -1
                    if at >= 0:
                        cut = max(before, at + len(self.hold) // 2)
                        await dst.send(seen[before:cut])
                        self.held.set()
                        await anyio.sleep_forever()
                    await dst.send(chunk)
                tg.cancel_scope.cancel()  # one side hung up: so does the proxy

            tg.start_soon(pipe, client, server)
            tg.start_soon(pipe, server, client)


async def test_stream_reconnects_after_the_connection_drops_and_loses_nothing(
    queue: BackgroundServer,
) -> None:
    proxy = Proxy(int(queue.url.rsplit(":", 1)[1]), hold=b"event: delta")
    received: list[Event] = []
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.run)
        async with QueueClient(f"http://127.0.0.1:{proxy.port}") as client:
            request = await client.submit(PROMPT, max_tokens=40)

            async def consume() -> None:
                async for event in client.stream(request.id):
                    received.append(event)

            async with anyio.create_task_group() as reading:
                reading.start_soon(consume)
                await proxy.held.wait()  # the client holds half of the first delta
                await proxy.kill()
                accepted = proxy.accepted
                await tg.start(proxy.run)  # the same port again
            # `consume` ended: it finished through the new proxy
        await proxy.kill()
    assert proxy.accepted > accepted

    async with QueueClient(queue.url) as direct:
        everything = [e async for e in direct.stream(request.id)]
        status = await direct.status(request.id)
    assert received == everything
    assert text_of(received) == status["text"] != ""


# -- the parser and the reconnect loop, without a network -------------------------------------


async def test_sse_parser_reads_fields_skips_comments_and_drops_a_half_event() -> None:
    raw = [": ping", "event: queued", 'data: {"position": 1,', 'data: "waiting": 1}', "id: 1"]
    raw += ["", "", "data: plain", "", "event: delta", 'data: {"content": "x"}']
    events = decode_text("\n".join(raw))  # the project's one codec (tlc_widgets.sse)
    assert [(e.event, e.data, e.id) for e in events] == [
        ("queued", '{"position": 1,\n"waiting": 1}', "1"),
        ("message", "plain", "1"),  # an id carries over until a new one comes
    ]


async def test_stream_reconnects_with_last_event_id_and_skips_unknown_events() -> None:
    frames = [
        ("queued", {"position": 1, "waiting": 1, "eta_s": None}),
        ("started", {"model": "m", "upstream": "u", "waited_s": 0.0}),
        ("from-a-newer-server", {"x": 1}),  # skipped, but its id counts
        ("delta", {"content": "Hi"}),
        ("done", {"finish_reason": "stop"}),
    ]
    asked: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        # Each connection sends two events and then ends early, as a dropped one would.
        after = request.headers.get("Last-Event-ID")
        asked.append(after)
        start = int(after or 0)
        body = "".join(
            f"event: {name}\ndata: {json.dumps(data)}\nid: {i}\n\n"
            for i, (name, data) in enumerate(frames, start=1)
            if start < i <= start + 2
        )
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    async with QueueClient("http://q", transport=httpx.MockTransport(answer)) as client:
        events = [e async for e in client.stream("r1")]
    assert asked == [None, "2", "4"]
    assert [type(e) for e in events] == [Queued, Started, Delta, Done]


async def test_stream_gives_up_after_a_few_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tlc_widgets.client.events, "RECONNECT_BACKOFF_S", (0, 0))
    tries: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        raise httpx.ReadError("connection reset", request=request)

    async with QueueClient("http://q", transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(ServerUnavailable):
            async for _ in client.stream("r1"):
                pass
    assert len(tries) == 3


def test_the_exception_tree_is_exported_from_the_client_module() -> None:
    exported = set(tlc_widgets.client.__all__)
    assert {"QueueClient", "Submitted", "TLCError", "RequestCancelled"} <= exported
    assert all(hasattr(tlc_widgets.client, name) for name in exported)
    tree = {n for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    assert tree == {c.__name__ for c in (TLCError, *TLCError.__subclasses__())}
    assert tree <= exported
    assert all(issubclass(getattr(errors, n), TLCError) for n in tree)


async def test_keys_travel_as_bearer_and_refusals_are_access_denied(
    practice: BackgroundServer,
) -> None:
    keys = "sk-ada-0001-abcdef:ada:student,sk-tina-0002-abcdef:tina:teacher"
    with queue_server(practice.url + "/v1", keys=keys) as queue:
        async with QueueClient(queue.url, api_key="sk-ada-0001-abcdef") as ada:
            assert await ada.chat("Hello", max_tokens=5)
            with pytest.raises(errors.AccessDenied) as forbidden:
                await ada.submit("me first", priority=5)  # only teachers may jump the line
            assert forbidden.value.code == "forbidden"
        async with QueueClient(queue.url, api_key="sk-wrong-0003-abcdef") as stranger:
            with pytest.raises(errors.AccessDenied) as unauthorized:
                await stranger.submit("hi")
            assert unauthorized.value.code == "unauthorized"
        async with QueueClient(queue.url, api_key="sk-tina-0002-abcdef") as tina:
            submitted = await tina.submit("urgent", priority=5, max_tokens=5)
            assert (await tina.status(submitted.id))["user"] == "tina"  # from the key
