"""ChatPanel, QueueMonitor and %%chat in a real Jupyter kernel, against real servers on loopback.

The servers run in this process's threads (conftest); the kernel is a separate process that
reaches them over HTTP, like a student's notebook. We read the kernel's iopub channel as a
frontend would, so comm traffic is measured as it leaves the kernel. Every wait is a
bounded poll of state that lives elsewhere (the kernel, a server); none is a fixed sleep.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from jupyter_client.manager import KernelManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import practice_server, queue_server
from tlc_widgets.config import Settings
from tlc_widgets.server import create_app
from tlc_widgets.serving import BackgroundServer, free_port

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(240)]


class Kernel:
    """A real ipykernel, driven like a frontend: execute code, keep every iopub message."""

    def __init__(self, cwd: Path) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(
            cwd=str(cwd), env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        )
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.iopub: list[dict[str, Any]] = []

    def run(self, code: str, timeout: float = 60) -> str:
        """Execute `code` (top-level await allowed); its stdout. Raises if the cell raised."""
        msg_id = self.kc.execute(code)
        out: list[str] = []
        error = None
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            self.iopub.append(msg)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}\n" + "\n".join(
                    content["traceback"]
                )
            elif kind == "status" and content["execution_state"] == "idle":
                break
        if error:
            raise AssertionError(f"the cell raised {error}\n--- code:\n{code}")
        return "".join(out)

    def value(self, expression: str) -> Any:
        return json.loads(self.run(f"import json as _j; print(_j.dumps({expression}))"))

    def poll(self, expression: str, until: Any, what: str, tries: int = 600) -> Any:
        """Evaluate `expression` in the kernel until `until(value)`; ~30 s at most."""
        for _ in range(tries):
            value = self.value(expression)
            if until(value):
                return value
            time.sleep(0.05)  # the kernel's loop runs the panel's tasks between our cells
        raise AssertionError(f"timed out waiting for {what}; last: {value!r}")

    def comm_msgs(self, comm_id: str, since: int = 0) -> list[dict[str, Any]]:
        return [
            m
            for m in self.iopub[since:]
            if m["msg_type"] == "comm_msg" and m["content"].get("comm_id") == comm_id
        ]

    def create_subshell(self) -> str:
        """A kernel subshell (ipykernel 7): a thread with its own asyncio loop."""
        request = self.kc.session.msg("create_subshell_request", {})
        self.kc.control_channel.send(request)
        while True:
            reply = self.kc.control_channel.get_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == request["header"]["msg_id"]:
                return str(reply["content"]["subshell_id"])

    def comm_send(self, comm_id: str, data: dict[str, Any], subshell_id: str) -> None:
        """Send a comm message the way JupyterLab 4.6 does: over a subshell."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        msg["header"]["subshell_id"] = subshell_id
        self.kc.shell_channel.send(msg)

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(tmp_path_factory.mktemp("kernel"))
    k.run("import asyncio, json\nfrom tlc_widgets import ChatPanel, QueueMonitor")
    yield k
    k.shutdown()


def poll_server(url: str, request_id: str, until: Any, what: str) -> dict[str, Any]:
    for _ in range(600):
        status: dict[str, Any] = httpx.get(f"{url}/api/requests/{request_id}").json()
        if until(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {status!r}")


def hold_slot(queue_url: str, practice_url: str, model: str | None = None) -> str:
    """A request that takes the only slot (of `model`, else the default model's) and keeps
    it (stall fault), so ours must queue."""
    httpx.put(f"{practice_url}/practice/faults", json={"stall_after_tokens": 1})
    body = {"prompt": "hold", "user": "holder"} | ({"model": model} if model else {})
    r = httpx.post(f"{queue_url}/api/requests", json=body)
    assert r.status_code == 202, r.text
    holder: str = r.json()["id"]
    poll_server(queue_url, holder, lambda s: s["tokens"] >= 1, "the holder to take the slot")
    # A practice request keeps the faults it arrived with: later ones run normally.
    httpx.put(f"{practice_url}/practice/faults", json={"stall_after_tokens": None})
    return holder


@pytest.fixture
def one_slot() -> Iterator[tuple[str, str]]:
    """(queue url, practice url): one practice slot, ~100 tokens/s."""
    with practice_server(parallel=1, tokens_per_second=100) as practice:
        with queue_server(practice.url + "/v1") as queue:
            yield queue.url, practice.url


# ---------------------------------------------------------------------------- a whole reply


def test_status_goes_queued_generating_done_and_the_reply_matches_the_server(
    kernel: Kernel, one_slot: tuple[str, str]
) -> None:
    queue_url, practice_url = one_slot
    holder = hold_slot(queue_url, practice_url, model="practice-fast")
    mark = len(kernel.iopub)
    kernel.run(
        f"p1 = ChatPanel(url={queue_url!r}, model='practice-fast')\n"
        "seen1 = []\n"
        "p1.status_line.observe(lambda c: seen1.append(p1.status), names='value')\n"
        "t1 = p1.send('Tell me about the rabbit')"
    )
    status = kernel.poll("p1.status", lambda s: s.startswith("queued — position"), "queued")
    assert status == "queued — position 1 of 1"
    httpx.delete(f"{queue_url}/api/requests/{holder}")
    reply = kernel.value("await t1")
    seen, request_id = kernel.value("seen1"), kernel.value("p1.request_id")
    assert any(s.startswith("generating") for s in seen), seen
    assert seen[-1].startswith("done · ") and "(waited" in seen[-1], seen
    assert kernel.value("p1.status") == seen[-1]
    server = httpx.get(f"{queue_url}/api/requests/{request_id}").json()
    assert server["status"] == "done" and server["text"] == reply and reply
    customs = [
        m["content"]["data"]["content"]
        for m in kernel.comm_msgs(kernel.value("p1.transcript.model_id"), mark)
        if m["content"]["data"].get("method") == "custom"
    ]
    deltas = [
        c if isinstance(c, str) else c.get("c", "")
        for c in customs
        if isinstance(c, str) or c.get("k") == "d"
    ]
    assert len(deltas) >= 3, "the transcript should grow in several steps"
    # The tail still buffered at the end is not sent: the final turn (a trait) carries it.
    assert reply.startswith("".join(deltas))
    assert kernel.value("[t['content'] for t in p1.transcript.turns]")[-1] == reply
    kernel.run("p1.close()")


def test_model_switch_applies_presets_and_is_used(kernel: Kernel) -> None:
    with practice_server() as practice, queue_server(practice.url + "/v1") as queue:
        presets = {
            m["id"]: m["preset"] for m in httpx.get(f"{queue.url}/api/models").json()["models"]
        }
        kernel.run(f"p2 = ChatPanel(url={queue.url!r})\nawait p2.load_models()")
        # The default is the first listed: practice-small, at a human pace for lessons.
        assert kernel.value("p2.settings.values()")["model"] == "practice-small"
        kernel.run("p2.model = 'practice-fast'")
        assert kernel.value("p2.settings.values()")["model"] == "practice-fast"
        kernel.run("p2.model = 'practice-small'")
        small = presets["practice-small"]
        assert kernel.value("p2.settings.values()") == {
            "model": "practice-small",
            "temperature": small["temperature"],
            "max_tokens": small["max_tokens"],
        }
        assert kernel.value("p2.settings.system_prompt") == small["system_prompt"]
        assert "not an LLM" in kernel.value("p2.settings.practice_note.value")
        kernel.value("await p2.send('Hello')")
        request_id = kernel.value("p2.request_id")
        assert (
            httpx.get(f"{queue.url}/api/requests/{request_id}").json()["model"] == "practice-small"
        )
        kernel.run("p2.close()")


def test_a_past_conversation_reloads_from_history_and_continues(
    kernel: Kernel, tmp_path: Path
) -> None:
    history = str(tmp_path / "history.sqlite3")
    with practice_server() as practice:
        with queue_server(practice.url + "/v1", history_path=history) as queue:
            kernel.run(
                f"p5 = ChatPanel(url={queue.url!r})\nawait p5.load_models()\n"
                "p5.model = 'practice-small'\n"
                "first = await p5.send('Tell me about the Queen')\n"
                "second = await p5.send('And the cat?')\n"
                "before = p5.messages\np5.close()"
            )
        # A new server on the same history file: the conversation outlived the old one.
        with queue_server(practice.url + "/v1", history_path=history) as queue:
            kernel.run(
                f"p6 = ChatPanel(url={queue.url!r})\nawait p6.load_models()\n"
                "loaded = await p6.load()"
            )
            assert kernel.value("loaded == before") is True
            assert kernel.value("p6.model") == "practice-small"
            assert kernel.value("len(p6.transcript.turns)") == 4
            assert "loaded a past conversation" in kernel.value("p6.status")
            third = kernel.value("await p6.send('Go on')")
            assert third
            request_id = kernel.value("p6.request_id")
            sent = httpx.get(f"{queue.url}/api/history/{request_id}").json()["messages"]
            assert [m["content"] for m in sent if m["role"] == "user"] == [
                "Tell me about the Queen",
                "And the cat?",
                "Go on",
            ]
            kernel.run("p6.close()")


# ---------------------------------------------------------------------------- stopping


def test_stop_while_queued_cancels_on_the_server(kernel: Kernel, one_slot: tuple[str, str]) -> None:
    queue_url, practice_url = one_slot
    holder = hold_slot(queue_url, practice_url)
    kernel.run(f"p3 = ChatPanel(url={queue_url!r})\nt3 = p3.send('Wait for me')")
    kernel.poll("p3.status", lambda s: s.startswith("queued"), "queued")
    kernel.run("p3.stop()")
    assert kernel.value("p3.status") == "stopped"
    request_id = kernel.value("p3.request_id")
    poll_server(queue_url, request_id, lambda s: s["status"] == "cancelled", "the cancel")
    assert httpx.get(f"{queue_url}/api/queue").json()["waiting"] == 0
    kernel.poll(
        "list(__import__('tlc_widgets.widgets.inflight').widgets.inflight.in_flight())",
        lambda v: v == [],
        "nothing left in flight",
    )
    httpx.delete(f"{queue_url}/api/requests/{holder}")
    kernel.run("p3.close()")


def test_stop_while_generating_and_close_cancel_on_the_server(kernel: Kernel) -> None:
    with (
        practice_server(tokens_per_second=20) as practice,
        queue_server(practice.url + "/v1") as queue,
    ):
        kernel.run(f"p4 = ChatPanel(url={queue.url!r})\nt4 = p4.send('Tell me a long story')")
        kernel.poll("p4.status", lambda s: s.startswith("generating"), "generating")
        kernel.run("p4.stop()")
        first = kernel.value("p4.request_id")
        poll_server(queue.url, first, lambda s: s["status"] == "cancelled", "the stop")
        assert kernel.value("p4.status") == "stopped"
        # The partial reply stays in the transcript, marked.
        assert kernel.value("p4.transcript.turns[-1]['note']") == "stopped"
        kernel.run("t4b = p4.send('Another one')")
        kernel.poll("p4.status", lambda s: s.startswith("generating"), "generating again")
        second = kernel.value("p4.request_id")
        kernel.run("p4.close()")
        poll_server(queue.url, second, lambda s: s["status"] == "cancelled", "close() to cancel")


def test_kernel_exit_cancels_requests_in_flight(tmp_path: Path) -> None:
    # A long grace period, so only our exit hook (not the server's own clean-up) can cancel.
    with practice_server(tokens_per_second=5) as practice:
        with queue_server(practice.url + "/v1", disconnect_grace_s=600) as queue:
            k = Kernel(tmp_path)
            try:
                k.run(
                    f"from tlc_widgets import ChatPanel\np = ChatPanel(url={queue.url!r})\n"
                    "t = p.send('Tell me a long story')"
                )
                k.poll("p.status", lambda s: s.startswith("generating"), "generating")
                request_id = k.value("p.request_id")
            finally:
                k.shutdown()
            poll_server(queue.url, request_id, lambda s: s["status"] == "cancelled", "exit hook")


def test_clicks_from_a_comm_subshell_run_on_the_kernel_loop(kernel: Kernel) -> None:
    """JupyterLab 4.6 sends widget messages over a kernel subshell (setting
    `commsOverSubshells`): handlers run in another thread, on another asyncio loop. A new
    prompt must still stop the old one, and Stop must still reach the server."""
    with practice_server(tokens_per_second=20) as practice:
        with queue_server(practice.url + "/v1") as queue:
            kernel.run(f"p6 = ChatPanel(url={queue.url!r})\nawait p6.load_models()")
            prompt, stop = kernel.value("[p6.prompt.model_id, p6.stop_button.model_id]")
            sub = kernel.create_subshell()

            def type_in(text: str) -> None:
                kernel.comm_send(
                    prompt, {"method": "custom", "content": {"k": "submit", "text": text}}, sub
                )

            type_in("First")
            kernel.poll("p6.status", lambda s: s.startswith("generating"), "the first reply")
            first = kernel.value("p6.request_id")
            type_in("Second")  # replaces the first, which it awaits: same loop or it hangs
            kernel.poll("p6.status", lambda s: s.startswith("done"), "the second reply")
            poll_server(queue.url, first, lambda s: s["status"] == "cancelled", "the first to stop")
            type_in("Third")
            kernel.poll("p6.status", lambda s: s.startswith("generating"), "the third reply")
            third = kernel.value("p6.request_id")
            kernel.comm_send(stop, {"method": "custom", "content": {"event": "click"}}, sub)
            kernel.poll("p6.status", lambda s: s == "stopped", "Stop")
            poll_server(queue.url, third, lambda s: s["status"] == "cancelled", "the stop")
            roles = kernel.value("[m['role'] for m in p6.messages]")
            assert roles == [
                "system",
                "user",
                "assistant",
                "user",
                "assistant",
                "user",
                "assistant",
            ]
            kernel.run("p6.close()")


def test_queue_monitor_follows_the_queue_and_close_stops_it(
    kernel: Kernel, one_slot: tuple[str, str]
) -> None:
    queue_url, practice_url = one_slot
    kernel.run(f"mon = QueueMonitor(url={queue_url!r})")
    kernel.poll("mon.snapshot.get('waiting')", lambda w: w == 0, "a first snapshot")
    holder = hold_slot(queue_url, practice_url)
    httpx.post(f"{queue_url}/api/requests", json={"prompt": "wait", "user": "b"})
    snap = kernel.poll("mon.snapshot", lambda s: s.get("waiting") == 1, "the waiting request")
    assert snap["running"] == 1 and snap["upstreams"][0]["busy"] == 1
    assert kernel.value("[p[1] for p in mon.history]")[-1] == 1  # the chart's data
    httpx.delete(f"{queue_url}/api/requests/{holder}")
    kernel.poll("mon.snapshot.get('served', 0)", lambda n: n >= 1, "the waiting one served")
    kernel.run("mon.close()")
    kernel.poll("len(mon._tasks)", lambda n: n == 0, "the monitor's tasks to end")


def test_queue_monitor_says_when_the_server_does_not_answer(kernel: Kernel) -> None:
    kernel.run(f"mon2 = QueueMonitor(url='http://127.0.0.1:{free_port()}')")
    message = kernel.poll("mon2.message", lambda m: "not answering" in m, "the outage sentence")
    assert message.startswith("The queue server at http://127.0.0.1:")
    kernel.run("mon2.close()")


# ---------------------------------------------------------------------------- server down


def test_server_down_is_one_sentence_and_the_panel_recovers(kernel: Kernel) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    kernel.run(f"p5 = ChatPanel(url={url!r})")
    status = kernel.poll("p5.status", lambda s: "not answering" in s, "the outage")
    assert status.startswith(f"The queue server at {url} is not answering")
    kernel.run("t5 = p5.send('Anyone there?')")
    kernel.poll("t5.done()", bool, "the failed send")
    assert "not answering" in kernel.value("p5.status")
    with practice_server() as practice:
        settings = Settings(_env_file=None, upstreams=[practice.url + "/v1"])  # type: ignore[call-arg]
        with BackgroundServer(create_app(settings), port=port):
            reply = kernel.value("await p5.send('Now?')")
            assert reply
            assert kernel.value("p5.status").startswith("done · ")
            assert kernel.value("p5.settings.values()")["model"] == "practice-small"
    kernel.run("p5.close()")


def test_the_red_line_clears_by_itself_when_the_server_comes_back(kernel: Kernel) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    kernel.run(f"p7 = ChatPanel(url={url!r})\np7.watch.retry_s = 0.2")
    kernel.poll("p7.status", lambda s: "not answering" in s, "the outage")
    kernel.run("t7 = p7.send('Anyone there?')")
    kernel.poll("t7.done()", bool, "the failed send")
    assert "not answering" in kernel.value("p7.status")
    # The prompt never reached a model: shown (marked), but not sent again as context.
    assert kernel.value("[m['role'] for m in p7.messages if m['role'] == 'user']") == []
    assert kernel.value("p7.transcript.turns[-1].get('left_out')")
    with practice_server() as practice:
        settings = Settings(_env_file=None, upstreams=[practice.url + "/v1"])  # type: ignore[call-arg]
        with BackgroundServer(create_app(settings), port=port):
            status = kernel.poll("p7.status", lambda s: s.startswith("ready"), "the recovery")
    assert "not answering" not in status
    kernel.run("p7.close()")


# ---------------------------------------------------------------------------- comm traffic

WORDS = ("Once ", "upon ", "a ", "time, ", "the ", "rabbit ", "ran ", "down ", "its ", "hole. ")


def fixed_length_upstream(tokens_per_second: float) -> Starlette:
    """An OpenAI-compatible upstream that writes exactly `max_tokens` tokens.

    The practice model ends its answers after 30–180 tokens, so a 2,000-token reply needs
    this stand-in; the real queue server still sits in front of it.
    """

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fixed-length", "object": "model"}]})

    async def chat(request: Request) -> Response:
        body = await request.json()
        n = int(body.get("max_tokens") or 100)

        def chunk(delta: dict[str, str], finish: str | None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            data = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body["model"],
                "choices": [choice],
            }
            return f"data: {json.dumps(data)}\n\n"

        async def stream() -> AsyncIterator[str]:
            start = anyio.current_time()
            for i in range(n):
                yield chunk({"content": WORDS[i % len(WORDS)]}, None)
                await anyio.sleep(
                    max(0.0, start + (i + 1) / tokens_per_second - anyio.current_time())
                )
            yield chunk({}, "length")
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return Starlette(
        routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])]
    )


def measure(
    kernel: Kernel, queue_url: str, model: str, max_tokens: int, name: str
) -> dict[str, Any]:
    kernel.run(
        f"{name} = ChatPanel(url={queue_url!r}, model={model!r})\n"
        f"await {name}.load_models()\n"
        f"{name}.settings.max_tokens.value = {max_tokens}"
    )
    comm_id = kernel.value(f"{name}.transcript.model_id")
    mark = len(kernel.iopub)
    reply: str = kernel.value(f"await {name}.send('Tell me a long story')")
    kernel.run(f"{name}.close()")
    msgs = kernel.comm_msgs(comm_id, mark)
    # For the record, everything the panel's widgets sent (status line, prompt box …).
    every = [m for m in kernel.iopub[mark:] if m["msg_type"] == "comm_msg"]
    panel = sum(len(json.dumps(m["content"]["data"], ensure_ascii=False).encode()) for m in every)
    payload = sum(len(json.dumps(m["content"]["data"], ensure_ascii=False).encode()) for m in msgs)
    wire = sum(
        len(json.dumps(m[part], ensure_ascii=False, default=str).encode())
        for m in msgs
        for part in ("header", "parent_header", "metadata", "content")
    )
    size = len(reply.encode())
    return {
        "tokens": kernel.value(f"{name}.status"),
        "reply_bytes": size,
        "messages": len(msgs),
        "payload_bytes": payload,
        "wire_bytes": wire,
        "panel_payload_bytes": panel,
        "ratio": payload / size,
        "wire_ratio": wire / size,
    }


def test_comm_bytes_grow_linearly_with_the_reply(kernel: Kernel) -> None:
    with BackgroundServer(fixed_length_upstream(tokens_per_second=400)) as upstream:
        with queue_server(upstream.url + "/v1") as queue:
            short = measure(kernel, queue.url, "fixed-length", 200, "m200")
            long = measure(kernel, queue.url, "fixed-length", 2000, "m2000")
    with (
        practice_server(tokens_per_second=400) as practice,
        queue_server(practice.url + "/v1") as q,
    ):
        natural = measure(kernel, q.url, "practice-fast", 200, "mpractice")
    for label, m in (("200 tokens", short), ("2,000 tokens", long), ("practice-fast", natural)):
        print(f"\ncomm traffic, {label}: {json.dumps(m)}")
    assert short["tokens"].startswith("done · 200 tokens")
    assert long["tokens"].startswith("done · 2000 tokens")
    assert short["ratio"] <= 3 and long["ratio"] <= 3
    assert long["ratio"] <= 1.5 * short["ratio"]  # linear: the ratio does not grow
    assert long["wire_ratio"] <= 1.5 * short["wire_ratio"]


# ---------------------------------------------------------------------------- %%chat


def test_chat_magic_returns_at_once_and_streams_into_its_output(
    kernel: Kernel, one_slot: tuple[str, str]
) -> None:
    queue_url, practice_url = one_slot
    holder = hold_slot(queue_url, practice_url)
    kernel.run(
        f"import os\nos.environ['TLC_SERVER_URL'] = {queue_url!r}\n"
        "from tlc_widgets.widgets import magic\nmagic._client = None\n%load_ext tlc_widgets"
    )
    mark = len(kernel.iopub)
    kernel.run("%%chat --model practice-fast --max-tokens 60\nTell me about the rabbit")
    assert not kernel.value("magic.last_task.done()")  # the cell returned; the reply has not

    def texts() -> list[str]:
        return [
            m["content"]["data"]["text/plain"]
            for m in kernel.iopub[mark:]
            if m["msg_type"] in ("display_data", "update_display_data")
        ]

    kernel.poll("1", lambda _: any(t.startswith("queued — position") for t in texts()), "queued")
    httpx.delete(f"{queue_url}/api/requests/{holder}")
    reply = kernel.value("await magic.last_task")
    kernel.run("pass")  # collect the last updates
    assert reply and reply in texts()
    assert any(t.startswith("done · ") for t in texts())


def test_the_panel_shows_the_budget_and_a_class_pause_at_once(kernel: Kernel) -> None:
    """A real panel in a real kernel: the budget left, then a teacher's pause with its
    message arriving without a send (the class rules apply to everyone without keys)."""
    with practice_server() as practice:
        with queue_server(practice.url + "/v1", budget_prompts_per_day=5) as queue:
            kernel.run(f"p9 = ChatPanel(url={queue.url!r})")
            shown = kernel.poll("p9.notice.value", lambda v: "prompts left today" in v, "budget")
            assert "5 of 5 prompts left today" in shown
            r = httpx.post(f"{queue.url}/api/class/pause", json={"message": "Quiz until 10:30"})
            assert r.status_code == 200, r.text
            paused = kernel.poll("p9.notice.value", lambda v: "Quiz until 10:30" in v, "pause")
            assert "tlc-notice-paused" in paused
            httpx.post(f"{queue.url}/api/class/resume")
            kernel.poll("p9.notice.value", lambda v: "Quiz" not in v, "the class reopened")
            kernel.run("p9.close()")
