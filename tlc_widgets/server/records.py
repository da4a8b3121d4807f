"""One request's record: its state machine and its append-only event log.

    >>> rec = Record.new(user="ada", model="practice-fast", messages=[], params={})
    >>> rec.emit(Queued(position=1, waiting=1, eta_s=None))
    >>> rec.start(upstream="http://127.0.0.1:1234/v1")
    >>> rec.add_content("Hello")
    >>> rec.finish(Done(finish_reason="stop"))
    True
    >>> rec.status, rec.text, len(rec.frames)
    (<Status.DONE: 'done'>, 'Hello', 4)

The record is the source of truth. An SSE subscriber is just "send the frames after the id
you last saw, then wait for more", so a late subscriber misses nothing and a reconnect with
`Last-Event-ID` resumes for free. Every status change goes through `_move`, and `finish` is
the one way in to a terminal state, so "exactly one terminal event" holds by construction.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import Any

from ..protocol import (
    Cancelled,
    Delta,
    Done,
    ErrorEvent,
    Event,
    Queued,
    Started,
    Status,
    event_data,
    event_name,
)
from ..sse import data_frame, frame
from .clock import Signal, Timer
from .record_memory import CHUNK_BASE, RECORD_BASE, compact, held_by, prompt_held
from .upstream_call import CHAT, Call

__all__ = ["CHAT", "Call", "IllegalTransition", "Record"]

_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.ERROR, Status.CANCELLED}),
    Status.RUNNING: frozenset({Status.DONE, Status.ERROR, Status.CANCELLED}),
    Status.DONE: frozenset(),
    Status.ERROR: frozenset(),
    Status.CANCELLED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A bug: something tried to move a request along an edge the lifecycle does not have."""


@dataclass(eq=False)
class Record:
    id: str
    user: str
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]  #: temperature, max_tokens … forwarded upstream as given
    priority: int = 0
    status: Status = Status.QUEUED
    upstream: str | None = None
    dispatch_no: int | None = None  #: 1 for the first request this server started, then 2 …
    created: float = field(default_factory=time.monotonic)
    created_wall: float = field(default_factory=time.time)
    started: float | None = None
    first_token: float | None = None
    finished: float | None = None
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tokens: int = 0
    usage: dict[str, Any] | None = None
    outcome: Event | None = None  #: the terminal event, once there is one
    frames: list[bytes] = field(default_factory=list)
    last_queued: Queued | None = None
    listeners: int = 0  #: open event streams; when it drops to 0 a grace timer starts
    #: bytes this record holds (its encoded events, and the upstream's chunks if kept)
    size: int = 0
    _chunk_bytes: int = 0  #: the JSON text of `chunks` (parsed, so not kept as text)
    timeout: Timer | None = None  #: the queue-wait deadline while queued
    #: called with the record after every status change (logging, metrics, history)
    on_change: Callable[[Record], None] | None = None
    call: Call = CHAT
    #: the upstream's frames, as an OpenAI stream forwards them (only when `call.wire`)
    wire: list[bytes] | None = None
    usage_wire: bytes | None = None  #: the `choices: []` usage chunk, sent only when asked
    #: the upstream's parsed chunks, for a whole reply (only when `call.chunks`)
    chunks: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None  #: the first chunk: the upstream's id, fingerprint …
    _wire_seen: int = -1
    _changed: Signal = field(default_factory=Signal)

    def __post_init__(self) -> None:
        if self.call.wire:
            self.wire = []
        if self.call.chunks:
            self.chunks = []

    @classmethod
    def new(cls, **kwargs: Any) -> Record:
        # 128 random bits: ids are unguessable, so knowing one is the right to read it.
        return cls(id=secrets.token_urlsafe(16), **kwargs)

    # ------------------------------------------------------------------ reading

    @property
    def text(self) -> str:
        return "".join(self.content)

    @property
    def last_id(self) -> int:
        return len(self.frames)

    async def wait_beyond(self, last_id: int) -> None:
        """Return once there is an event after `last_id` (at once if there already is)."""
        while len(self.frames) <= last_id:
            await self._changed.wait()

    async def changed(self) -> None:
        """Return at the next event, or at the next `nudge()` (the keep-alive clock)."""
        await self._changed.wait()

    def nudge(self) -> None:
        """Wake every waiter without an event: streams that find nothing new send a ping.
        One periodic nudge for all streams is far cheaper than a timer around every wait."""
        self._changed.fire()

    @property
    def outcome_code(self) -> str | None:
        """How it ended, in one word: the finish_reason, the error code, or who cancelled."""
        match self.outcome:
            case Done(finish_reason=reason):
                return reason
            case ErrorEvent(code=code):
                return code
            case Cancelled(by=by):
                return by
        return None

    def timings(self) -> dict[str, float | None]:
        end = self.finished or time.monotonic()
        waited = (self.started or end) - self.created
        ttft = self.first_token - self.started if self.first_token and self.started else None
        total = end - self.created
        gen = end - self.first_token if self.first_token else None
        rate = (self.tokens - 1) / gen if gen and self.tokens > 1 else None
        return {
            "waited_s": round(waited, 4),
            "ttft_s": None if ttft is None else round(ttft, 4),
            "total_s": round(total, 4),
            "tokens_per_s": None if rate is None else round(rate, 2),
        }

    # ------------------------------------------------------------------ writing

    def emit(self, event: Event) -> None:
        """Append a non-terminal event and wake every subscriber."""
        if self.status.terminal:
            raise IllegalTransition(f"request {self.id} is {self.status}; no more events")
        self._append(event)

    def start(self, upstream: str) -> None:
        self.upstream = upstream
        self.started = time.monotonic()
        self._move(Status.RUNNING)
        waited = round(self.started - self.created, 4)
        self._append(Started(model=self.model, upstream=upstream, waited_s=waited))

    def add_content(self, text: str) -> None:
        self._token()
        self.content.append(text)
        self._append(Delta(content=text))

    def add_reasoning(self, text: str) -> None:
        self._token()
        self.reasoning.append(text)
        self._append(Delta(reasoning=text))

    def add_delta(self, delta: Delta) -> None:
        """A piece of the reply, with whatever extra fields the upstream sent."""
        self._token()
        if delta.content:
            self.content.append(delta.content)
        if delta.reasoning:
            self.reasoning.append(delta.reasoning)
        self._append(delta)

    def add_wire(self, event: str, chunk: dict[str, Any], raw: str) -> None:
        """One chunk as the upstream sent it: kept for an OpenAI client, if one asked.

        `raw` is the chunk's JSON text (U+2028/2029/0085 already escaped), forwarded
        unchanged rather than re-encoded: cheaper, and nothing the upstream said is lost."""
        if self.meta is None:
            self.meta = chunk
        if self.wire is not None:
            # A chunk with no delta in it (the role chunk, the finish, Responses bookkeeping)
            # appended no event, so nothing woke the door: wake it here.
            if self._wire_seen == len(self.frames):
                self.nudge()
            self._wire_seen = len(self.frames)
            if event == "message":
                data = data_frame(raw)
                if chunk.get("choices") == [] and "usage" in chunk:
                    self.usage_wire = data
                    return
                self.wire.append(data)
            else:
                self.wire.append(frame(event, raw))
        if self.chunks is not None:
            self.chunks.append(chunk)
            self._chunk_bytes += len(raw)
        self.size += len(raw)

    @property
    def held(self) -> int:
        """Bytes it keeps in memory, Python's objects counted whole (`size` counts only
        their contents, and is what the reply limit compares): what `TLC_RETAIN_BYTES`
        budgets. Counted when asked (once, as it finishes), not per token."""
        texts: list[str | bytes] = [*self.content, *self.reasoning]
        frames = chain(texts, self.frames, self.wire or ())
        total = RECORD_BASE + prompt_held(self.messages) + sum(map(held_by, frames))
        if self.usage_wire is not None:
            total += held_by(self.usage_wire)
        return total + CHUNK_BASE * len(self.chunks or ()) + self._chunk_bytes

    def upstream_body(self) -> dict[str, Any]:
        """The JSON body sent upstream: the client's fields, then the queue's own."""
        body = {**self.params, **self.call.extra, "model": self.model}
        if self.call.endpoint == "chat/completions":
            body.setdefault("messages", self.messages)
        return body

    def finish(self, event: Done | ErrorEvent | Event) -> bool:
        """Move to the terminal state `event` names. False (and nothing sent) if already ended.

        Racing enders (a cancel and an upstream error at once) are normal; the first wins.
        """
        if self.status.terminal:
            return False
        target = {"done": Status.DONE, "error": Status.ERROR, "cancelled": Status.CANCELLED}
        self.finished = time.monotonic()
        if isinstance(event, Done) and not event.timings:
            meta = self.meta or {}
            event = replace(
                event,
                usage=event.usage or self.usage,
                timings=self.timings(),
                upstream_id=event.upstream_id or meta.get("id"),
                system_fingerprint=event.system_fingerprint or meta.get("system_fingerprint"),
            )
        self.outcome = event
        compact(self.content), compact(self.reasoning)  # one string each, from now on
        # Encoded before the move: the store's budget, told by the move, counts it too.
        encoded = self._encode(event)
        self._move(target[event_name(event)])
        self._push(encoded)
        return True

    def _token(self) -> None:
        if self.status is not Status.RUNNING:
            raise IllegalTransition(f"request {self.id} is {self.status}; it cannot take tokens")
        if self.first_token is None:
            self.first_token = time.monotonic()
        self.tokens += 1

    def _move(self, new: Status) -> None:
        if new not in _ALLOWED[self.status]:
            raise IllegalTransition(f"request {self.id}: {self.status} -> {new} is not allowed")
        self.status = new
        if self.on_change is not None:
            self.on_change(self)

    def _append(self, event: Event) -> None:
        self._push(self._encode(event))

    def _encode(self, event: Event) -> bytes:
        if isinstance(event, Queued):
            self.last_queued = event
        # Encoded once here (one `data:` line, the unsafe separators escaped): the same
        # bytes go to every subscriber and every replay.
        encoded = frame(event_name(event), event_data(event), len(self.frames) + 1)
        self.size += len(encoded)
        return encoded

    def _push(self, encoded: bytes) -> None:
        self.frames.append(encoded)
        # One broadcast wake-up: every current waiter runs once, new waiters wait for the
        # next append. No per-subscriber queues to fill or forget.
        self._changed.fire()
