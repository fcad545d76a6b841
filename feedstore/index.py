"""Field indexes (`"x-index": true` in the schema): a lexicographic sorted set per parent and field.

A member is `<encoded value> 0x00 <child key>`, all with score 0, so ZRANGEBYLEX walks values in
order and, for one value, keys in key order. Values are encoded to sort as their type does:
numbers as 16 hex digits of an order-preserving transform of their IEEE 754 double, booleans as
`0`/`1`, strings as their UTF-8 with 0x00 and 0x01 escaped (so the separator sorts first).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from feedstore.schema import Schema

SEPARATOR = b"\x00"
INDEX_TYPES = ("string", "integer", "number", "boolean")


def indexed_fields(schema: Schema | None) -> list[tuple[str, ...]]:
    """The paths of the scalar fields the schema marks `"x-index": true`."""
    if schema is None:
        return []
    found: list[tuple[str, ...]] = []

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        for name, child in node.get("properties", {}).items():
            if not isinstance(child, Mapping):
                continue
            if child.get("x-index") is True and child.get("type") in INDEX_TYPES:
                found.append((*path, name))
            if child.get("type") == "object":
                walk(child, (*path, name))

    walk(schema.document, ())
    return found


def encode_value(value: Any) -> bytes | None:
    """The sortable bytes of a scalar, or None for a value an index can't hold."""
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int | float):
        (bits,) = struct.unpack(">Q", struct.pack(">d", float(value) + 0.0))  # -0.0 is 0.0
        bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits >> 63 else bits | 1 << 63
        return b"%016x" % bits
    if isinstance(value, str):
        return value.encode().replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")
    return None


def encode_text(text: str, declared: str | None) -> bytes | None:
    """A filter's text encoded as the index stores values of the declared type."""
    if declared in ("integer", "number"):
        if not text.isascii():  # float() would read full-width digits as a number
            return None
        try:
            return encode_value(float(text))
        except ValueError:
            return None
    if declared == "boolean":
        return {"true": b"1", "false": b"0"}.get(text)
    return encode_value(text)


def members(
    document: Mapping[str, Any] | None, key: str, fields: Iterable[tuple[str, ...]]
) -> dict[tuple[str, ...], bytes]:
    """The index member of each indexed field the document has a scalar value for."""
    found: dict[tuple[str, ...], bytes] = {}
    if document is None:
        return found
    for path in fields:
        value = _at(document, path)
        encoded = encode_value(value) if value is not None else None
        if encoded is not None:
            found[path] = encoded + SEPARATOR + key.encode()
    return found


def key_of(member: bytes) -> str:
    return member.rpartition(SEPARATOR)[2].decode()


def _at(document: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = document
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return None if isinstance(value, dict | list) else value
