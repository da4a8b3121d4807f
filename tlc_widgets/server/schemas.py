"""What the native API answers, as pydantic models: `/docs` is the API's reference.

    >>> Health(status="ok", upstreams=[UpstreamHealth(url="http://x/v1", reachable=True)])
    Health(status='ok', upstreams=[UpstreamHealth(url='http://x/v1', reachable=True)])

Each route declares one of these as its `response_model`, so FastAPI validates what the
server sends and the OpenAPI schema describes every answer. Event payloads are the
dataclasses of `protocol.py`; these are the JSON bodies around them. The class's own
(`/api/me`, `/api/class`) are in `class_schemas.py`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AdminState",
    "CancelAnswer",
    "Health",
    "HistoryItem",
    "HistoryList",
    "LiveRequest",
    "LiveRequests",
    "ModelLoadState",
    "ModelOrder",
    "ModelRow",
    "Models",
    "Outcome",
    "QueueSnapshot",
    "Ready",
    "RequestView",
    "SubmitAnswer",
    "UpstreamHealth",
    "UpstreamRow",
]


class SubmitAnswer(BaseModel):
    """`202` to `POST /api/requests`: the id and the place the request took in line."""

    id: str
    status: str = Field(description="Always `queued`: this answer describes the acceptance.")
    position: int = Field(description="1 = next to start.")
    waiting: int
    eta_s: float | None
    model: str
    user: str
    events: str = Field(description="Where to follow it (Server-Sent Events).")


class Outcome(BaseModel):
    """How a request ended: the terminal event's name and its fields."""

    model_config = ConfigDict(extra="allow")

    event: str = Field(description="done, error or cancelled.")


class RequestView(BaseModel):
    """`GET /api/requests/{id}`: status, the text so far and the timings."""

    id: str
    status: str
    user: str
    model: str
    upstream: str | None
    dispatch_no: int | None
    position: int | None
    waiting: int | None
    eta_s: float | None
    text: str
    reasoning: str
    tokens: int
    timings: dict[str, float | None]
    outcome: Outcome | None


class CancelAnswer(RequestView):
    cancelled: bool = Field(description="True if this call cancelled it.")


class UpstreamRow(BaseModel):
    url: str
    reachable: bool
    models: list[str]
    slots: dict[str, int] | int = Field(description="Per model, or one pool for the upstream.")
    busy: int


class QueueSnapshot(BaseModel):
    """`GET /api/queue` (and each `queue` event of `/api/queue/events`)."""

    waiting: int
    running: int
    paused: bool
    draining: bool
    upstreams: list[UpstreamRow]
    served: int
    mean_wait_s: float | None
    tokens_per_s: float
    loading: dict[str, float] = Field(
        default_factory=dict, description="Models loading now, with their progress (0 … 1)."
    )
    class_mode: str = Field(description="`open`, or `paused` by a teacher (students refused).")
    class_message: str = Field(description="The teacher's message while paused.")


class ModelRow(BaseModel):
    id: str
    display_name: str
    practice: bool = Field(description="The practice model (not an LLM).")
    upstreams: list[str]
    loaded: bool
    loading: float | None = Field(None, description="Progress of a load in flight (0 … 1).")
    load_time_s: float | None = Field(
        None, description="How long its last load took: 'loads on first use, about N s'."
    )
    slots: int
    preset: dict[str, Any]


class ModelOrder(BaseModel):
    """An admin's order to load or unload a model."""

    model: str = Field(min_length=1, max_length=200)
    ttl: int | None = Field(None, ge=1, description="LM Studio's idle time-to-live, seconds.")


class ModelLoadState(BaseModel):
    model: str
    loaded: bool = Field(description="Loaded on at least one answering upstream.")
    loading: float | None = Field(description="Progress of a load in flight (0 … 1).")
    failure: str | None = Field(description="Why its last load failed, until one succeeds.")


class Models(BaseModel):
    models: list[ModelRow]
    default: str | None


class UpstreamHealth(BaseModel):
    url: str
    reachable: bool


class Health(BaseModel):
    status: str
    upstreams: list[UpstreamHealth]


class Ready(BaseModel):
    ready: bool
    history: str = Field("ok", description="`failing` while writes fail (rows kept, retried).")


class AdminState(BaseModel):
    """What the admin verbs answer: the queue's mode and size."""

    paused: bool
    draining: bool
    waiting: int
    running: int


class LiveRequest(BaseModel):
    id: str
    user: str
    model: str
    status: str
    position: int | None
    priority: int
    tokens: int
    upstream: str | None
    created: float


class LiveRequests(AdminState):
    requests: list[LiveRequest]


class HistoryItem(BaseModel):
    """One request as the history keeps it (`protocol.HistoryStatus` in `status`)."""

    model_config = ConfigDict(extra="allow")

    id: str
    user: str
    model: str
    messages: list[dict[str, Any]]
    status: str
    outcome: str | None
    text: str
    reasoning: str
    tokens: int
    created: float
    timings: dict[str, float | None]


class HistoryList(BaseModel):
    enabled: bool = Field(description="False when the server keeps no history.")
    requests: list[HistoryItem]
