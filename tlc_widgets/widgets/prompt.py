"""The prompt box: type, press Enter (or click Send), and `on_submit` callbacks get the text.

    >>> box = PromptBox()
    >>> box.on_submit(print)
    >>> box.submit("Tell me about the rabbit")        # what Enter does, from Python
    Tell me about the rabbit

Rendered by `prompt.js` so Enter sends and Shift+Enter makes a new line. Like an ipywidgets
`Button` (`on_click` / `click`), it has a callback registry and a method that fires it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .loop import on_loop, owner_loop

__all__ = ["PromptBox"]

_HERE = Path(__file__).parent


class PromptBox(anywidget.AnyWidget):  # type: ignore[misc]
    _esm = _HERE / "prompt.js"
    _css = _HERE / "chat.css"

    placeholder = traitlets.Unicode("Ask something… (Enter sends, Shift+Enter: new line)").tag(
        sync=True
    )
    #: True while a reply is on its way: Send is disabled (Stop first); typing stays possible.
    busy = traitlets.Bool(False).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._callbacks: list[Callable[[str], None]] = []
        self._loop = owner_loop()  # callbacks run here, not in a comm subshell's thread
        self.on_msg(self._on_view_message)

    def on_submit(self, callback: Callable[[str], None], remove: bool = False) -> None:
        """Call `callback(text)` whenever a prompt is sent (`remove=True` unregisters it)."""
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    def submit(self, text: str) -> None:
        """Send `text` as if it had been typed and Enter pressed."""
        if not text.strip():
            return
        for callback in list(self._callbacks):
            callback(text)

    def fill(self, text: str) -> None:
        """Put `text` in the box (every view), to be edited and sent again."""
        self.send({"k": "fill", "text": text})

    def _on_view_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("k") == "submit":
            on_loop(self._loop, self.submit, str(content.get("text", "")))
