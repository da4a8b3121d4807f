"""What a route needs, as FastAPI dependencies: the queue service and who is asking.

    >>> from fastapi import Depends
    >>> def route(service: QueueService = Depends(service_of)) -> None: ...

The service lives on `app.state` for the length of the app's lifespan; this is the one place
that reads it, so no route casts `app.state` itself. Each is `async def`: FastAPI runs a
plain `def` dependency in a worker thread, a hop per dependency on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .auth import Identity, identity_of
from .service import QueueService

__all__ = ["Admin", "Caller", "Service", "Teacher", "caller_of", "service_of"]


async def service_of(request: Request) -> QueueService:
    """The running queue service of the app that received `request`."""
    service = request.app.state.queue
    assert isinstance(service, QueueService), "the app's lifespan has not started"
    return service


async def caller_of(request: Request) -> Identity:
    """Who sent `request` (the identity middleware decided it)."""
    return identity_of(request)


#: Annotated forms, so a route reads `service: Service, caller: Caller`.
Service = Annotated[QueueService, Depends(service_of)]
Caller = Annotated[Identity, Depends(caller_of)]


async def teacher_service(service: Service, caller: Caller) -> QueueService:
    """The service, for a teacher or an admin only (403 otherwise)."""
    caller.require_teacher()
    return service


async def admin_service(service: Service, caller: Caller) -> QueueService:
    """The service, for an admin only (403 otherwise)."""
    caller.require_admin()
    return service


#: The service for routes a role guards: `service: Teacher` (/api/class), `Admin` (/api/admin).
Teacher = Annotated[QueueService, Depends(teacher_service)]
Admin = Annotated[QueueService, Depends(admin_service)]
