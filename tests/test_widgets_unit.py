"""Widget logic without a kernel, a browser or a server: sentences, coalescing, exports,
multi-turn messages, and ChatPanel driven by a scripted stand-in client."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import pytest

from tlc_widgets.client import (
    InvalidRequest,
    Opened,
    RequestCancelled,
    RequestFailed,
    ServerUnavailable,
    Submitted,
)
from tlc_widgets.lab import add_parser, find_notebooks, lab_command
from tlc_widgets.protocol import Cancelled, Delta, Done, ErrorEvent, Event, Queued, Started
from tlc_widgets.widgets import inflight, magic
from tlc_widgets.widgets.chat import ChatPanel
from tlc_widgets.widgets.conversation import Conversation, Turn, download_link
from tlc_widgets.widgets.settings import PRACTICE_NOTE, ModelSettings
from tlc_widgets.widgets.status import (
    Phase,
    Progress,
    StatusTracker,
    done_text,
    queued_text,
    status_html,
)
from tlc_widgets.widgets.transcript import Coalescer, Transcript

# ---------------------------------------------------------------------------- status line


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_queued_sentence_with_and_without_eta() -> None:
    assert queued_text(Queued(3, 7, 20.4)) == "queued — position 3 of 7 · ETA ~20 s"
    assert queued_text(Queued(3, 7, None)) == "queued — position 3 of 7"
    assert queued_text(Queued(1, 1, 0.2)) == "queued — position 1 of 1 · ETA ~1 s"
    assert queued_text(Queued(9, 9, 150)) == "queued — position 9 of 9 · ETA ~2 min 30 s"


def test_a_request_told_by_its_events() -> None:
    clock = Clock()
    t = StatusTracker(clock)
    assert t.sending() == Progress(Phase.SENDING, "sending…")
    first = t.update(Queued(3, 7, 20.0))
    assert first.phase is Phase.QUEUED and first.fraction == 0.0
    assert t.update(Queued(2, 6, 10.0)).fraction == pytest.approx(1 / 3)
    assert t.update(Started("practice-fast", "http://u/v1", waited_s=12.0)).text == "generating…"
    clock.now += 0.5
    assert t.update(Delta(content="Once")).text == "generating…"  # one token: no rate yet
    for _ in range(41):
        clock.now += 1 / 41
        progress = t.update(Delta(content=" upon"))
    assert progress.text == "generating · 41 tok/s"
    done = t.update(Done("stop", timings={"waited_s": 12.0, "total_s": 19.6}))
    assert done == Progress(Phase.DONE, "done · 42 tokens in 7.6 s (waited 12 s)")


def test_done_prefers_the_servers_usage_and_says_when_cut_at_max_tokens() -> None:
    t = StatusTracker(Clock())
    t.update(Started("m", "u", 0.25))
    t.update(Delta(content="a"))
    done = t.update(Done("length", usage={"completion_tokens": 312}, timings={}))
    assert done.text == "done · 312 tokens in 0.0 s (waited 0.2 s) · stopped at max tokens"
    assert done_text(1, 0.5, None, "stop") == "done · 1 token in 0.5 s"


def test_errors_and_cancellations_are_one_sentence() -> None:
    t = StatusTracker(Clock())
    message = "The model stopped answering in time."
    assert t.update(ErrorEvent("upstream_timeout", message)) == Progress(Phase.ERROR, message)
    assert t.update(Cancelled("client")).text == "stopped"
    assert t.update(Cancelled("shutdown")).text == "cancelled: the queue server is shutting down"
    down = ServerUnavailable("http://127.0.0.1:9")
    assert t.fail(down) == Progress(Phase.ERROR, down.message)
    assert "not answering" in t.progress.text
    assert t.stopped().phase is Phase.STOPPED


def test_status_html_escapes_and_shows_a_bar_only_while_busy() -> None:
    assert "tlc-bar" not in status_html(Progress(Phase.DONE, "done"))
    assert "tlc-indeterminate" in status_html(Progress(Phase.SENDING, "sending…"))
    assert 'style="width:50%"' in status_html(Progress(Phase.QUEUED, "q", 0.5))
    html = status_html(Progress(Phase.ERROR, "<b>bad</b> & worse"))
    assert "&lt;b&gt;bad&lt;/b&gt; &amp; worse" in html and "<b>" not in html


# ---------------------------------------------------------------------------- coalescing


class Timers:
    """A stand-in for `loop.call_later` that fires only when told to."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def __call__(self, delay: float, fn: Callable[[], None]) -> Timers:
        self.pending.append(fn)
        return self

    def cancel(self) -> None:
        self.pending.clear()

    def fire(self) -> None:
        due, self.pending = self.pending, []
        for fn in due:
            fn()


def test_coalescer_sends_one_message_per_interval_whatever_the_token_rate() -> None:
    sent: list[dict[str, str]] = []
    timers = Timers()
    c = Coalescer(sent.append, timers)
    for i in range(1000):
        c.add(content=f"w{i} ")
    assert sent == [] and len(timers.pending) == 1  # one timer armed, not one per token
    timers.fire()
    assert sent == [{"c": "".join(f"w{i} " for i in range(1000))}]
    timers.fire()
    assert len(sent) == 1  # nothing buffered, nothing sent


def test_coalescer_keeps_reasoning_apart_and_discard_forgets() -> None:
    sent: list[dict[str, str]] = []
    timers = Timers()
    c = Coalescer(sent.append, timers)
    c.add(reasoning="hmm ")
    c.add(content="Yes")
    c.flush()
    assert sent == [{"c": "Yes", "r": "hmm "}] and timers.pending == []
    c.add(content="lost")
    c.discard()
    timers.fire()
    assert len(sent) == 1


def test_transcript_streams_deltas_and_keeps_the_final_turn_in_the_trait() -> None:
    timers = Timers()
    t = Transcript(call_later=timers)
    sent: list[Any] = []
    t.send = lambda msg, buffers=None: sent.append(msg)
    t.add_user("Hi")
    t.begin_reply()
    for word in ("Once ", "upon ", "a ", "time"):
        t.add_delta(content=word)
    timers.fire()
    t.add_delta(content=".")
    assert t.live_text == "Once upon a time."
    t._on_view_message(t, {"k": "sync"}, [])  # a view appears mid-reply
    t.end_reply(Turn("assistant", "Once upon a time."))
    assert sent == [
        {"k": "begin"},
        "Once upon a time",
        ".",  # flushed before the catch-up, so nothing is sent twice …
        {"k": "live", "c": "Once upon a time.", "r": ""},  # … and the late view has it all
    ]
    assert t.turns == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Once upon a time."},
    ]
    assert timers.pending == [] and t.live_text == ""


# ---------------------------------------------------------------------------- conversation


def test_multi_turn_messages_carry_the_system_prompt_and_every_turn() -> None:
    chat = Conversation()
    chat.add_user("Who is late?")
    chat.add_assistant("The White Rabbit.", reasoning="think", note="")
    chat.add_user("Why?")
    assert chat.messages("Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who is late?"},
        {"role": "assistant", "content": "The White Rabbit."},  # reasoning is not sent back
        {"role": "user", "content": "Why?"},
    ]
    assert chat.messages("   ")[0]["role"] == "user"  # a blank system prompt is left out


def test_export_json_and_markdown() -> None:
    chat = Conversation()
    chat.add_user("Hi")
    chat.add_assistant("**Hello**", reasoning="greet back", note="stopped")
    doc = json.loads(chat.to_json("Sys", model="practice-fast", temperature=0.8))
    assert doc["model"] == "practice-fast" and doc["temperature"] == 0.8
    assert doc["messages"] == [
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": "**Hello**",
            "reasoning_content": "greet back",
            "note": "stopped",
        },
    ]
    md = chat.to_markdown("Sys", model="practice-fast", temperature=0.8, max_tokens=200)
    assert md.startswith("# Chat with practice-fast\n")
    assert "temperature 0.8 · max tokens 200" in md
    assert "**System prompt:** Sys" in md
    assert "## You\n\nHi" in md and "## Assistant" in md and "**Hello**" in md
    assert "<details><summary>Reasoning</summary>" in md and "_(stopped)_" in md


# ---------------------------------------------------------------------------- settings

MODELS = [
    {
        "id": "practice-fast",
        "display_name": "Practice · fast",
        "practice": True,
        "preset": {"temperature": 0.8, "max_tokens": 200, "system_prompt": "Remix."},
    },
    {
        "id": "qwen",
        "display_name": "Qwen 7B",
        "practice": False,
        "loaded": False,
        "preset": {"temperature": 0.3, "max_tokens": 900, "system_prompt": "Tutor."},
    },
]


def test_picking_a_model_applies_its_preset_and_flags_the_practice_model() -> None:
    s = ModelSettings()
    s.set_models(MODELS)
    assert s.values() == {"model": "practice-fast", "temperature": 0.8, "max_tokens": 200}
    assert PRACTICE_NOTE in s.practice_note.value and s.is_practice
    assert s.picker.options[1][0] == "Qwen 7B (not loaded)"
    s.model = "qwen"
    assert s.values() == {"model": "qwen", "temperature": 0.3, "max_tokens": 900}
    assert s.system_prompt == "Tutor." and s.practice_note.value == ""
    s.max_tokens.value = 50
    s.set_models(MODELS)  # a refresh with the same models keeps the learner's edits
    assert s.max_tokens.value == 50
    with pytest.raises(ValueError, match="no model 'nope'"):
        s.model = "nope"


def test_a_model_asked_for_before_the_list_arrives_is_selected_when_it_does() -> None:
    s = ModelSettings(model="qwen")
    assert s.model == "qwen"
    s.set_models(MODELS)
    assert s.picker.value == "qwen" and s.max_tokens.value == 900


# ---------------------------------------------------------------------------- ChatPanel


class ScriptedClient:
    """Stands in for QueueClient: records submits, plays back events."""

    url = "http://scripted"

    def __init__(self, *scripts: list[Event] | Exception) -> None:
        self.scripts = list(scripts)
        self.by_id: dict[str, list[Event]] = {}
        self.submits: list[dict[str, Any]] = []
        self.streaming: list[str] = []
        self.started = asyncio.Event()
        self.cancelled: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def models(self) -> list[dict[str, Any]]:
        return MODELS

    async def submit(self, **kwargs: Any) -> Submitted:
        self.submits.append(kwargs)
        request_id = f"r{len(self.submits)}"
        script = self.scripts.pop(0)
        if isinstance(script, Exception):
            raise script  # refused at the door
        self.by_id[request_id] = script
        return Submitted(request_id, 1, 1, None, "practice-fast")

    async def open(self, **kwargs: Any) -> Opened:
        submitted = await self.submit(**kwargs)
        return Opened(submitted, self.stream(submitted.id))

    async def stream(self, request_id: str) -> AsyncGenerator[Event, None]:
        self.streaming.append(request_id)
        self.started.set()
        for event in self.by_id[request_id]:
            if isinstance(event, Delta):
                await self.gate.wait()
            yield event

    async def cancel(self, request_id: str) -> bool:
        self.cancelled.append(request_id)
        return True

    async def aclose(self) -> None:
        pass


def reply(*words: str) -> list[Event]:
    return [Started("practice-fast", "u", 0.0), *(Delta(content=w) for w in words), Done("stop")]


@pytest.mark.anyio
async def test_panel_sends_the_conversation_so_far_with_each_prompt() -> None:
    client = ScriptedClient(reply("The ", "rabbit."), reply("Because."))
    panel = ChatPanel(client)  # type: ignore[arg-type]
    assert await panel.send("Who is late?") == "The rabbit."
    assert panel.status.startswith("done · 2 tokens")
    assert await panel.send("Why?") == "Because."
    assert client.submits[1]["messages"] == [
        {"role": "system", "content": "Remix."},
        {"role": "user", "content": "Who is late?"},
        {"role": "assistant", "content": "The rabbit."},
        {"role": "user", "content": "Why?"},
    ]
    assert client.submits[1]["model"] == "practice-fast"
    assert client.submits[1]["max_tokens"] == 200
    assert panel.messages == [
        *client.submits[1]["messages"],
        {"role": "assistant", "content": "Because."},
    ]
    assert "## Assistant\n\nBecause." in panel.export("md")
    assert json.loads(panel.export("json"))["messages"] == panel.messages
    panel.new_chat()
    assert panel.messages == [{"role": "system", "content": "Remix."}]
    assert panel.transcript.turns == []
    panel.close()


@pytest.mark.anyio
async def test_a_new_prompt_stops_the_old_reply_here_and_on_the_server() -> None:
    client = ScriptedClient(reply("Once ", "upon"), reply("Hello."))
    panel = ChatPanel(client)  # type: ignore[arg-type]
    await panel.load_models()
    client.gate.clear()  # the first reply stalls before its first token
    first = panel.send("Tell a story")
    await client.started.wait()
    client.gate.set()
    second = panel.send("Say hello")
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "Hello."
    for _ in range(100):  # the DELETE runs in its own task
        if client.cancelled:
            break
        await asyncio.sleep(0)
    assert client.cancelled == ["r1"]
    assert [m["role"] for m in panel.messages] == ["system", "user", "user", "assistant"]
    assert inflight.in_flight() == {}
    panel.close()


@pytest.mark.anyio
async def test_an_error_event_keeps_the_text_so_far_and_says_why() -> None:
    failing: list[Event] = [
        Started("m", "u", 0.0),
        Delta(content="Half"),
        ErrorEvent("upstream_error", "The model server failed in the middle of the reply."),
    ]
    panel = ChatPanel(ScriptedClient(failing))  # type: ignore[arg-type]
    with pytest.raises(Exception, match="failed in the middle"):
        await panel.send("Go")
    assert panel.status == "The model server failed in the middle of the reply."
    assert panel.transcript.turns[-1]["content"] == "Half"
    assert "failed in the middle" in panel.transcript.turns[-1]["note"]
    panel.close()


@pytest.mark.anyio
async def test_stopped_while_the_post_is_on_its_way_cancels_what_the_server_accepted() -> None:
    client = ScriptedClient(reply("never"))
    panel = ChatPanel(client)  # type: ignore[arg-type]
    await panel.load_models()
    held = asyncio.Event()
    accept = asyncio.Event()
    submit = client.submit

    async def slow_submit(**kwargs: Any) -> Submitted:
        held.set()
        await accept.wait()
        return await submit(**kwargs)

    client.submit = slow_submit  # type: ignore[method-assign]
    task = panel.send("Hello?")
    await held.wait()
    panel.stop()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert panel.status == "stopped" and client.cancelled == []
    accept.set()  # the server answers after all: the panel cancels that request
    for _ in range(100):
        if client.cancelled:
            break
        await asyncio.sleep(0)
    assert client.cancelled == ["r1"] and inflight.in_flight() == {}
    panel.close()


@pytest.mark.anyio
async def test_a_refused_prompt_is_not_context_and_can_be_retried() -> None:
    too_long = InvalidRequest("The prompt is too long for this server.", code="prompt_too_long")
    client = ScriptedClient(too_long, reply("Hi."), reply("Sure."))
    panel = ChatPanel(client)  # type: ignore[arg-type]
    await panel.load_models()
    with pytest.raises(InvalidRequest):
        await panel.send("x" * 10_000)
    assert panel.status == "The prompt is too long for this server."
    refused = panel.transcript.turns[-1]
    assert refused["left_out"] and refused["note"].startswith("not sent — The prompt is too long")
    assert await panel.send("Hello") == "Hi."
    assert client.submits[1]["messages"][1:] == [{"role": "user", "content": "Hello"}]
    panel.transcript._on_view_message(panel.transcript, {"k": "retry", "i": 0}, [])
    assert await panel._current == "Sure."  # type: ignore[misc]
    assert client.submits[2]["messages"][-1] == {"role": "user", "content": "x" * 10_000}
    assert not any(t.get("left_out") for t in panel.transcript.turns)
    panel.close()


@pytest.mark.anyio
async def test_a_stream_without_a_terminal_event_is_internal_error_in_the_panel() -> None:
    panel = ChatPanel(ScriptedClient([Started("m", "u", 0.0), Delta(content="Hal")]))  # type: ignore[arg-type]
    with pytest.raises(RequestFailed) as cut:
        await panel.send("Go")
    assert cut.value.code == "internal_error"
    panel.close()


class Display:
    def __init__(self) -> None:
        self.shown: list[str] = []

    def update(self, data: dict[str, str], raw: bool) -> None:
        self.shown.append(data["text/plain"])


@pytest.mark.anyio
async def test_chat_magic_raises_request_cancelled_when_the_server_cancels() -> None:
    cancelled = [Started("m", "u", 0.0), Delta(content="Once"), Cancelled("admin")]
    magic._client = ScriptedClient(cancelled)  # type: ignore[assignment,arg-type]
    reply, status = Display(), Display()
    args = magic._parser().parse_args([])
    try:
        with pytest.raises(RequestCancelled):
            await magic._converse("Tell a story", args, reply, status)
    finally:
        magic._client = None
    assert reply.shown[-1] == "Once"
    assert status.shown[-1] == "cancelled by the queue's administrator"


def test_empty_prompt_and_unknown_export_format_are_refused() -> None:
    panel = ChatPanel(ScriptedClient())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        panel.send("  ")
    with pytest.raises(ValueError, match="unknown export format"):
        panel.export("pdf")  # type: ignore[arg-type]
    panel.close()


# ---------------------------------------------------------------------------- tlc lab


def lab_ns(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["lab", *argv])


def test_lab_flags_and_command(tmp_path: Path) -> None:
    ns = lab_ns("--no-browser", "--port", "8890", "--server-port", "8001")
    assert ns.server_port == 8001 and callable(ns.run)
    cmd = lab_command(ns, tmp_path)
    assert f"--ServerApp.root_dir={tmp_path}" in cmd
    assert "--port=8890" in cmd and "--no-browser" in cmd


def test_lab_finds_notebooks_here_or_beside_the_package(tmp_path: Path) -> None:
    (tmp_path / "notebooks").mkdir()
    assert find_notebooks(tmp_path) == tmp_path / "notebooks"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert find_notebooks(elsewhere) == Path(__file__).resolve().parent.parent / "notebooks"


def test_download_link_holds_the_export_as_a_data_url() -> None:
    import base64
    import re

    link = download_link("# Chat\n", "md")
    match = re.fullmatch(
        r'<a download="(chat-[\d-]+\.md)" href="data:text/markdown;base64,([^"]+)">⬇ \1</a>', link
    )
    assert match and base64.b64decode(match[2]) == b"# Chat\n"


def test_lab_tells_a_tlc_server_from_other_servers() -> None:
    from tests.conftest import practice_server, queue_server
    from tlc_widgets.lab import describe_existing, is_tlc_server, probe_upstream
    from tlc_widgets.serving import free_port

    with practice_server() as practice, queue_server(practice.url + "/v1") as queue:
        assert probe_upstream(practice.url + "/v1")  # an OpenAI-compatible upstream answers
        assert is_tlc_server(queue.url) and not is_tlc_server(practice.url)
        assert describe_existing(queue.url).startswith("PRACTICE MODEL")
    nobody = f"http://127.0.0.1:{free_port()}"
    assert not probe_upstream(nobody + "/v1") and not is_tlc_server(nobody)
