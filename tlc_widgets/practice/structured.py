"""Structured answers: JSON for `response_format`, and the arguments of tool calls.

    >>> fmt = parse_response_format({"type": "json_schema", "json_schema": {"name": "n",
    ...     "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}},
    ...     "required": ["ok"]}}})
    >>> sorted(json.loads(json_text(fmt, random.Random(1), ["word"])))
    ['ok']

`json_schema` (strict or not) gets a value valid against the schema, made by `SchemaValues` from
the practice model's words. `json_object` follows a JSON schema written in the prompt if there
is one (as OpenAI's docs ask for JSON mode, and as langchain's `json_mode` needs), else
answers `{"answer": "<practice text>"}`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tlc_widgets.practice.schema_values import SchemaError, SchemaValues

__all__ = [
    "FormatError",
    "ResponseFormat",
    "json_text",
    "json_value",
    "parse_response_format",
    "schema_in",
]

_MAX_SCHEMA_TRIES = 200  # "{" positions tried when looking for a schema in a prompt


class FormatError(ValueError):
    """`response_format` is malformed; the message says how to fix it."""


@dataclass(frozen=True)
class ResponseFormat:
    """What shape the answer must have: "json_object", or "json_schema" with its schema."""

    kind: str
    schema: Mapping[str, Any] | None = None


def parse_response_format(raw: Any) -> ResponseFormat | None:
    """OpenAI's `response_format`; None (or `{"type": "text"}`) means plain text."""
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind == "json_schema":
        spec = raw.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise FormatError("'response_format.json_schema.schema' must be a JSON schema object.")
        return ResponseFormat("json_schema", schema)
    raise FormatError('\'response_format.type\' must be "text", "json_object" or "json_schema".')


def json_value(schema: Mapping[str, Any], rng: random.Random, words: Sequence[str]) -> Any:
    """A value valid against `schema`; a `FormatError` says why none can be made."""
    try:
        return SchemaValues(rng, words).value(schema)
    except SchemaError as exc:
        raise FormatError(f"The practice model cannot fill this JSON schema: {exc}") from exc


def schema_in(text: str) -> Mapping[str, Any] | None:
    """The first JSON schema of an object written in `text`, if any.

    >>> schema_in('Answer as {"type": "object", "properties": {"a": {"type": "string"}}}')
    {'type': 'object', 'properties': {'a': {'type': 'string'}}}
    """
    decoder = json.JSONDecoder()
    start = text.find("{")
    for _ in range(_MAX_SCHEMA_TRIES):
        if start < 0:
            return None
        try:
            value, _end = decoder.raw_decode(text, start)
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("properties"), dict):
            return value
        start = text.find("{", start + 1)
    return None


def json_text(
    fmt: ResponseFormat, rng: random.Random, words: Sequence[str], prompt: str = ""
) -> str:
    """The answer's text: JSON in the requested shape (`prompt` may hold a schema)."""
    schema = fmt.schema if fmt.schema is not None else schema_in(prompt)
    if schema is None:
        value: Any = {"answer": " ".join(w.strip() for w in words[:20])}
    else:
        value = json_value(schema, rng, words)
    return json.dumps(value, ensure_ascii=False)
