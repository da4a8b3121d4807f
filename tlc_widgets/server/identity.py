"""Who is asking, once the keys, the Hub or nobody have said: a user and a role.

    >>> Identity(user="ada", role=Role.STUDENT).may_see("bob")
    False
    >>> LOCAL.may_steer            # no keys: the one trusted user of their own machine
    True

What each role may do:

                                  student   teacher   admin
    submit, read, cancel own         ✓         ✓        ✓
    /api/me (budget, class, notice)  ✓         ✓        ✓
    priority > 0                     403       ✓        ✓
    another user's request/history   404       404      ✓
    /api/class/* (the class: live,   403       ✓        ✓
      students' history and cancel,
      pause, budgets, class prompt,
      export)
    /api/admin/* (pause, drain …)    403       403      ✓
    limited by pause, budget and     ✓         —        —
      the class prompt

Another user's request answers 404, not 403, so a probe cannot tell which ids exist; a
teacher reads and cancels students' requests through `/api/class/*` (routes/teacher.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..protocol import ErrorCode
from .api_error import ApiError

__all__ = ["LOCAL", "Identity", "Role"]


class Role(StrEnum):
    STUDENT = "student"  #: own requests and history only
    TEACHER = "teacher"  #: steers the class: reads and cancels students' requests (/api/class)
    ADMIN = "admin"  #: everything: every user's requests, the class, pause, resume, drain


@dataclass(frozen=True, slots=True)
class Identity:
    user: str | None  #: None: no keys are configured, so the request's declared user counts
    role: Role

    def owner(self, declared: str | None) -> str:
        """Whose a new request is: the key's user, or (without keys) the one declared."""
        return self.user if self.user is not None else (declared or "anonymous")

    def may_see(self, owner: str) -> bool:
        return self.role is Role.ADMIN or self.user == owner

    @property
    def may_prioritise(self) -> bool:
        return self.role is not Role.STUDENT

    @property
    def may_steer(self) -> bool:
        """A teacher or an admin: may see the class and steer it (`/api/class/*`)."""
        return self.role is not Role.STUDENT

    def require_teacher(self) -> None:
        if not self.may_steer:
            raise ApiError(ErrorCode.FORBIDDEN, "Only a teacher or an admin may do this.")

    def require_admin(self) -> None:
        if self.role is not Role.ADMIN:
            raise ApiError(ErrorCode.FORBIDDEN, "Only an admin may do this.")


#: Every caller when no keys are configured: one trusted user on their own machine.
LOCAL = Identity(user=None, role=Role.ADMIN)
