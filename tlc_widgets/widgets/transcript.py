"""The transcript: finished turns in a trait, the live reply as coalesced delta messages.

    >>> t = Transcript()                     # in a cell: the kernel loop flushes deltas
    >>> t.add_user("Tell me about the rabbit")
    >>> t.begin_reply()
    >>> t.add_delta(content="The ")          # doctest: +SKIP
    >>> t.end_reply(Turn("assistant", "The rabbit ran."))

Why two channels: syncing a growing string trait re-sends the whole reply on every token
(O(n²) bytes: 8.25 MB for 2,000 tokens). Deltas go as custom messages (`widget.send`,
`model.on("msg:custom")` in `transcript.js`), so each character crosses the comm about
once; the finished turn then lands in the `turns` trait, once, so a view rendered later
(a re-opened notebook, a second view of the same widget) shows everything. A view that
appears mid-reply asks for the text so far (`{"k": "sync"}`) and gets it in one message.

Wire format (custom messages): `{"k": "begin"}`; then each flush, a bare string of content or
`{"k": "d", "c": …, "r": …}` when it holds reasoning; `{"k": "live", …}` to catch a late view
up; `{"k": "end"}` to drop an abandoned reply.

Markdown is rendered in the browser (`markdown.js`, a small escape-first subset renderer,
put in front of `transcript.js`): the same code renders live and finished text, no HTML is
sent twice, and the live reply renders incrementally (finished blocks are kept, only the
open one is rendered again), so a flush costs the same at token 50 and at token 5,000.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import anywidget
import traitlets

from .conversation import Turn
from .loop import on_loop, owner_loop

__all__ = ["Coalescer", "Transcript"]

_HERE = Path(__file__).parent

#: At most this many delta messages per second: smooth to the eye, cheap on the wire.
FLUSHES_PER_SECOND = 30


class _Handle(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], _Handle]


class Coalescer:
    """Buffers deltas and emits them together, at most once per `interval` seconds.

    >>> sent, timers = [], []
    >>> c = Coalescer(sent.append, lambda delay, fn: timers.append(fn) or _NoHandle())
    >>> c.add(content="a"); c.add(content="b"); c.add(reasoning="r")
    >>> timers[0](); sent
    [{'c': 'ab', 'r': 'r'}]

    The first delta after a flush arms one timer; more deltas only join the buffer. So the
    message rate is bounded whatever the token rate, and no delta waits longer than
    `interval`. `call_later` is injected: the loop's in a kernel, a list in tests.
    """

    def __init__(
        self,
        emit: Callable[[dict[str, str]], None],
        call_later: CallLater | None = None,
        interval: float = 1 / FLUSHES_PER_SECOND,
    ) -> None:
        self._emit = emit
        self._call_later = call_later
        self.interval = interval
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._timer: _Handle | None = None

    def add(self, content: str | None = None, reasoning: str | None = None) -> None:
        if content:
            self._content.append(content)
        if reasoning:
            self._reasoning.append(reasoning)
        if self._timer is None and (self._content or self._reasoning):
            call_later = self._call_later or asyncio.get_running_loop().call_later
            self._timer = call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Send what is buffered now (the timer calls this; so does a view catching up)."""
        self._disarm()
        message: dict[str, str] = {}
        if self._content:
            message["c"] = "".join(self._content)
        if self._reasoning:
            message["r"] = "".join(self._reasoning)
        self._content, self._reasoning = [], []
        if message:
            self._emit(message)

    def discard(self) -> None:
        """Forget the buffer: the final text is about to arrive in a trait anyway."""
        self._disarm()
        self._content, self._reasoning = [], []

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _NoHandle:
    def cancel(self) -> None:
        pass


class Transcript(anywidget.AnyWidget):  # type: ignore[misc]
    """The conversation view. Python calls `add_user`, `begin_reply`, `add_delta`,
    `end_reply`; the browser renders (see the module docstring for the wire format)."""

    # One module in the browser: the Markdown renderer, then the view that uses it.
    _esm = (_HERE / "markdown.js").read_text() + (_HERE / "transcript.js").read_text()
    _css = _HERE / "chat.css"

    #: Finished turns, as `Turn.as_view()` dicts. Synced whole, but only when a turn ends.
    turns = traitlets.List(traitlets.Dict()).tag(sync=True)

    def __init__(self, call_later: CallLater | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("tlc-transcript")
        self._coalescer = Coalescer(self._send_delta, call_later)
        self._live = False
        self._content: list[str] = []  # the live reply so far, for views that join late
        self._reasoning: list[str] = []
        self._loop = owner_loop()
        self._actions: list[Callable[[str, int], None]] = []
        self.on_msg(self._on_view_message)

    def on_action(self, callback: Callable[[str, int], None]) -> None:
        """`callback(kind, index)` when Edit ("edit") or Retry ("retry") is clicked on the
        left-out prompt at `turns[index]`."""
        self._actions.append(callback)

    @property
    def live_text(self) -> str:
        """The reply being written now ('' when none)."""
        return "".join(self._content)

    def add_user(self, text: str) -> None:
        self.turns = [*self.turns, Turn("user", text).as_view()]

    def begin_reply(self) -> None:
        self._coalescer.discard()
        self._live, self._content, self._reasoning = True, [], []
        self.send({"k": "begin"})

    def add_delta(self, content: str | None = None, reasoning: str | None = None) -> None:
        if content:
            self._content.append(content)
        if reasoning:
            self._reasoning.append(reasoning)
        self._coalescer.add(content, reasoning)

    def end_reply(self, turn: Turn | None) -> None:
        """Replace the live reply with its final form (or remove it, if `turn` is None)."""
        self._coalescer.discard()
        self._live, self._content, self._reasoning = False, [], []
        if turn is None:
            self.send({"k": "end"})
        else:
            # The trait change also tells every view to drop its live bubble.
            self.turns = [*self.turns, turn.as_view()]

    def clear(self) -> None:
        self.end_reply(None)
        self.turns = []

    def close(self) -> None:
        self._coalescer.discard()
        super().close()

    def _send_delta(self, message: dict[str, str]) -> None:
        # Most flushes carry only content: send it as a bare string, the smallest message
        # (per-message overhead is what coalescing keeps in check; see the module docstring).
        if set(message) == {"c"}:
            self.send(message["c"])
        else:
            self.send({"k": "d", **message})

    def _on_view_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("k") == "sync":
            # The buffer belongs to the owner loop's thread; the message may come from another.
            on_loop(self._loop, self._catch_up)
        elif content.get("k") in ("edit", "retry") and isinstance(content.get("i"), int):
            for callback in list(self._actions):
                on_loop(self._loop, callback, str(content["k"]), int(content["i"]))

    def _catch_up(self) -> None:
        if self._live:
            # Flush first so the catch-up holds everything sent so far and deltas after it
            # follow on; views that already had the text just replace it with the same.
            self._coalescer.flush()
            reasoning = "".join(self._reasoning)
            self.send({"k": "live", "c": self.live_text, "r": reasoning})
