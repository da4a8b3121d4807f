"""TLC LLM Playground: a fair shared queue in front of LM Studio, and notebook widgets for it.

    >>> import tlc_widgets
    >>> panel = tlc_widgets.ChatPanel()          # doctest: +SKIP

Widgets are imported lazily, so the server process never imports ipywidgets.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["ChatPanel", "QueueClient", "QueueMonitor", "TeacherPanel", "__version__"]

_LAZY = {
    "ChatPanel": "tlc_widgets.widgets.chat",
    "QueueMonitor": "tlc_widgets.widgets.monitor",
    "QueueClient": "tlc_widgets.client",
    "TeacherPanel": "tlc_widgets.widgets.teacher",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tlc_widgets' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext tlc_widgets` registers the `%%chat` cell magic."""
    from .widgets.magic import register

    register(ipython)
