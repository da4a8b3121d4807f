"""The HTTP routes, one module per resource; each route calls the service's verbs only.

    >>> from tlc_widgets.server.routes import ROUTERS
    >>> sorted(r.tags[0] for r in ROUTERS)
    ['admin', 'class', 'class', 'history', 'me', 'ops', 'queue', 'requests']

Dependencies (the service, the caller) come through FastAPI's `Depends` (`deps.py`), and
every route names its response model (`schemas.py`), so `/docs` is the API's reference.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import admin, history, me, ops, queue, requests, teacher

__all__ = ["ROUTERS"]

ROUTERS: list[APIRouter] = [
    requests.router,
    queue.router,
    ops.router,
    admin.router,
    history.router,
    me.router,
    teacher.router,
    teacher.page,  # /teacher: the teacher's page (static files, not in the API schema)
]
