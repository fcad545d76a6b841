"""What an entry's fields may hold (API.md §6): names, Atom shapes, strings, integers, attributes.

Every field a request sends is checked by check_field, which names the entry, the field and the
path of the first thing wrong. `fields_fine` is the same rules as one quick pass over a document
that only says yes or "look closer" (no paths, no messages, names looked up in sets), so that
check_field walks only the documents it would refuse. Nothing here knows about keys or ids
(entry.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from feedstore.errors import InvalidBody, InvalidField

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


# Names found valid (documents repeat the same few), so that a set lookup checks them; bounded
# like an lru_cache, past which names are matched every time.
_KNOWN_FIELD_NAMES: set[str] = set()
_KNOWN_NESTED_NAMES: set[str] = set()  # valid inside a field, without the merge's `$patch`
_KNOWN_LIMIT = 4096
# The values that need no check but their type (WideInteger, a subclass, is not one of them).
_CONTAINERS = (dict, list)
_SCALARS = frozenset({int, float, bool, type(None)})
_ATOM_LIST_NAMES, _ATOM_TEXT_NAMES = frozenset(ATOM_LISTS), frozenset(ATOM_TEXTS)


def fields_fine(
    document: Mapping[str, Any],
    limits: Limits,
    *,
    skip: Collection[str] = (),
    directives: bool = False,
    plain: bool = False,
    room: int | None = None,
) -> bool:
    """Whether check_field passes every field of `document` but those named in `skip`, in one
    quick pass. False means "look closer": the caller runs check_field, which then names what is
    wrong (and may find nothing, for values of types other than JSON's own).

    `plain`: the codec saw that no string can hold a character XML can't carry. `room`: how
    many levels of containers the fields may nest (None: the codec bounded the whole body), so
    that this walk is also the depth check of an entry.
    """
    room = limits.max_depth if room is None else room
    # Sets, not the tuples: names from a body are new strings, which a tuple compares one by one.
    if not _KNOWN_FIELD_NAMES.issuperset(document):
        for name in document:
            # A name in `skip` is learned when valid (the names skipped are), else let be.
            if not (
                name in _KNOWN_FIELD_NAMES
                or _learned(name, _FIELD_NAME, _KNOWN_FIELD_NAMES)
                or name in skip
            ):
                return False
    max_string = limits.max_string
    for name, value in document.items():
        if name in skip:
            continue
        kind = type(value)
        if kind is str:
            if (
                len(value) > max_string
                or (not plain and XML_INVALID.search(value))
                or name in _ATOM_LIST_NAMES
            ):
                return False
        elif name in _ATOM_LIST_NAMES and (kind is dict or kind is list):
            if room < (2 if kind is list else 1):
                return False
            for item in value if kind is list else (value,):
                if type(item) is not dict or not _atom_item_fine(item, limits, plain):
                    return False
        elif name in _ATOM_TEXT_NAMES and kind is dict:
            if room < 1 or not _atom_item_fine(value, limits, plain):
                return False
        elif kind is dict or kind is list:
            if kind is list and name in _ATOM_TEXT_NAMES:
                return False
            if not _value_fine(value, limits, directives, plain, room):
                return False
        elif kind not in _SCALARS or (
            name in _ATOM_LIST_NAMES or (value is not None and name in _ATOM_TEXT_NAMES)
        ):
            return False
    return True


def _atom_item_fine(item: dict[str, Any], limits: Limits, plain: bool) -> bool:
    """_check_atom_object's rules and _check_bounds's on an Atom object (a link, an author, a
    text construct), in one walk: every name valid, every value a string within the limits."""
    if not _KNOWN_NESTED_NAMES.issuperset(item) and not _names_fine(item, directives=False):
        return False
    if len(item) > limits.max_attributes and _attributes(item) > limits.max_attributes:
        return False
    for value in item.values():
        if (
            type(value) is not str
            or len(value) > limits.max_string
            or (not plain and XML_INVALID.search(value))
        ):
            return False
    return True


def _value_fine(
    value: dict[str, Any] | list[Any], limits: Limits, directives: bool, plain: bool, room: int
) -> bool:
    """_check_bounds's rules on a container and everything in it, which may nest `room` levels
    (this one included)."""
    if room < 1:
        return False
    if type(value) is dict:
        if not _KNOWN_NESTED_NAMES.issuperset(value) and not _names_fine(value, directives):
            return False
        if len(value) > limits.max_attributes and _attributes(value) > limits.max_attributes:
            return False
        items: Iterable[Any] = value.values()
    else:
        items = value
    for item in items:
        kind = type(item)
        if kind is str:
            if len(item) > limits.max_string or (not plain and XML_INVALID.search(item)):
                return False
        elif kind is dict or kind is list:
            if not _value_fine(item, limits, directives, plain, room - 1):
                return False
        elif kind not in _SCALARS:
            return False
    return True


def _names_fine(names: Iterable[str], directives: bool) -> bool:
    """Whether every name is valid inside a field; the valid ones are learned."""
    for name in names:
        if name in _KNOWN_NESTED_NAMES:
            continue
        if not _valid_nested_name(name, directives):
            return False
        if name != PATCH_DIRECTIVE and len(_KNOWN_NESTED_NAMES) < _KNOWN_LIMIT:
            _KNOWN_NESTED_NAMES.add(name)
    return True


def _learned(name: str, pattern: re.Pattern[str], known: set[str]) -> bool:
    """Whether `name` matches `pattern`; a match is learned."""
    if not pattern.fullmatch(name):
        return False
    if len(known) < _KNOWN_LIMIT:
        known.add(name)
    return True


def _attributes(item: Mapping[str, Any]) -> int:
    return sum(1 for name in item if name.startswith(ATTRIBUTE_PREFIX) and name != TEXT_FIELD)


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


def check_depth(document: Any, max_depth: int, body_limit: int | None = None) -> None:
    """Raise InvalidBody when containers nest deeper than `max_depth` levels; the message
    names `body_limit` when the document is a part of a body (an entry of a feed)."""
    level = [document] if isinstance(document, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise InvalidBody(f"nesting is deeper than {body_limit or max_depth} levels.")
        deeper = []
        # Plain loops and a tuple isinstance: twice as fast as a comprehension testing against
        # the union dict | list, over every value of a 10 MB bulk body.
        for node in level:
            for child in node.values() if isinstance(node, dict) else node:
                if isinstance(child, _CONTAINERS):
                    deeper.append(child)
        level = deeper
