from __future__ import annotations

from typing import Any

import pytest

from feedstore.errors import InvalidField, InvalidSchema, UnknownField
from feedstore.schema import Schema, format_path

DOCUMENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "userinfo": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
        },
        "favorite": {"type": "object", "properties": {"food": {"type": "string"}}},
        "score": {"type": "integer", "default": 0},
        "open": {"type": "object", "properties": {"a": {}}, "additionalProperties": True},
        "parts": {
            "type": "array",
            "x-merge-key": "partsid",
            "items": {
                "type": "object",
                "properties": {
                    "partsid": {"type": "string"},
                    "quantity": {"type": "integer", "default": 1},
                },
            },
        },
    },
}
SCHEMA = Schema(DOCUMENT)


def test_format_path() -> None:
    assert format_path(["parts", 1, "quantity"]) == "parts[1].quantity"
    assert format_path([]) == ""


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"favorite": {"color": "red"}}, "favorite.color"),
        ({"colour": 1}, "colour"),
        ({"parts": [{"partsid": "a", "size": 1}]}, "parts[0].size"),
    ],
)
def test_undeclared_fields_are_unknown(fields: dict[str, Any], path: str) -> None:
    with pytest.raises(UnknownField) as caught:
        SCHEMA.validate(fields, "/k")
    assert (caught.value.message, caught.value.field) == (f"Unknown field: {path}", path)


def test_wrong_types_name_the_field() -> None:
    with pytest.raises(InvalidField) as caught:
        SCHEMA.validate({"parts": [{"partsid": "a", "quantity": "x"}]})
    assert caught.value.field == "parts[0].quantity"
    assert caught.value.message.startswith("Invalid value: parts[0].quantity: ")


def test_atom_fields_and_open_objects_pass() -> None:
    SCHEMA.validate({"title": "t", "link": [], "open": {"anything": [1]}, "score": 3})


def test_defaults_merge_keys_and_types() -> None:
    assert SCHEMA.default(["score"]) == (True, 0)
    assert SCHEMA.default(["parts", 0, "quantity"]) == (True, 1)
    assert SCHEMA.default(["favorite", "food"]) == (False, None)
    assert SCHEMA.defaults() == {"score": 0}
    assert SCHEMA.merge_key(["parts"]) == "partsid"
    assert SCHEMA.merge_key(["favorite"]) is None
    assert SCHEMA.type_of(["userinfo", "id"]) == "integer"
    assert SCHEMA.type_of(["nothing"]) is None


def test_the_stored_document_is_not_changed_by_closing_it() -> None:
    assert "additionalProperties" not in Schema(DOCUMENT).document["properties"]["favorite"]


@pytest.mark.parametrize("document", [[], {"type": "nonsense"}, {"properties": []}])
def test_a_bad_schema_is_refused(document: Any) -> None:
    with pytest.raises(InvalidSchema):
        Schema(document)
