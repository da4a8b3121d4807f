"""Notebook widgets for the queue: `ChatPanel`, `QueueMonitor`, `TeacherPanel`, `%%chat`.

    >>> from tlc_widgets.widgets import ChatPanel, QueueMonitor
    >>> ChatPanel()                                 # doctest: +SKIP

Each widget is ipywidgets/anywidget on the Python side and a small ES module in the browser
(`*.js` beside these files; no npm build). One module per part:

    chat.py          ChatPanel: wiring, one request (via client.follow), Python API
    settings.py      model picker + presets        conversation.py  turns, messages, exports
    transcript.py    live transcript (deltas)      markdown.js      Markdown, incrementally
    prompt.py        prompt box (Enter sends)      toolbar.py       Stop, New chat, Export
    status.py        the status line's sentences   status_line.py   the status line widget
    reach.py         retry while the server is away, clear the red line when it is back
    inflight.py      kernel exit: cancel what runs monitor.py       QueueMonitor
    magic.py         %%chat (via client.follow)
    teacher.py       TeacherPanel (the class)     teacher_sync.py  its polling and actions
    loop.py          browser events → the kernel loop (JupyterLab 4.6 sends them via subshells)
"""

from __future__ import annotations

from .chat import ChatPanel
from .monitor import QueueMonitor
from .teacher import TeacherPanel

__all__ = ["ChatPanel", "QueueMonitor", "TeacherPanel"]
