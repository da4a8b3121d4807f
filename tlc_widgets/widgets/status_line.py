"""The panel's status line widget: one `Progress` shown, throttled while tokens stream.

    >>> line = StatusLine()
    >>> line.show(Progress(Phase.IDLE, "ready"))
    >>> line.text, "tlc-phase-idle" in line.value
    ('ready', True)

While tokens stream the sentence changes on every token (the rate); re-sending it that
often would cost more than the tokens themselves, so it is shown at most every
`STATUS_EVERY_S` within one phase — the text kept in `progress` stays exact.
"""

from __future__ import annotations

import time
from typing import Any

import ipywidgets as widgets

from .status import Phase, Progress, status_html

__all__ = ["STATUS_EVERY_S", "StatusLine"]

#: The status line changes at most this often while tokens stream (the text stays exact).
STATUS_EVERY_S = 0.25


class StatusLine(widgets.HTML):  # type: ignore[misc]
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("tlc-status")
        self.progress = Progress(Phase.IDLE, "ready")
        self._shown_at = 0.0

    @property
    def text(self) -> str:
        return self.progress.text

    def show(self, progress: Progress, throttle: bool = False) -> None:
        """Show `progress`; with `throttle`, skip it if the same phase was shown just now."""
        now = time.monotonic()
        same = progress.phase is self.progress.phase
        self.progress = progress
        if throttle and same and now - self._shown_at < STATUS_EVERY_S:
            return
        self._shown_at = now
        self.value = status_html(progress)
