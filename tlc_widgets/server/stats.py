"""Running figures: service-time means for the ETA, throughput, and Prometheus metrics.

    >>> stats = Stats()
    >>> stats.eta_s("m", position=3, slots=2) is None     # no data yet: no guess
    True
    >>> stats.observe_service("m", 10.0)
    >>> stats.eta_s("m", position=3, slots=2)
    20.0

**ETA formula.** With `S` the mean service time (start to end) of the model's last 20
finished requests, `k` its slots and `p` the request's position among those waiting for that
model (1 = next): `eta = S × ceil(p / k)` — the requests ahead leave in waves of `k`, and the
wave in flight is assumed half done on average, which the `ceil` (rather than `p / k + 1`)
accounts for. `None` until a request of that model has finished.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Stats"]

_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


class Stats:
    def __init__(self, window_s: float = 60.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.queue_length = Gauge("tlc_queue_length", "Requests waiting", registry=self.registry)
        self.running = Gauge("tlc_running", "Requests streaming upstream", registry=self.registry)
        self.wait = Histogram(
            "tlc_wait_seconds", "Time in the queue", buckets=_WAIT_BUCKETS, registry=self.registry
        )
        self.ttft = Histogram(
            "tlc_ttft_seconds",
            "Start to first token",
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter("tlc_tokens", "Tokens relayed", ["model"], registry=self.registry)
        self.requests = Counter(
            "tlc_requests", "Requests ended, by outcome", ["outcome"], registry=self.registry
        )
        self.errors = Counter("tlc_errors", "Errors by code", ["code"], registry=self.registry)
        self._service: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=20))
        self._waits: deque[float] = deque(maxlen=200)
        self._window_s = window_s
        self._token_marks: deque[tuple[float, int]] = deque()  # (second, tokens that second)
        self._token_children: dict[str, Any] = {}  # model -> its labelled counter

    @property
    def served(self) -> int:
        """Requests that ended `done`: read from the Prometheus counter, kept once."""
        value = self.registry.get_sample_value("tlc_requests_total", {"outcome": "done"})
        return int(value or 0)

    def observe_end(self, status: str, outcome: object) -> None:
        """A request ended: count it by outcome, and an error by its code."""
        self.requests.labels(status).inc()
        code = getattr(outcome, "code", None)
        if code is not None:
            self.errors.labels(code).inc()

    def observe_service(self, model: str, seconds: float) -> None:
        self._service[model].append(seconds)

    def observe_wait(self, seconds: float) -> None:
        self._waits.append(seconds)
        self.wait.observe(seconds)

    def observe_tokens(self, model: str, n: int = 1) -> None:
        """Count relayed tokens as they pass (called per token: kept to a few operations)."""
        child = self._token_children.get(model)
        if child is None:
            child = self._token_children[model] = self.tokens.labels(model)
        child.inc(n)
        second = math.floor(time.monotonic())
        if self._token_marks and self._token_marks[-1][0] == second:
            self._token_marks[-1] = (second, self._token_marks[-1][1] + n)
        else:
            self._token_marks.append((second, n))

    def tokens_per_s(self) -> float:
        """Tokens relayed per second over the last 10 seconds."""
        now = time.monotonic()
        while self._token_marks and self._token_marks[0][0] < now - self._window_s:
            self._token_marks.popleft()
        recent = sum(n for t, n in self._token_marks if t >= now - 10)
        return round(recent / 10, 1)

    def mean_service_s(self, model: str) -> float | None:
        times = self._service.get(model)
        return sum(times) / len(times) if times else None

    def mean_wait_s(self) -> float | None:
        return round(sum(self._waits) / len(self._waits), 3) if self._waits else None

    def retry_after(self, model: str) -> int:
        """Seconds until a place frees up, roughly: one mean service time, at least 1."""
        mean = self.mean_service_s(model)
        return max(1, math.ceil(mean)) if mean else 5

    def eta_s(self, model: str, position: int, slots: int) -> float | None:
        return eta_from(self.mean_service_s(model), position, slots)


def eta_from(mean_service_s: float | None, position: int, slots: int) -> float | None:
    """The ETA formula of the module docstring, for a mean already computed."""
    if mean_service_s is None:
        return None
    return round(mean_service_s * math.ceil(position / max(slots, 1)), 1)
