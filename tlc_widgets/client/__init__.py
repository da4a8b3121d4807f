"""The client side of the queue: `QueueClient`, `follow()`, and the errors they raise.

    >>> from tlc_widgets.client import QueueClient, follow, TLCError
    >>> async with QueueClient() as client:                       # doctest: +SKIP
    ...     print(await client.chat("What is a queue?"))
    ...     reply = await follow(client, prompt="And a stack?", on_event=print)
    ...     request = await client.submit("And a heap?", model="practice-fast")
    ...     async for event in client.stream(request.id):
    ...         print(event)          # Queued(…) … Started(…) Delta(…) … Done(…)

One module per concept:

    queue_client.py   QueueClient: plain calls, submit / open (one round trip) / stream
    follow.py         follow(): a request to its end, with the one cancel rule
    events.py         SSE in (tlc_widgets.sse), typed events out, Last-Event-ID resume

`QueueClient.chat`, `ChatPanel` and `%%chat` all follow a request with `follow()`; read its
module docstring for the cancel rule. Errors are the classes of `tlc_widgets.errors`,
re-exported here. This package never imports the server.
"""

from __future__ import annotations

from ..errors import (
    AccessDenied,
    ClassPaused,
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
)
from ..sse import ServerSentEvent
from .follow import Opened, Reply, Submitted, follow
from .queue_client import DEFAULT_URL, QueueClient
from .teacher import ClassClient

__all__ = [
    "DEFAULT_URL",
    "AccessDenied",
    "ClassClient",
    "ClassPaused",
    "InvalidRequest",
    "ModelNotFound",
    "NotFound",
    "Opened",
    "QueueClient",
    "QueueFull",
    "Reply",
    "RequestCancelled",
    "RequestFailed",
    "ServerSentEvent",
    "ServerUnavailable",
    "Submitted",
    "TLCError",
    "TooManyRequests",
    "UpstreamUnavailable",
    "follow",
]
