"""What an entry's fields may hold (API.md §6): names, Atom shapes, strings, integers, attributes.

Every field a request sends goes through check_field, which names the entry, the field and the
path of the first thing wrong. Nothing here knows about keys or ids (entry.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from feedstore.errors import InvalidField

ATTRIBUTE_PREFIX = "___"
TEXT_FIELD = "______text"
PATCH_DIRECTIVE = "$patch"  # {"<merge key>": ..., "$patch": "delete"} in a keyed list
# The integers entries can hold: what orjson, which stores them, carries exactly.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1

# Atom's own lists and texts; every other top-level name is custom.
ATOM_LISTS = ("link", "author", "contributor", "category")
ATOM_TEXTS = ("title", "subtitle", "summary", "content", "rights")

# Names are ASCII: every one is then an XML name, and JSON Schema patterns can state the rule
# (they have no portable "any letter").
_FIELD_NAME = re.compile(r"(?!___)[A-Za-z_][A-Za-z0-9_\-]*")
_ATTRIBUTE_NAME = re.compile(r"___[A-Za-z][A-Za-z0-9_\-]*|______text")
# What XML 1.0 can't carry: C0 controls but tab and newlines, lone surrogates, U+FFFE and U+FFFF.
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@functools.lru_cache(maxsize=4096)  # documents repeat the same few names
def _valid_nested_name(name: str, directives: bool) -> bool:
    """A name inside a field; `$patch` only in a feedstore merge's body, never in an entry."""
    return bool(
        _FIELD_NAME.fullmatch(name)
        or _ATTRIBUTE_NAME.fullmatch(name)
        or (directives and name == PATCH_DIRECTIVE)
    )


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may carry (API.md §3.4)."""

    max_entries: int = 1000
    max_depth: int = 64  # nesting of the whole body, counted by the codecs
    max_string: int = 1024 * 1024
    # lxml reads and writes an element's attributes in quadratic time: bound them per element
    # (per object in JSON, whose entries are written as XML too), and an XML body's nodes.
    max_attributes: int = 256
    max_nodes: int = 100_000


class WideInteger(int):
    """An integer a JSON body wrote outside INT_MIN .. INT_MAX, as codec_json reads it (orjson
    would round it to a float), for the entry checks to refuse by field."""


def check_fields(fields: Mapping[str, Any], key: str | None, limits: Limits) -> None:
    """check_field on every field of an entry's final content (a patch's result)."""
    for name, value in fields.items():
        check_field(name, value, key, limits)


def check_field(
    name: str, value: Any, key: str | None, limits: Limits, *, directives: bool = False
) -> None:
    """Check a top-level field's name, Atom shape, depth and string sizes."""
    if not _FIELD_NAME.fullmatch(name):
        raise InvalidField(f"Field name is invalid: {name}", key=key, field=name)
    if name in ATOM_LISTS:
        for position, item in enumerate(as_list(value)):
            if not isinstance(item, dict):
                raise InvalidField(f"{name} must be a list of objects.", key=key, field=name)
            _check_atom_object(item, f"{name}[{position}]", key)
    elif name in ATOM_TEXTS and value is not None:  # null: a PATCH resetting it
        if isinstance(value, dict):
            _check_atom_object(value, name, key)
        elif not isinstance(value, str):
            raise InvalidField(f"{name} must be a string or an object.", key=key, field=name)
    _check_bounds(value, name, key, limits, directives)


def _check_atom_object(item: dict[str, Any], path: str, key: str | None) -> None:
    for name, value in item.items():
        if name.startswith(ATTRIBUTE_PREFIX):
            if not _ATTRIBUTE_NAME.fullmatch(name):
                raise InvalidField(f"Attribute name is invalid: {path}.{name}", key=key, field=path)
        elif not _FIELD_NAME.fullmatch(name):
            raise InvalidField(f"Field name is invalid: {path}.{name}", key=key, field=path)
        if not isinstance(value, str):
            raise InvalidField(f"{path}.{name} must be a string.", key=key, field=f"{path}.{name}")


def _check_bounds(value: Any, path: str, key: str | None, limits: Limits, directives: bool) -> None:
    # Nesting depth is bounded by the codecs before this walk, so the recursion is bounded too.
    if isinstance(value, WideInteger):
        message = f"Invalid value: {path}: {value} is wider than 64 bits"
        raise InvalidField(message, key=key, field=path)
    if isinstance(value, str):
        if len(value) > limits.max_string:
            raise InvalidField(
                f"String is longer than {limits.max_string} characters: {path}", key=key, field=path
            )
        if XML_INVALID.search(value):
            # Entries must read back in Atom as they were written in JSON, and XML has no form
            # for these characters.
            raise InvalidField(f"String contains a control character: {path}", key=key, field=path)
    elif isinstance(value, dict):
        attributes = 0
        for name, item in value.items():
            if not _valid_nested_name(name, directives):
                raise InvalidField(
                    f"Field name is invalid: {path}.{name}", key=key, field=f"{path}.{name}"
                )
            if name.startswith(ATTRIBUTE_PREFIX) and name != TEXT_FIELD:
                attributes += 1
            _check_bounds(item, f"{path}.{name}", key, limits, directives)
        if attributes > limits.max_attributes:
            raise too_many_attributes(path, limits.max_attributes, key)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            _check_bounds(item, f"{path}[{position}]", key, limits, directives)


def too_many_attributes(path: str, limit: int, key: str | None) -> InvalidField:
    """The error of an element (an object in JSON) with more than `limit` attributes."""
    return InvalidField(f"Too many attributes: {path} has more than {limit}.", key=key, field=path)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
