"""Stop sequences: cut the answer where one appears, holding back text that may start one.

    >>> cut = StopCut(("END",))
    >>> cut.feed(" the E"), cut.feed("ND here"), cut.stopped
    (' the ', '', True)

A stream cannot take back what it has sent, so text that could be the start of a stop
sequence is held until the next token shows whether it is.
"""

from __future__ import annotations

__all__ = ["StopCut"]


class StopCut:
    """Feed token texts in; get back what may be sent now. `stopped` once a stop matched."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = stops
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The part of the text so far that is safe to send now."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        held = self._held + text
        found = [i for i in (held.find(s) for s in self._stops) if i >= 0]
        if found:
            self.stopped = True
            self._held = ""
            return held[: min(found)]
        keep = max((self._prefix_len(held, s) for s in self._stops), default=0)
        self._held = held[len(held) - keep :] if keep else ""
        return held[: len(held) - keep]

    def flush(self) -> str:
        """At the end: whatever was held back (it did not become a stop sequence)."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    @staticmethod
    def _prefix_len(text: str, stop: str) -> int:
        """How many characters at the end of `text` are a proper start of `stop`."""
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                return n
        return 0
