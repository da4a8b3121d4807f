"""A shutdown that ends things properly: uvicorn's server, with the queue's step first.

    >>> import uvicorn
    >>> from tlc_widgets.config import Settings
    >>> from tlc_widgets.server import create_app
    >>> server = QueueServer(uvicorn.Config(create_app(Settings(upstreams=["http://x/v1"]))))
    >>> isinstance(server, uvicorn.Server)
    True

uvicorn's own order at SIGTERM is: stop listening, wait up to `timeout_graceful_shutdown`
for open connections, cancel what is left, *then* run the app's lifespan shutdown. An open
event stream is an open connection, so the queue's own ending (a terminal event for every
request) would come after the streams were cut: clients saw "incomplete chunked read" and
the log showed tracebacks. Here the queue's step runs first (`QueueService.shut_down`):
nothing new is admitted, waiting requests end at once, running replies get
`shutdown_grace_s` to finish, then end — every stream sends its one terminal event and
closes by itself — and only then does uvicorn close what is left.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from .service import QueueService

__all__ = ["QueueServer"]


class QueueServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        service = _service_of(self.config.app)
        if service is not None:
            await service.shut_down(service.settings.shutdown_grace_s)
        await super().shutdown(sockets)


def _service_of(app: Any) -> QueueService | None:
    state = getattr(app, "state", None)
    service = getattr(state, "queue", None)
    return service if isinstance(service, QueueService) else None
