"""The status line: where a request is, in one short sentence, from the events it gets.

    >>> tracker = StatusTracker(clock=lambda: 0.0)
    >>> tracker.update(Queued(position=3, waiting=7, eta_s=20.4)).text
    'queued — position 3 of 7 · ETA ~20 s'
    >>> tracker.update(Started(model="m", upstream="u", waited_s=12.0)).text
    'generating…'

Everything here is pure (the clock is injected), so every sentence is unit-tested without a
kernel, a browser or a server. `ChatPanel` and `%%chat` only display what this returns.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ..errors import TLCError
from ..protocol import Cancelled, Delta, Done, ErrorEvent, Event, Loading, Queued, Started

__all__ = [
    "Phase",
    "Progress",
    "StatusTracker",
    "cancelled_text",
    "done_text",
    "generating_text",
    "loading_text",
    "queued_text",
    "seconds",
    "status_html",
]


class Phase(StrEnum):
    """What the panel is doing; the progress indicator and the CSS class follow it."""

    IDLE = "idle"  #: nothing in flight
    SENDING = "sending"  #: the POST is on its way
    QUEUED = "queued"  #: waiting for a slot; the position bar shows how far along
    GENERATING = "generating"  #: tokens are (about to be) arriving
    DONE = "done"  #: the reply ended normally
    ERROR = "error"  #: it failed; the text is the error's sentence
    STOPPED = "stopped"  #: cancelled (by us, or by the server)


#: Phases during which something is still happening (the bar moves).
BUSY = frozenset({Phase.SENDING, Phase.QUEUED, Phase.GENERATING})


@dataclass(frozen=True)
class Progress:
    """One state of the status line. `fraction` is None for an indeterminate bar.

    >>> Progress(Phase.IDLE, "ready").busy
    False
    """

    phase: Phase
    text: str
    fraction: float | None = None

    @property
    def busy(self) -> bool:
        return self.phase in BUSY


def seconds(s: float) -> str:
    """A duration a person reads at a glance.

    >>> seconds(7.63), seconds(12.4), seconds(0.04), seconds(135)
    ('7.6 s', '12 s', '0.0 s', '2 min 15 s')
    """
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{round(s)} s"
    minutes, rest = divmod(round(s), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def queued_text(queued: Queued) -> str:
    """`queued — position 3 of 7 · ETA ~20 s`; the ETA is left out while the server has none.

    >>> queued_text(Queued(position=1, waiting=1, eta_s=None))
    'queued — position 1 of 1'
    """
    text = f"queued — position {queued.position} of {queued.waiting}"
    if queued.eta_s is not None:
        # Whole seconds: an estimate shown to a tenth of a second would promise too much.
        eta = queued.eta_s
        text += f" · ETA ~{max(1, round(eta))} s" if eta < 60 else f" · ETA ~{seconds(eta)}"
    return text


def loading_text(loading: Loading) -> str:
    """`Loading qwen3-8b… 45 %`: the model is being loaded once, for everyone who waits.

    >>> loading_text(Loading(model="qwen3-8b", progress=0.45, load_time_s=38.0))
    'Loading qwen3-8b… 45 % (a load takes about 38 s)'
    """
    text = f"Loading {loading.model}… {loading.percent} %"
    if loading.load_time_s:
        text += f" (a load takes about {seconds(loading.load_time_s)})"
    return text


def generating_text(tokens: int, elapsed_s: float) -> str:
    """`generating · 41 tok/s`, once there are two tokens to measure a rate between.

    >>> generating_text(42, 1.0), generating_text(1, 0.2)
    ('generating · 41 tok/s', 'generating…')
    """
    if tokens < 2 or elapsed_s <= 0:
        return "generating…"
    # Rate between the first and the last token: the first one's arrival starts the clock.
    return f"generating · {(tokens - 1) / elapsed_s:.0f} tok/s"


def done_text(tokens: int, generation_s: float, waited_s: float | None, reason: str) -> str:
    """`done · 312 tokens in 7.6 s (waited 12 s)`, noting a reply cut at max tokens.

    >>> done_text(312, 7.63, 12.0, "stop")
    'done · 312 tokens in 7.6 s (waited 12 s)'
    >>> done_text(1, 0.1, None, "length")
    'done · 1 token in 0.1 s · stopped at max tokens'
    """
    text = f"done · {tokens} token{'' if tokens == 1 else 's'} in {seconds(generation_s)}"
    if waited_s is not None:
        text += f" (waited {seconds(waited_s)})"
    if reason == "length":
        text += " · stopped at max tokens"
    return text


_CANCELLED_BY = {
    "client": "stopped",
    "disconnect": "cancelled: the server saw nobody listening any more",
    "admin": "cancelled by the queue's administrator",
    "shutdown": "cancelled: the queue server is shutting down",
}


def cancelled_text(by: str) -> str:
    """What a `cancelled` event means, by who cancelled.

    >>> cancelled_text("client")
    'stopped'
    """
    return _CANCELLED_BY.get(by, f"cancelled ({by})")


def status_html(progress: Progress) -> str:
    """The status line as HTML: the sentence, and a bar while something is under way.

    >>> status_html(Progress(Phase.IDLE, "ready"))
    '<div class="tlc-status-line tlc-phase-idle"><span class="tlc-status-text">ready</span></div>'
    """
    bar = ""
    if progress.busy:
        if progress.fraction is None:  # no position to show: a sliding (indeterminate) bar
            bar = '<div class="tlc-bar tlc-indeterminate"><div></div></div>'
        else:
            width = max(3, round(progress.fraction * 100))  # a sliver, so the bar is visible
            bar = f'<div class="tlc-bar"><div style="width:{width}%"></div></div>'
    text = html.escape(progress.text)  # error sentences come from the server: never markup
    return (
        f'<div class="tlc-status-line tlc-phase-{progress.phase.value}">'
        f'<span class="tlc-status-text">{text}</span>{bar}</div>'
    )


class StatusTracker:
    """Turns one request's events into `Progress`; one tracker per request.

    It counts tokens (one `Delta` each) and remembers when the first one came and how long
    the request waited, which the `done` sentence needs when the server sends no timings.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.tokens = 0
        self._first_token_at: float | None = None
        self._started_at: float | None = None
        self._waited_s: float | None = None
        self._first_position: int | None = None
        self.progress = Progress(Phase.IDLE, "ready")

    def sending(self) -> Progress:
        self.progress = Progress(Phase.SENDING, "sending…")
        return self.progress

    def update(self, event: Event) -> Progress:
        """The status after `event` (also kept in `.progress`)."""
        self.progress = self._next(event)
        return self.progress

    def fail(self, error: TLCError) -> Progress:
        """An exception instead of an event (the server refused, or cannot be reached)."""
        if error.code == "cancelled":
            self.progress = Progress(Phase.STOPPED, error.message)
        else:
            self.progress = Progress(Phase.ERROR, error.message)
        return self.progress

    def stopped(self) -> Progress:
        self.progress = Progress(Phase.STOPPED, cancelled_text("client"))
        return self.progress

    def _next(self, event: Event) -> Progress:
        now = self._clock()
        if isinstance(event, Queued):
            if self._first_position is None:
                self._first_position = event.position
            return Progress(Phase.QUEUED, queued_text(event), self._fraction(event.position))
        if isinstance(event, Loading):
            return Progress(Phase.QUEUED, loading_text(event), event.progress)
        if isinstance(event, Started):
            self._started_at, self._waited_s = now, event.waited_s
            return Progress(Phase.GENERATING, "generating…")
        if isinstance(event, Delta):
            self.tokens += 1
            if self._first_token_at is None:
                self._first_token_at = now
            return Progress(
                Phase.GENERATING, generating_text(self.tokens, now - self._first_token_at)
            )
        if isinstance(event, Done):
            return Progress(Phase.DONE, self._done(event, now))
        if isinstance(event, ErrorEvent):
            return Progress(Phase.ERROR, event.message)
        assert isinstance(event, Cancelled)
        return Progress(Phase.STOPPED, event.message or cancelled_text(event.by))

    def _fraction(self, position: int) -> float | None:
        """How far along the line we are since we joined it; None (indeterminate) at the front."""
        first = self._first_position or position
        if first <= 1:
            return None
        return max(0.0, min(1.0, (first - position) / first))

    def _done(self, done: Done, now: float) -> str:
        usage = done.usage or {}
        tokens = int(usage.get("completion_tokens") or self.tokens)
        timings = done.timings
        waited = timings.get("waited_s")
        total = timings.get("total_s")
        if waited is None:
            waited = self._waited_s
        if total is not None and waited is not None:
            generation = max(0.0, total - waited)  # the server's clock: what it spent on us
        else:
            generation = now - (self._started_at if self._started_at is not None else now)
        return done_text(tokens, generation, waited, done.finish_reason)
