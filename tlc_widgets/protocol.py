"""The contract between the queue server and its clients: bodies, events, error codes.

    >>> from tlc_widgets.protocol import parse_event, Queued
    >>> parse_event("queued", '{"position": 3, "waiting": 7, "eta_s": 20.5}')
    Queued(position=3, waiting=7, eta_s=20.5)

Both sides import this module, so an event name or an error code is spelled exactly once.
One request's life, as its events tell it:

    queued ─► queued/loading … (place, load progress) ─► started ─► delta … ─► done
       │                                        │                  error
       └────────────────────────────────────────┴────────────────► cancelled

Exactly one terminal event (`done`, `error` or `cancelled`) ends every accepted request.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .codes import ERRORS, STOPPING_QUEUED, STOPPING_RUNNING, ErrorCode, error_body

__all__ = [
    "ACCEPTED",
    "ERRORS",
    "STOPPING_QUEUED",
    "STOPPING_RUNNING",
    "TERMINAL",
    "Accepted",
    "Cancelled",
    "Delta",
    "Done",
    "ErrorCode",
    "ErrorEvent",
    "Event",
    "EventName",
    "HistoryStatus",
    "Loading",
    "Message",
    "Queued",
    "RequestBody",
    "Started",
    "Status",
    "error_body",
    "event_data",
    "event_name",
    "parse_event",
]


class Status(StrEnum):
    """Where a request is in its life. Only the record module changes it."""

    QUEUED = "queued"  #: accepted, waiting for a slot
    RUNNING = "running"  #: streaming from an upstream
    DONE = "done"  #: the reply finished normally (terminal)
    ERROR = "error"  #: it failed; the event says why (terminal)
    CANCELLED = "cancelled"  #: someone stopped it (terminal)

    @property
    def terminal(self) -> bool:
        return self in (Status.DONE, Status.ERROR, Status.CANCELLED)


class EventName(StrEnum):
    QUEUED = "queued"
    LOADING = "loading"
    STARTED = "started"
    DELTA = "delta"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


TERMINAL = frozenset({EventName.DONE, EventName.ERROR, EventName.CANCELLED})


class HistoryStatus(StrEnum):
    """A request's status as the history keeps it: a `Status`, or `interrupted`.

    >>> HistoryStatus(Status.DONE.value)
    <HistoryStatus.DONE: 'done'>
    """

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"
    #: the server stopped (a crash, `kill -9`, a power cut) while it was queued or running;
    #: the text it had streamed so far is kept
    INTERRUPTED = "interrupted"


# ---------------------------------------------------------------------------- request body


class Message(BaseModel):
    """One chat message, OpenAI style. `content` may be a string or a list of text parts."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class RequestBody(BaseModel):
    """`POST /api/requests`. Give `messages` (a conversation) or `prompt` (one user turn).

    >>> RequestBody(prompt="Hello").chat_messages()[0].role
    'user'
    """

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] | None = Field(default=None, min_length=1)
    prompt: str | None = Field(default=None, min_length=1)
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, min_length=1, max_length=64)
    priority: int = Field(default=0, ge=0, le=9, description="Higher runs sooner.")

    @model_validator(mode="after")
    def _one_of_messages_or_prompt(self) -> RequestBody:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of 'messages' or 'prompt'")
        return self

    def chat_messages(self) -> list[Message]:
        if self.messages is not None:
            return self.messages
        return [Message(role="user", content=self.prompt)]


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Queued:
    position: int  #: 1 = next to start
    waiting: int  #: requests waiting in total
    eta_s: float | None  #: None until the server has timed a request of this model


@dataclass(frozen=True, slots=True)
class Loading:
    """The model this request waits for is being loaded (once, for everyone who waits).

    >>> Loading(model="qwen3-8b", progress=0.45).percent
    45
    """

    model: str
    progress: float  #: 0 … 1
    load_time_s: float | None = None  #: how long its last load took, once one has been seen

    @property
    def percent(self) -> int:
        return round(self.progress * 100)


@dataclass(frozen=True, slots=True)
class Started:
    model: str
    upstream: str
    waited_s: float


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the reply. Most carry `content`; the rest is what an OpenAI client sent
    for and the upstream gave (tool-call pieces, log-probabilities, a refusal), passed on
    as the upstream wrote it. A panel may ignore those; the OpenAI door does not.

    >>> event_data(Delta(content="Hi"))
    {'content': 'Hi'}
    >>> event_data(Delta(tool_calls=[{"index": 0, "function": {"arguments": "{"}}]))
    {'tool_calls': [{'index': 0, 'function': {'arguments': '{'}}]}
    """

    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    logprobs: dict[str, Any] | None = None
    refusal: str | None = None
    index: int = 0  #: which choice (OpenAI's `n`); 0 unless the client asked for several


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: str
    usage: dict[str, Any] | None = None  #: the upstream's, with its `*_details` when it has them
    timings: dict[str, float | None] = field(default_factory=dict)
    upstream_id: str | None = None  #: the id the upstream gave the reply (`chatcmpl-…`)
    system_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    by: str  #: "client", "disconnect", "admin" or "shutdown"
    #: a sentence for the student when there is more to say (shutdown: may I resubmit?)
    message: str | None = None


Event = Queued | Loading | Started | Delta | Done | ErrorEvent | Cancelled

#: The first event of `POST /api/requests` answered as a stream (`Accept: text/event-stream`):
#: the acceptance itself, before the request's own events. It has no `id:` (it is not part
#: of the request's event log, so `Last-Event-ID` counts the same in both forms).
ACCEPTED = "accepted"


@dataclass(frozen=True, slots=True)
class Accepted:
    """What `POST /api/requests` answers: the id and the place the request took in line.

    >>> Accepted(id="r1", position=2, waiting=3, eta_s=None, model="m", user="ada").position
    2
    """

    id: str
    position: int
    waiting: int
    eta_s: float | None
    model: str
    user: str


_CLASSES: dict[EventName, type[Event]] = {
    EventName.QUEUED: Queued,
    EventName.LOADING: Loading,
    EventName.STARTED: Started,
    EventName.DELTA: Delta,
    EventName.DONE: Done,
    EventName.ERROR: ErrorEvent,
    EventName.CANCELLED: Cancelled,
}
_NAMES: dict[type[Event], EventName] = {cls: name for name, cls in _CLASSES.items()}


def event_name(event: Event) -> EventName:
    return _NAMES[type(event)]


def event_data(event: Event) -> dict[str, Any]:
    """The JSON object sent as an event's `data:` (a delta carries only the field it has)."""
    if isinstance(event, Queued):  # the most frequent event: no asdict() reflection
        return {"position": event.position, "waiting": event.waiting, "eta_s": event.eta_s}
    if isinstance(event, Delta):
        if event.reasoning is None and event.tool_calls is None and event.logprobs is None:
            if event.refusal is None and event.index == 0:  # nearly every token: no reflection
                return {"content": event.content}
        return {k: v for k, v in asdict(event).items() if v is not None and (k != "index" or v)}
    if isinstance(event, Cancelled) and event.message is None:
        return {"by": event.by}  # the message only when there is one
    return asdict(event)


def parse_event(name: str, data: str) -> Event:
    """Turn one SSE event (its `event:` name and `data:` text) into a typed event.

    Unknown fields are ignored so an older client can read a newer server.
    """
    cls = _CLASSES[EventName(name)]
    raw = json.loads(data)
    known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
    return cls(**known)
