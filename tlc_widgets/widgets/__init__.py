"""Notebook widgets for the queue: `ChatPanel`, `QueueMonitor`, and the `%%chat` magic.

    >>> from tlc_widgets.widgets import ChatPanel, QueueMonitor
    >>> ChatPanel()                                 # doctest: +SKIP

Each widget is ipywidgets/anywidget on the Python side and a small ES module in the browser
(`*.js` beside these files; no npm build). One module per part:

    chat.py          ChatPanel: wiring, tasks, Python API
    settings.py      model picker + presets        conversation.py  turns, messages, exports
    transcript.py    live transcript (deltas)      prompt.py        prompt box (Enter sends)
    status.py        the status line's sentences   inflight.py      cancel: Stop, kernel exit
    monitor.py       QueueMonitor                  magic.py         %%chat
    loop.py          browser events → the kernel loop (JupyterLab 4.6 sends them via subshells)
"""

from __future__ import annotations

from .chat import ChatPanel
from .monitor import QueueMonitor

__all__ = ["ChatPanel", "QueueMonitor"]
