"""The model picker and its settings (temperature, max tokens, system prompt), with presets.

    >>> s = ModelSettings()
    >>> s.set_models([{"id": "practice-fast", "display_name": "Practice", "practice": True,
    ...                "preset": {"temperature": 0.8, "max_tokens": 200}}])
    >>> s.model, s.temperature.value, s.max_tokens.value
    ('practice-fast', 0.8, 200)

Picking a model fills in its preset (from `/api/models`); the fields stay editable in a
"Settings" section that a toolbar toggle shows. When the model is the built-in practice
model, a note says plainly that it is a statistical text generator, not an LLM.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from ..config import ModelPreset

__all__ = ["PRACTICE_NOTE", "ModelSettings"]

PRACTICE_NOTE = "practice model — a statistical text generator, not an LLM"
LABEL_WIDTH = "7.5em"


class ModelSettings(widgets.VBox):  # type: ignore[misc]
    """`model`, `temperature`, `max_tokens`, `system_prompt` are the widgets' current values."""

    def __init__(self, model: str | None = None) -> None:
        defaults = ModelPreset()
        self._models: dict[str, dict[str, Any]] = {}
        self._wanted = model  # asked for before the list arrived: selected once it does
        self._filling = False
        # One label width for every field, wide enough for "Temperature": aligned, never cut.
        label = {"description_width": LABEL_WIDTH}
        self.picker = widgets.Dropdown(
            description="Model",
            options=[],
            layout=widgets.Layout(width="auto", min_width="320px"),
            style=label,
        )
        self.practice_note = widgets.HTML()
        self.practice_note.add_class("tlc-practice-note")
        self.practice_note.layout.display = "none"  # until a practice model is picked
        self.temperature = widgets.FloatSlider(
            value=defaults.temperature,
            min=0.0,
            max=2.0,
            step=0.05,
            description="Temperature",
            style=label,
            layout=widgets.Layout(width="420px"),
        )
        self.max_tokens = widgets.BoundedIntText(
            value=defaults.max_tokens,
            min=1,
            max=32768,
            description="Max tokens",
            style=label,
            layout=widgets.Layout(width="240px"),
        )
        self.system_prompt_box = widgets.Textarea(
            value=defaults.system_prompt,
            description="System",
            rows=3,
            style=label,
            layout=widgets.Layout(width="95%"),
        )
        self.description = widgets.HTML()
        self.description.add_class("tlc-model-description")
        self.fields = widgets.VBox(
            [self.temperature, self.max_tokens, self.system_prompt_box, self.description]
        )
        self.fields.add_class("tlc-settings-fields")
        # A toolbar toggle, not an ipywidgets Accordion (its grey header looks foreign in
        # JupyterLab); collapsed: the defaults are fine to start.
        self.toggle = widgets.ToggleButton(
            value=False,
            description="Settings",
            icon="sliders",
            tooltip="Temperature, max tokens, system prompt",
            layout=widgets.Layout(width="auto"),
        )
        self.toggle.add_class("tlc-tool")
        self.toggle.observe(self._toggled, names="value")
        self._toggled({"new": False})
        row = widgets.HBox([self.picker, self.toggle])
        row.add_class("tlc-model-row")
        # On a line of its own, under the picker: it never wraps a word away from the rest.
        super().__init__([row, self.practice_note, self.fields])
        self.add_class("tlc-settings")
        self.picker.observe(self._picked, names="value")

    @property
    def expanded(self) -> bool:
        """The fields are shown (the Settings toggle is on)."""
        return bool(self.toggle.value)

    def _toggled(self, change: dict[str, Any]) -> None:
        self.fields.layout.display = "flex" if change["new"] else "none"

    # ------------------------------------------------------------------ values

    @property
    def model(self) -> str | None:
        """The chosen model's id (None: the server's default)."""
        value = self.picker.value
        return str(value) if value else self._wanted

    @model.setter
    def model(self, model_id: str) -> None:
        if self._models and model_id not in self._models:
            raise ValueError(f"no model {model_id!r}; available: {', '.join(self._models)}")
        self._wanted = model_id
        if self._models:
            self.picker.value = model_id

    @property
    def system_prompt(self) -> str:
        return str(self.system_prompt_box.value)

    @property
    def is_practice(self) -> bool:
        info = self._models.get(self.model or "")
        return bool(info and info.get("practice"))

    def values(self) -> dict[str, Any]:
        """Model and sampling settings, as sent with a request and written into exports."""
        return {
            "model": self.model,
            "temperature": float(self.temperature.value),
            "max_tokens": int(self.max_tokens.value),
        }

    # ------------------------------------------------------------------ the list

    @property
    def loaded(self) -> bool:
        return bool(self._models)

    def set_models(self, models: list[dict[str, Any]]) -> None:
        """Fill the picker from `/api/models`; keeps the choice (and edits) if still offered."""
        listed = {m["id"]: m for m in models}
        if list(listed) == list(self._models):
            self._models = listed  # same models: keep what the learner has typed
            return
        self._models = listed
        keep = self.picker.value if self.picker.value in listed else None
        wanted = keep or (self._wanted if self._wanted in listed else None)
        wanted = wanted or (models[0]["id"] if models else None)
        # New options reset a Dropdown's value; mute `_picked` until the choice is back.
        self._filling = True
        try:
            self.picker.options = [(_label(m), m["id"]) for m in models]
            self.picker.value = wanted
        finally:
            self._filling = False
        if wanted != keep:
            self.apply_preset(wanted)

    def _picked(self, change: dict[str, Any]) -> None:
        if not self._filling and change["new"] in self._models:
            self._wanted = change["new"]
            self.apply_preset(change["new"])

    def apply_preset(self, model_id: str | None) -> None:
        info = self._models.get(model_id or "", {})
        preset = ModelPreset(
            **{k: v for k, v in (info.get("preset") or {}).items() if v is not None}
        )
        self.temperature.value = preset.temperature
        self.max_tokens.value = preset.max_tokens
        self.system_prompt_box.value = preset.system_prompt
        self.description.value = html.escape(preset.description or "")
        self.practice_note.value = (
            f"<b>{html.escape(PRACTICE_NOTE)}</b>" if info.get("practice") else ""
        )
        self.practice_note.layout.display = None if info.get("practice") else "none"


def _label(model: dict[str, Any]) -> str:
    name = str(model.get("display_name") or model["id"])
    if model.get("loaded") is False:
        name += " (not loaded)"
    return name
