"""The in-thread server, kept under its old import path: `tlc_widgets.launch` is its home.

>>> from tlc_widgets.serving import BackgroundServer, free_port
>>> from tlc_widgets import launch
>>> BackgroundServer is launch.BackgroundServer and free_port is launch.free_port
True
"""

from __future__ import annotations

from .launch import BackgroundServer, free_port

__all__ = ["BackgroundServer", "free_port"]
