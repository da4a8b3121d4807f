"""What the upstream is asked for one request, beside the model and the messages.

    >>> Call("embeddings", {"input": ["hi"]}, chunks=True).endpoint
    'embeddings'

A native request is `CHAT`: chat completions, nothing added. The OpenAI door names another
endpoint and carries the client's own fields, passed upstream as given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CHAT", "Call"]


@dataclass(frozen=True, slots=True)
class Call:
    """What the upstream is asked, beside the model and the messages: its endpoint, the
    client's own fields (passed as given), and what to keep of the reply for an OpenAI
    client — the upstream's frames (`wire`, a stream) or its parsed chunks (`chunks`, a
    whole reply). A native request keeps neither: its events are all it needs."""

    endpoint: str = "chat/completions"
    extra: dict[str, Any] = field(default_factory=dict)
    wire: bool = False
    chunks: bool = False


#: A native chat request.
CHAT = Call()
