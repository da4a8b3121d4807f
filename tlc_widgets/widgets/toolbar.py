"""The panel's toolbar: Stop, New chat, Export .md / .json, and the download links.

    >>> bar = ChatToolbar(stop=lambda: None, new_chat=lambda: None, export=lambda fmt: fmt)
    >>> bar.stop_button.disabled                 # nothing runs yet: Stop is inactive
    True
    >>> bar.busy = True; bar.stop_button.disabled
    False

Toolbar-style buttons (`tlc-tool`: JupyterLab's toolbar look, its CSS variables, sized by
their label), so they read as the panel's tools and not as four grey boxes. A click may
arrive in a comm subshell's thread (JupyterLab 4.6): it is handed to the owner loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

import ipywidgets as widgets

from .conversation import download_link
from .loop import on_loop

__all__ = ["ChatToolbar"]


class ChatToolbar(widgets.HBox):  # type: ignore[misc]
    """`export(fmt)` returns the text to offer as a download."""

    def __init__(
        self,
        *,
        stop: Callable[[], None],
        new_chat: Callable[[], None],
        export: Callable[[Literal["md", "json"]], str],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._loop = loop
        self._export = export
        self.stop_button = self._button(
            "Stop", "stop", "Stop the reply (or the wait in line)", stop
        )
        self.new_chat_button = self._button(
            "New chat", "plus", "Stop whatever runs and start an empty conversation", new_chat
        )
        self.export_md_button = self._button(
            "Export .md", "download", "Save the conversation as Markdown", self.offer, "md"
        )
        self.export_json_button = self._button(
            "Export .json", "download", "Save the conversation as JSON", self.offer, "json"
        )
        self.downloads = widgets.HTML()
        self.downloads.add_class("tlc-downloads")
        super().__init__(
            [
                self.stop_button,
                self.new_chat_button,
                self.export_md_button,
                self.export_json_button,
                self.downloads,
            ]
        )
        self.add_class("tlc-toolbar")
        self.busy = False

    @property
    def busy(self) -> bool:
        """True while a reply runs: Stop is active only then."""
        return not self.stop_button.disabled

    @busy.setter
    def busy(self, value: bool) -> None:
        self.stop_button.disabled = not value

    def offer(self, fmt: Literal["md", "json"]) -> None:
        """Put a download link for the export beside the buttons."""
        self.downloads.value = download_link(self._export(fmt), fmt)

    def _button(
        self, description: str, icon: str, tooltip: str, action: Any, *args: Any
    ) -> widgets.Button:
        button = widgets.Button(
            description=description,
            icon=icon,
            tooltip=tooltip,
            layout=widgets.Layout(width="auto"),
        )
        button.add_class("tlc-tool")
        button.on_click(lambda _: on_loop(self._loop, action, *args))
        return button
