"""Who goes next: fair across users, FIFO within a user, priority classes above that.

    >>> s = FairScheduler()
    >>> for i in range(3):
    ...     s.push(Entry(f"h{i}", user="heavy", model="m"))
    >>> s.push(Entry("l0", user="light", model="m"))
    >>> [s.pop_next(lambda model: True).id for _ in range(4)]
    ['h0', 'l0', 'h1', 'h2']

Pure: plain data in, a decision out; no I/O, no clock, no asyncio. That is what makes
fairness testable exhaustively, without servers or sleeps.

The rule ("least recently served first") is per-user round robin: among users with a request
waiting in the highest priority class, pick the one served longest ago (never served counts
as longest), and start that user's oldest request. A class of 30 with one student who queued
20 prompts: everyone else's single prompt starts before the greedy student's second one.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count

__all__ = ["FORGET_EVERY", "Entry", "FairScheduler"]

#: Every this many starts, users served longer ago than that with nothing waiting are forgotten.
FORGET_EVERY = 4096


@dataclass(slots=True)
class Entry:
    id: str
    user: str
    model: str
    priority: int = 0
    #: most requests of this user that may run at once while others wait (0: no cap)
    cap: int = 0
    seq: int = field(default=0, compare=False)  #: arrival order, set by push


class FairScheduler:
    """Waiting requests, grouped by priority class, then by user."""

    def __init__(self) -> None:
        # priority -> user -> that user's waiting entries, oldest first
        self._classes: dict[int, dict[str, deque[Entry]]] = {}
        self._entries: dict[str, Entry] = {}
        self._last_served: dict[str, int] = {}  # user -> dispatch number of their last start
        self._arrivals = count()
        self._dispatched = 0  # how many requests have started so far
        self._models: Counter[str] = Counter()  # model -> requests waiting for it
        #: told of each request `remove` takes out (not of starts): a replica's shared line
        self.on_remove: Callable[[Entry], None] = lambda entry: None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._entries

    def get(self, request_id: str) -> Entry | None:
        return self._entries.get(request_id)

    def waiting_for(self, user: str) -> int:
        return sum(len(users.get(user, ())) for users in self._classes.values())

    def models(self) -> set[str]:
        """The models someone waits for (without walking the line)."""
        return set(self._models)

    def push(self, entry: Entry) -> None:
        entry.seq = next(self._arrivals)
        self._entries[entry.id] = entry
        self._models[entry.model] += 1
        self._classes.setdefault(entry.priority, {}).setdefault(entry.user, deque()).append(entry)

    def remove(self, request_id: str) -> bool:
        """Take a waiting request out (cancelled, timed out). False if it was not waiting."""
        entry = self._entries.pop(request_id, None)
        if entry is None:
            return False
        users = self._classes[entry.priority]
        users[entry.user].remove(entry)
        self._prune(entry.priority, entry.user)
        self._unwait(entry.model)
        self.on_remove(entry)
        return True

    def pop_next(
        self,
        eligible: Callable[[str], bool],
        running: Callable[[str], int | None] | None = None,
        strict: bool = False,
    ) -> Entry | None:
        """The next request to start among those whose model `eligible` accepts (a model
        with a free slot), or None. A user whose oldest request cannot start yet waits
        (FIFO within a user); the next user in line gets the slot instead.

        With `running` (user → requests of theirs running now), a user at their entry's
        `cap` is passed over while someone else can use the slot; when nobody else can,
        they get it anyway (a cap shares the upstream, it never leaves a slot idle) — unless
        `strict`, which keeps the slot free for whoever comes next.

        >>> s = FairScheduler()
        >>> s.push(Entry("a2", user="ann", model="m", cap=1))
        >>> s.push(Entry("b1", user="bob", model="m", cap=1))
        >>> s.pop_next(lambda m: True, running={"ann": 1}.get).id    # ann already runs one
        'b1'
        >>> s.pop_next(lambda m: True, running={"ann": 1}.get).id    # nobody else waits
        'a2'
        """
        if running is not None:
            entry = self._pop(eligible, lambda e: 0 < e.cap <= (running(e.user) or 0))
            if entry is not None or strict:
                return entry
        return self._pop(eligible, lambda e: False)

    def _pop(self, eligible: Callable[[str], bool], held: Callable[[Entry], bool]) -> Entry | None:
        for priority in sorted(self._classes, reverse=True):
            users = self._classes[priority]
            for user in sorted(users, key=lambda u: self._rank(u, users[u][0])):
                head = users[user][0]
                if not held(head) and eligible(head.model):
                    users[user].popleft()
                    del self._entries[head.id]
                    self._unwait(head.model)
                    self._prune(priority, user)
                    self._dispatched += 1
                    self._last_served[user] = self._dispatched
                    if self._dispatched % FORGET_EVERY == 0:
                        self._forget_idle()
                    return head
        return None

    def _unwait(self, model: str) -> None:
        self._models[model] -= 1
        if not self._models[model]:
            del self._models[model]

    def order(self) -> Iterator[Entry]:
        """Every waiting entry in the order `pop_next` would start them if every model had
        a free slot: O(n log users), computed once per queue change for all positions."""
        served = dict(self._last_served)
        tick = count(self._dispatched + 1)
        for priority in sorted(self._classes, reverse=True):
            users = self._classes[priority]
            heap = [(self._rank(u, q[0], served), u, 0) for u, q in users.items()]
            heapq.heapify(heap)
            while heap:
                _, user, i = heapq.heappop(heap)
                queue = users[user]
                yield queue[i]
                served[user] = next(tick)
                if i + 1 < len(queue):
                    heapq.heappush(heap, (self._rank(user, queue[i + 1], served), user, i + 1))

    def _forget_idle(self) -> None:
        """Forget when users with nothing waiting were last served, if it was more than
        `FORGET_EVERY` starts ago: 100,000 one-off users must not stay in memory. A forgotten
        user ranks as never served, and so do all who were served that long ago anyway."""
        horizon = self._dispatched - FORGET_EVERY
        waiting = {u for users in self._classes.values() for u in users}
        for user in [u for u, n in self._last_served.items() if n < horizon]:
            if user not in waiting:
                del self._last_served[user]

    def _rank(
        self, user: str, head: Entry, served: dict[str, int] | None = None
    ) -> tuple[int, int]:
        last = (self._last_served if served is None else served).get(user, 0)
        return (last, head.seq)

    def _prune(self, priority: int, user: str) -> None:
        users = self._classes[priority]
        if not users[user]:
            del users[user]
        if not users:
            del self._classes[priority]
