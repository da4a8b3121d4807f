"""Budgets a student can see: prompts and reply tokens per day (or per session), and what
is left.

    >>> budgets = Budgets(Budget(prompts=2), clock=lambda: 1_800_000_000.0)
    >>> budgets.check("ada"); budgets.count_prompt("ada")
    >>> budgets.left("ada")["text"]
    '1 of 2 prompts left today'
    >>> budgets.count_prompt("ada")
    >>> try:
    ...     budgets.check("ada")
    ... except ApiError as refused:
    ...     print(refused.code.value, refused.status, refused.retry_after > 0)
    budget_exhausted 429 True

A teacher may count by **session** instead (a lab, an exam's practice hour):

    >>> budgets.start_session("Lab 3")
    >>> budgets.left("ada")["text"], budgets.left("ada")["resets_at"]
    ('2 of 2 prompts left this session', None)

Everyone starts the session from zero, and it lasts until the teacher ends it (or starts the
next); then the day's counts apply again (`end_session`; the classroom recounts them from the
history). A session does not survive a restart: the server comes back counting the day.

A day runs from midnight to midnight in the server's local time zone; at midnight every count
starts again from zero. A prompt counts when the queue accepts it (whatever happens to it
after); tokens are the reply's tokens, counted when it ends — a reply in flight may take a
student a little past the token budget, never the next request. 0 means unlimited.

The counts live in memory and are rebuilt from the history at start (`load`), so with a
history file they survive a restart; with `TLC_HISTORY_PATH=""` they last one run.
A teacher's changes to the budgets themselves last until the server stops.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ..protocol import ErrorCode
from .api_error import ApiError

__all__ = ["Budget", "Budgets", "Usage", "day_bounds"]


@dataclass(frozen=True, slots=True)
class Budget:
    prompts: int = 0  #: prompts per day; 0 = unlimited
    tokens: int = 0  #: reply tokens per day; 0 = unlimited


@dataclass(slots=True)
class Usage:
    prompts: int = 0  #: accepted requests today
    tokens: int = 0  #: reply tokens of today's finished requests
    errors: int = 0  #: today's requests that ended in an error
    role: str | None = None  #: the role of the last request (None: rebuilt from the history)


UNLIMITED = "no daily limit"  #: what a student reads with no budget set


def day_bounds(now: float) -> tuple[float, float]:
    """The local day around `now`: (its midnight, the next midnight), as Unix times.

    >>> start, end = day_bounds(1_800_000_000.0)
    >>> start <= 1_800_000_000.0 < end and 23 * 3600 <= end - start <= 25 * 3600
    True
    """
    day = datetime.fromtimestamp(now).date()
    start = datetime.combine(day, datetime.min.time()).timestamp()  # naive: local time
    end = datetime.combine(day + timedelta(days=1), datetime.min.time()).timestamp()
    return start, end


class Budgets:
    """The class's budget, each student's own (if a teacher set one) and the usage of the
    period that counts: today, or the session a teacher started."""

    def __init__(self, default: Budget, clock: Callable[[], float] = time.time) -> None:
        self.default = default
        self.overrides: dict[str, Budget] = {}  #: per student, set by a teacher
        #: with --redis: the whole class's counts for the period (shared_usage.py), and
        #: what this replica counted that they do not hold yet; None: this process's own
        self.shared: dict[str, Usage] | None = None
        self.unsent: dict[str, Usage] = {}
        self.loaded = False  #: the history's counts are in (`load` ran)
        self.session: dict[str, Any] | None = None  #: {"label", "started_at"} while one runs
        self._clock = clock
        self._start, self._end = day_bounds(clock())
        self._usage: dict[str, Usage] = {}

    # ------------------------------------------------------------------ the period

    def _roll(self) -> None:
        """At midnight, start every count again (a session runs on until it is ended)."""
        now = self._clock()
        if self.session is None and now >= self._end:
            self._start, self._end = day_bounds(now)
            self._new_period()

    def start_session(self, label: str = "", started_at: float | None = None) -> None:
        """Count from now (or `started_at`: one begun on another replica), from zero for
        everyone, until `end_session` (or the next one)."""
        now = self._clock() if started_at is None else started_at
        self.session = {"label": label.strip(), "started_at": now}
        self._start, self._end = now, math.inf
        self._new_period()

    def end_session(self) -> None:
        """Back to the day; its counts are the caller's to `load` again (from the history)."""
        self.session = None
        self._start, self._end = day_bounds(self._clock())
        self._new_period()

    @property
    def period(self) -> str:
        """How the counts read in a sentence: "today" or "this session"."""
        return "today" if self.session is None else "this session"

    @property
    def day_start(self) -> float:
        """When the counting period began: midnight, or the session's start."""
        self._roll()
        return self._start

    @property
    def resets_at(self) -> float | None:
        """When the counts start again (None in a session: when the teacher says)."""
        self._roll()
        return None if math.isinf(self._end) else self._end

    # ------------------------------------------------------------------ counting

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def usage(self, user: str) -> Usage:
        self._roll()
        here = self._usage.get(user, Usage())
        if self.shared is None:
            return here
        usage = replace(self.shared.get(user, Usage()), role=here.role)
        _add(usage, self.unsent.get(user, Usage()))
        return usage

    def everyone(self) -> dict[str, Usage]:
        self._roll()
        if self.shared is None:
            return dict(self._usage)
        return {u: self.usage(u) for u in {*self.shared, *self.unsent, *self._usage}}

    def here(self) -> dict[str, Usage]:
        """This replica's own counts for the period."""
        return dict(self._usage)

    def add_unsent(self, counts: dict[str, Usage], sign: int = 1) -> None:
        """Counts to add to the class's totals at the next sync (`sign` -1: added now)."""
        for user, usage in counts.items():
            _add(self.unsent.setdefault(user, Usage()), usage, sign)
            left = self.unsent[user]
            if not (left.prompts or left.tokens or left.errors):
                del self.unsent[user]

    def _new_period(self) -> None:
        self._usage.clear()
        if self.shared is not None:
            self.shared = {}  # the next sync reads the new period's totals

    def load(self, rows: Iterable[dict[str, Any]]) -> None:
        """Today's counts, rebuilt from the history (`History.usage_since(day_start)`)."""
        for row in rows:
            self._usage[row["user"]] = Usage(row["prompts"], row["tokens"] or 0, row["errors"])
        self.loaded = True

    def count_prompt(self, user: str, role: str | None = None) -> None:
        self._roll()
        usage = self._usage.setdefault(user, Usage())
        usage.prompts += 1
        usage.role = role or usage.role
        if self.shared is not None:
            self.add_unsent({user: Usage(prompts=1)})

    def count_end(self, user: str, tokens: int, error: bool) -> None:
        self._roll()
        usage = self._usage.setdefault(user, Usage())
        usage.tokens += tokens
        usage.errors += error
        if self.shared is not None:
            self.add_unsent({user: Usage(tokens=tokens, errors=int(error))})

    # ------------------------------------------------------------------ limits

    def of(self, user: str) -> Budget:
        return self.overrides.get(user, self.default)

    def set(self, user: str | None, budget: Budget | None) -> None:
        """The class's budget (`user` None), or one student's (`budget` None: the class's)."""
        if user is None:
            self.default = budget or Budget()
        elif budget is None:
            self.overrides.pop(user, None)
        else:
            self.overrides[user] = budget

    def check(self, user: str) -> None:
        """Raise `budget_exhausted` (429, Retry-After = seconds to the reset) if none is left."""
        budget, used = self.of(user), self.usage(user)
        spent = [
            f"your {limit} {unit}"
            for limit, count, unit in (
                (budget.prompts, used.prompts, "prompts"),
                (budget.tokens, used.tokens, "reply tokens"),
            )
            if limit and count >= limit
        ]
        if not spent:
            return
        used_up = f"You have used {' and '.join(spent)}"
        resets = self.resets_at
        if resets is None:
            label = (self.session or {}).get("label")
            raise ApiError(
                ErrorCode.BUDGET_EXHAUSTED,
                f"{used_up} for this session{f' ({label})' if label else ''}. Your teacher can "
                "give you more, or start the next session.",
            )
        wait = max(1, math.ceil(resets - self._clock()))
        at = datetime.fromtimestamp(resets).strftime("%H:%M")
        raise ApiError(
            ErrorCode.BUDGET_EXHAUSTED,
            f"{used_up} for today; you can chat again at {at} (in {_duration(wait)}). "
            "Your teacher can give you more.",
            retry_after=wait,
        )

    def left(self, user: str) -> dict[str, Any]:
        """What `/api/me` shows: limits, usage, what is left, the reset, and one sentence."""
        budget, used = self.of(user), self.usage(user)
        left = {
            "prompts": max(0, budget.prompts - used.prompts) if budget.prompts else None,
            "tokens": max(0, budget.tokens - used.tokens) if budget.tokens else None,
        }
        parts = [
            f"{left[key]} of {limit} {unit} left {self.period}"
            for key, limit, unit in (
                ("prompts", budget.prompts, "prompts"),
                ("tokens", budget.tokens, "reply tokens"),
            )
            if limit
        ]
        return {
            "limit": asdict(budget),
            "used": asdict(used),
            "left": left,
            "resets_at": self.resets_at,
            "session": self.session,
            "text": "; ".join(parts) or ("no limit this session" if self.session else UNLIMITED),
        }


def _add(usage: Usage, more: Usage, sign: int = 1) -> None:
    usage.prompts += sign * more.prompts
    usage.tokens += sign * more.tokens
    usage.errors += sign * more.errors


def _duration(seconds: int) -> str:
    """
    >>> _duration(5400)
    '1 h 30 min'
    """
    hours, minutes = divmod(math.ceil(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
