"""The field schema (API.md §8): validation, defaults for null resets, merge keys, field types.

A schema is a JSON Schema (draft 2020-12) whose `properties` are an entry's custom fields. Objects
are closed unless the schema says otherwise, so an undeclared field is "Unknown field: <path>".
It is compiled once when loaded, never per request.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from feedstore.entry import ATOM_FIELDS
from feedstore.errors import InvalidField, InvalidSchema, UnknownField
from feedstore.fields import INT_MAX, INT_MIN

MERGE_KEY = "x-merge-key"
INDEX = "x-index"
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "patternProperties")
_JSON_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")

_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
SCALAR_TYPES = ("integer", "number", "boolean")

# JSON Schema calls 100.0 an integer; feedstore keeps values as they were written, and a float
# in an integer field would have no XML form that reads back as one (API.md §2.1).
_Validator = jsonschema.validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)

Path = Sequence[str | int]


def format_path(path: Iterable[str | int]) -> str:
    """`["parts", 1, "quantity"]` -> `parts[1].quantity`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class Schema:
    """A compiled schema for an entry's custom fields."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        if not isinstance(document, Mapping):
            raise InvalidSchema("The schema must be a JSON object.")
        try:
            Draft202012Validator.check_schema(document)
        except jsonschema.SchemaError as e:
            raise InvalidSchema(f"The schema is invalid: {e.message}") from e
        if not isinstance(document.get("properties", {}), Mapping):
            raise InvalidSchema("The schema's properties must be an object.")
        self.document = dict(document)
        self._validator = _Validator(closed(copy.deepcopy(self.document)))

    def validate(
        self,
        fields: Mapping[str, Any],
        key: str | None = None,
        sent: Mapping[str, Any] | None = None,
    ) -> None:
        """Raise UnknownField or InvalidField for the first thing the fields break.

        `sent`, for a PUT, is what the request carried: a failing field it didn't carry was
        stored before (under another schema), and the message says so and how to remove it.
        """
        custom = {name: value for name, value in fields.items() if name not in ATOM_FIELDS}
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(custom))
        if error is None:
            return
        path = list(error.absolute_path)
        if error.validator in ("additionalProperties", "unevaluatedProperties"):
            declared = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            extra = sorted(name for name in error.instance if name not in declared)
            path = [*path, extra[0] if extra else "?"]
            raise UnknownField(format_path(path), key=key, note=_stored_note(path, sent))
        where = format_path(path) or "entry"
        raise InvalidField(
            f"Invalid value: {where}: {error.message}{_stored_note(path, sent)}",
            key=key,
            field=where,
        )

    def node(self, path: Path) -> Mapping[str, Any] | None:
        """The subschema that describes the value at `path`; list positions may be left out."""
        node: Any = self.document
        for part in path:
            if isinstance(node, Mapping) and (isinstance(part, int) or "properties" not in node):
                node = node.get("items", node if isinstance(part, str) else None)
            if isinstance(part, str) and isinstance(node, Mapping):
                node = node.get("properties", {}).get(part)
            if not isinstance(node, Mapping):
                return None
        return node

    def default(self, path: Path) -> tuple[bool, Any]:
        """Whether the field at `path` has a `default`, and a fresh copy of it."""
        node = self.node(path)
        if node is None or "default" not in node:
            return False, None
        return True, copy.deepcopy(node["default"])

    def defaults(self) -> dict[str, Any]:
        """Every top-level default, for an entry created by an upsert."""
        properties = self.document.get("properties", {})
        return {
            name: copy.deepcopy(p["default"]) for name, p in properties.items() if "default" in p
        }

    def merge_key(self, path: Path) -> str | None:
        """The `x-merge-key` of the array of objects at `path`, if it has one."""
        node = self.node(path)
        key = node.get(MERGE_KEY) if node is not None else None
        return key if isinstance(key, str) else None

    def type_of(self, path: Path) -> str | None:
        """The JSON type the schema gives the value at `path` (the first, if several)."""
        node = self.node(path)
        declared = node.get("type") if node is not None else None
        if isinstance(declared, list):
            declared = next((t for t in declared if t != "null"), None)
        return declared if declared in _JSON_TYPES else None


def _stored_note(path: Path, sent: Mapping[str, Any] | None) -> str:
    if sent is None or not path or path[0] in sent:
        return ""
    return f" (stored before the schema changed: PATCH {path[0]} with null to remove it)"


class TooWide(ValueError):
    """An integer outside -2^63 .. 2^64-1, which no entry can hold."""


def scalar_from_text(text: str, declared: str) -> int | float | bool:
    """Text (an XML value, a filter's value) as a value of a declared scalar type (API.md §3).

    Integers are ASCII digits, optionally signed, from -2^63 to 2^64-1; numbers are decimal or
    exponent notation and finite, integral text being an integer; booleans are `true`, `false`.
    Surrounding white space is ignored. Raises ValueError saying why the text is none of these
    (TooWide for an integer out of range).
    """
    text = text.strip()
    if declared == "boolean":
        if text in ("true", "false"):
            return text == "true"
    elif _INTEGER_TEXT.fullmatch(text):
        number = int(text)
        if not INT_MIN <= number <= INT_MAX:
            raise TooWide("is wider than 64 bits")
        return number
    elif declared == "number" and _NUMBER_TEXT.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            return value
    raise ValueError(f"is not a valid {declared}")


def closed(node: Any) -> Any:
    """Close every object schema that declares properties and says nothing of others."""
    if not isinstance(node, dict):
        return node
    if "properties" in node and not {"additionalProperties", "unevaluatedProperties"} & set(node):
        node["additionalProperties"] = False
    for name in _SUBSCHEMA_MAPS:
        if isinstance(node.get(name), dict):
            for child in node[name].values():
                closed(child)
    for name in _SUBSCHEMA_LISTS:
        if isinstance(node.get(name), list):
            for child in node[name]:
                closed(child)
    for name in ("items", "additionalProperties", "not", "if", "then", "else"):
        closed(node.get(name))
    return node
