"""Values that fit a JSON schema: what the practice model puts in tool calls and JSON answers.

    >>> import random
    >>> schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3,
    ...     "maximum": 3}, "ok": {"const": True}}, "required": ["n", "ok"]}
    >>> SchemaValues(random.Random(0), ["rabbit"]).value(schema)
    {'n': 3, 'ok': True}

Covers what OpenAI's strict mode, pydantic and zod emit: object/properties/required/
additionalProperties, string (minLength/maxLength, enum, common `format`s), number/integer
(minimum/maximum, exclusive bounds, multipleOf), boolean, null, array (items, prefixItems,
minItems/maxItems, uniqueItems), enum, const, anyOf/oneOf/allOf, `type` lists (nullable), and
`$ref` to `#/$defs/…` or `#/definitions/…`. Strings are made of the Markov words it is given,
so they read like the practice model's text. Unsupported: `pattern` (a value is still made,
it may not match) and `not`. Every optional property is filled in (OpenAI's strict mode
requires them all anyway). Recursive schemas stop at a depth limit by taking null, an empty
list or leaving optional properties out.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["SchemaError", "SchemaValues"]

_MAX_DEPTH = 6  # deeper than this, recursive schemas take their shortest way out
_FORMATS: dict[str, str] = {
    "date-time": "2025-01-15T09:30:00Z",
    "date": "2025-01-15",
    "time": "09:30:00",
    "duration": "PT1H",
    "email": "student@example.com",
    "idn-email": "student@example.com",
    "uri": "https://example.com/practice",
    "iri": "https://example.com/practice",
    "uri-reference": "/practice",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


class SchemaError(ValueError):
    """The schema cannot be satisfied (e.g. a `$ref` that leads nowhere)."""


class SchemaValues:
    """A value generator for one schema document; `words` feed the strings."""

    def __init__(self, rng: random.Random, words: Sequence[str]) -> None:
        self._rng = rng
        self._words = [w for w in words if w.strip()] or ["practice"]
        self._next_word = 0
        self._root: Mapping[str, Any] = {}

    def value(self, schema: Mapping[str, Any] | bool) -> Any:
        """A value valid against `schema` (the root of its `$ref`s)."""
        self._root = schema if isinstance(schema, Mapping) else {}
        return self._value(schema, 0)

    # -- dispatch -----------------------------------------------------------------------------

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema
        if not ref.startswith("#"):
            raise SchemaError(f"only local $ref are supported, not {ref!r}")
        target: Any = self._root
        for part in ref.lstrip("#").strip("/").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise SchemaError(f"$ref {ref!r} leads nowhere")
            target = target[part]
        # Siblings of $ref (a description, a default) are kept; the target's keys win.
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return self._resolve({**rest, **target})

    def _value(self, schema: Mapping[str, Any] | bool, depth: int) -> Any:
        if isinstance(schema, bool) or not schema:
            return self._words_text(1, 3)  # `true` or `{}`: anything goes
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._rng.choice(schema["enum"])
        if isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self._resolve(part) if isinstance(part, Mapping) else {}
                for key, val in part.items():
                    if key in ("properties",) and key in merged:
                        merged[key] = {**merged[key], **val}
                    elif key == "required" and key in merged:
                        merged[key] = [*merged[key], *val]
                    else:
                        merged[key] = val
            return self._value(merged, depth)
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                return self._value(self._pick(options, depth), depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if isinstance(k, str)] or ["string"]
            # Prefer a real value; take null when nothing else is left or we are too deep.
            real = [k for k in kinds if k != "null"]
            kind = "null" if not real or (depth > _MAX_DEPTH and "null" in kinds) else real[0]
        if kind is None:
            kind = self._guess_type(schema)
        return self._typed(str(kind), schema, depth)

    def _pick(self, options: list[Any], depth: int) -> Any:
        resolved = [self._resolve(o) if isinstance(o, Mapping) else o for o in options]
        is_null = [isinstance(o, Mapping) and o.get("type") == "null" for o in resolved]
        if depth > _MAX_DEPTH and any(is_null):
            return resolved[is_null.index(True)]
        real = [o for o, null in zip(resolved, is_null, strict=True) if not null]
        # The first non-null option, like a Python `X | None`: deterministic and useful.
        return real[0] if real else resolved[0]

    @staticmethod
    def _guess_type(schema: Mapping[str, Any]) -> str:
        if "properties" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if "minimum" in schema or "maximum" in schema:
            return "number"
        return "string"

    def _typed(self, kind: str, schema: Mapping[str, Any], depth: int) -> Any:
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "string":
            return self._string(schema)
        if kind in ("integer", "number"):
            return self._number(schema, kind == "integer")
        if kind == "boolean":
            return self._rng.random() < 0.5
        if kind == "null":
            return None
        raise SchemaError(f"unknown JSON schema type {kind!r}")

    # -- the types ----------------------------------------------------------------------------

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        out: dict[str, Any] = {}
        for name, sub in properties.items():
            if name in required or depth <= _MAX_DEPTH:
                out[name] = self._value(sub, depth + 1)
        extra = schema.get("additionalProperties")
        low = int(schema.get("minProperties", 0))
        if not properties and isinstance(extra, Mapping) and extra:
            # A dict[str, X]: a couple of entries named after words.
            for _ in range(max(low, 1 if depth <= _MAX_DEPTH else 0)):
                out[self._word().strip(".,;:!?'\"").lower() or "key"] = self._value(
                    extra, depth + 1
                )
        return out

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = list(schema.get("prefixItems") or [])
        items = schema.get("items", {})
        low = max(int(schema.get("minItems", 0)), len(prefix))
        high = int(schema.get("maxItems", max(low, 3)))
        count = (
            low if depth > _MAX_DEPTH or items is False else self._rng.randint(low, max(low, high))
        )
        count = max(count, 1 if low == 0 and high > 0 and depth <= _MAX_DEPTH else low)
        out = [self._value(p, depth + 1) for p in prefix]
        while len(out) < count and items is not False:
            value = self._value(items if isinstance(items, Mapping | bool) else {}, depth + 1)
            if schema.get("uniqueItems") and value in out:
                if len(out) >= low:
                    break
                continue
            out.append(value)
        return out

    def _string(self, schema: Mapping[str, Any]) -> str:
        fmt = schema.get("format")
        text = _FORMATS.get(fmt) if isinstance(fmt, str) else None
        if text is None:
            text = self._words_text(2, 6)
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        while len(text) < low:
            text += " " + self._word()
        if isinstance(high, int) and len(text) > high:
            text = text[:high].rstrip() if high > 0 else ""
            text = text.ljust(low, "a")  # rstrip may have gone below minLength
        return text

    def _number(self, schema: Mapping[str, Any], integer: bool) -> int | float:
        low = schema.get("minimum", schema.get("exclusiveMinimum", None))
        high = schema.get("maximum", schema.get("exclusiveMaximum", None))
        step = schema.get("multipleOf")
        lo = float(low) if isinstance(low, int | float) else 0.0
        hi = float(high) if isinstance(high, int | float) else lo + 100.0
        if "exclusiveMinimum" in schema and "minimum" not in schema:
            lo += 1 if integer else 1e-6
        if "exclusiveMaximum" in schema and "maximum" not in schema:
            hi -= 1 if integer else 1e-6
        if integer or isinstance(step, int):
            step_i = int(step) if isinstance(step, int | float) and step >= 1 else 1
            first, last = math.ceil(lo / step_i), math.floor(hi / step_i)
            return self._rng.randint(first, max(first, last)) * step_i
        # Two decimals read well; rounding must not step over a bound.
        return min(max(round(self._rng.uniform(lo, hi), 2), lo), hi) if hi > lo else lo

    # -- words --------------------------------------------------------------------------------

    def _word(self) -> str:
        word = self._words[self._next_word % len(self._words)]
        self._next_word += 1
        return word.strip()

    def _words_text(self, low: int, high: int) -> str:
        words = [self._word() for _ in range(self._rng.randint(low, high))]
        return " ".join(words).strip(" ,;:")
