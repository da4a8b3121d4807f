"""`/api/me`: who you are, what is left of your budget, and what your teacher has set.

    GET /api/me                  you: user, role, budget ("7 of 20 prompts left today"),
                                 the class's mode and message, the class prompt, the notice
    GET /api/me?model=M          … with the class prompt that applies to model M

Without keys there is no "you" to find: the panel names its user with `user=`.

    >>> router.url_path_for("me")
    '/api/me'
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..class_schemas import Me
from ..deps import Caller, Service

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["me"])


@router.get("/me", response_model=Me)
async def me(
    service: Service,
    caller: Caller,
    model: Annotated[str | None, Query(max_length=200)] = None,
    user: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="Without keys: who you are."),
    ] = None,
) -> Me:
    """Who you are, your budget today and when it resets, the class's mode and message,
    the class prompt your requests get, and who can read your conversations."""
    about = service.classroom.me(caller.owner(user), caller.role, model)
    return Me(**about)
