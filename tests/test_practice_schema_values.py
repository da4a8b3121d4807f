"""The schema-driven value generator: every value it makes validates against its schema."""

from __future__ import annotations

import random
from enum import StrEnum
from typing import Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from tlc_widgets.practice.schema_values import SchemaError, SchemaValues
from tlc_widgets.practice.structured import schema_in

WORDS = "Once upon a time there was a White Rabbit with pink eyes.".split()


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    city: str = Field(min_length=3, max_length=12)


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=120)
    height: float = Field(gt=0.5, lt=2.5)
    colour: Colour
    mood: Literal["happy", "sad"]
    address: Address
    previous: list[Address] = Field(min_length=1, max_length=3)
    nickname: str | None
    scores: dict[str, int]
    ok: bool


class Tree(BaseModel):
    label: str
    children: list[Tree]


SCHEMAS: list[dict[str, Any]] = [
    Person.model_json_schema(),
    Tree.model_json_schema(),
    {"type": "array", "items": {"type": "integer", "multipleOf": 5}, "minItems": 2},
    {"type": ["string", "null"], "format": "date-time"},
    {"oneOf": [{"type": "null"}, {"type": "number", "minimum": 10, "maximum": 10}]},
    {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}},
    {"allOf": [{"$ref": "#/definitions/a"}], "definitions": {"a": {"const": 7}}},
    {"type": "array", "prefixItems": [{"type": "boolean"}, {"enum": [1, 2]}], "minItems": 2},
    {"type": "string", "minLength": 40, "maxLength": 45},
    {"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": True, "maxItems": 2},
    True,
    {},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_values_validate(schema: dict[str, Any], seed: int) -> None:
    value = SchemaValues(random.Random(seed), WORDS).value(schema)
    jsonschema.validate(value, schema)


def test_pydantic_accepts_the_values() -> None:
    for seed in range(10):
        person = Person.model_validate(
            SchemaValues(random.Random(seed), WORDS).value(Person.model_json_schema())
        )
        assert person.nickname is not None  # optional fields are filled in
        tree = Tree.model_validate(
            SchemaValues(random.Random(seed), WORDS).value(Tree.model_json_schema())
        )
        assert tree.label


def test_strings_are_made_of_the_words() -> None:
    value = SchemaValues(random.Random(0), WORDS).value({"type": "string"})
    assert set(value.split()) <= set(WORDS)


def test_a_ref_that_leads_nowhere_is_named() -> None:
    with pytest.raises(SchemaError, match="leads nowhere"):
        SchemaValues(random.Random(0), WORDS).value({"$ref": "#/$defs/Missing"})


def test_a_schema_written_in_a_prompt_is_found() -> None:
    prompt = "Answer {not json} as " + '{"type": "object", "properties": {"a": {}}} please'
    assert schema_in(prompt) == {"type": "object", "properties": {"a": {}}}
    assert schema_in("no schema {here}") is None
