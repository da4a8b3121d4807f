"""Tool calls: when the practice model calls a tool, which one, and with what arguments.

    >>> weather = Tool("get_weather", {"type": "object", "properties": {}})
    >>> ask = [{"role": "user", "content": "Use get_weather for Paris"}]
    >>> [t.name for t in chosen_tools([weather], "auto", ask, parallel=True)]
    ['get_weather']

The rule, simple and deterministic so a lesson can predict it:

* `tool_choice` "none", or no tools → text.
* A named function (`{"type": "function", "function": {"name": …}}`) → that tool, always.
* "auto" (the default) → the tools whose name the last user message mentions (as written, or
  with `_`/`-` read as spaces: "get weather"), all of them if `parallel_tool_calls` is not
  false, else the first; none mentioned → text. Right after a `tool` message → text, so an
  agent loop ends.
* "required" → the mentioned tools; else the first tool not called yet in the conversation
  (so after `get_weather` has run, pydantic-ai's `final_result` comes next); else the first.

Arguments are made by `SchemaValues` from the tool's `parameters`, with strings made of the
practice model's words for the prompt.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tlc_widgets.practice.text import message_text

__all__ = [
    "Tool",
    "ToolError",
    "chosen_tools",
    "new_call_id",
    "parse_tool_choice",
    "parse_tools",
    "pieces",
]

_ID_CHARS = string.ascii_letters + string.digits


class ToolError(ValueError):
    """`tools` or `tool_choice` is malformed; the message says which part."""


@dataclass(frozen=True)
class Tool:
    """A function the client offers: its name and the JSON schema of its arguments."""

    name: str
    parameters: Mapping[str, Any]


def parse_tools(raw: Any) -> list[Tool]:
    """OpenAI's `tools` array (`type: "function"` entries; others are ignored).

    >>> parse_tools([{"type": "function", "function": {"name": "f"}}])
    [Tool(name='f', parameters={'type': 'object', 'properties': {}})]
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ToolError("'tools' must be an array of {type: 'function', function: {...}}.")
    tools = []
    for entry in raw:
        function = entry.get("function") if isinstance(entry, Mapping) else None
        if isinstance(entry, Mapping) and entry.get("type", "function") != "function":
            continue  # built-in tools (web search…) are not the practice model's
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise ToolError("Each tool needs a 'function' object with a 'name'.")
        params = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, Mapping):
            raise ToolError(f"The parameters of tool '{function['name']}' must be a JSON schema.")
        tools.append(Tool(function["name"], params))
    return tools


def parse_tool_choice(raw: Any, tools: Sequence[Tool]) -> str:
    """ "auto", "none", "required", or the name of the one function that must be called."""
    if raw is None:
        return "auto"
    if raw in ("auto", "none", "required"):
        return str(raw)
    function = raw.get("function") if isinstance(raw, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(name, str):
        raise ToolError(
            '\'tool_choice\' must be "auto", "none", "required" or '
            '{"type": "function", "function": {"name": …}}.'
        )
    if name not in {t.name for t in tools}:
        raise ToolError(f"'tool_choice' names '{name}', which is not one of the 'tools'.")
    return "=" + name


def _mentions(text: str, name: str) -> bool:
    spaced = re.sub(r"[_\-]+", " ", name).strip().lower()
    words = " " + re.sub(r"\s+", " ", text.lower()) + " "
    return name.lower() in words or f" {spaced} " in re.sub(r"[^\w ]", " ", words)


def chosen_tools(
    tools: Sequence[Tool], choice: str, messages: Sequence[Mapping[str, Any]], parallel: bool
) -> list[Tool]:
    """The tools to call now (empty: answer with text); see the module's rule."""
    if not tools or choice == "none":
        return []
    if choice.startswith("="):
        return [t for t in tools if t.name == choice[1:]][:1]
    after_tool = bool(messages) and messages[-1].get("role") == "tool"
    users = [message_text(m.get("content")) for m in messages if m.get("role") == "user"]
    last_user = users[-1] if users else ""
    mentioned = [] if after_tool else [t for t in tools if _mentions(last_user, t.name)]
    if choice == "auto":
        return mentioned if parallel else mentioned[:1]
    if mentioned:
        return mentioned if parallel else mentioned[:1]
    called = {
        str(call.get("function", {}).get("name"))
        for m in messages
        for call in (m.get("tool_calls") or [])
        if isinstance(call, Mapping)
    }
    fresh = [t for t in tools if t.name not in called]
    return (fresh or list(tools))[:1]


def new_call_id(rng: random.Random) -> str:
    """`call_` and 24 letters and digits, like OpenAI's tool-call ids."""
    return "call_" + "".join(rng.choices(_ID_CHARS, k=24))


def pieces(text: str, size: int = 6) -> list[str]:
    """`text` cut into pieces, the way a model streams a tool's arguments.

    >>> pieces('{"city": "Paris"}', 5)
    ['{"cit', 'y": "', 'Paris', '"}']
    """
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
