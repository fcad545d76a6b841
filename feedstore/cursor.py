"""Feed cursors: opaque, URL-safe, bound to their query, and refused when tampered with.

A cursor is base64url (no padding) of an HMAC tag and a small JSON payload (the last key, and the
index position when an index was walked). The tag covers the parent and the query's filters and
sort, so a cursor can't be edited, nor reused with another query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

import orjson

from feedstore.errors import InvalidOption

TAG_SIZE = 12
ALPHABET = re.compile(r"[A-Za-z0-9_\-]+")  # base64url without padding


@dataclass(frozen=True)
class Position:
    """Where a page ended: after `key`, or after `member` in an index walk."""

    key: str
    member: bytes | None = None


def encode(position: Position, scope: str, secret: bytes) -> str:
    payload = orjson.dumps([position.key, position.member.hex() if position.member else None])
    tag = hmac.new(secret, scope.encode() + b"\n" + payload, hashlib.sha256).digest()[:TAG_SIZE]
    return base64.urlsafe_b64encode(tag + payload).rstrip(b"=").decode()


def check_syntax(cursor: str) -> None:
    """400 unless `cursor` could be one: reads that don't page still refuse a malformed one."""
    if not ALPHABET.fullmatch(cursor):
        raise InvalidOption(f"Cursor is invalid: p={cursor}")


def decode(cursor: str, scope: str, secret: bytes | None) -> Position:
    """The position a cursor names; 400 when it is malformed, edited, or another query's."""
    try:
        if secret is None:
            raise ValueError("no cursor was ever issued")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, payload = raw[:TAG_SIZE], raw[TAG_SIZE:]
        expected = hmac.new(secret, scope.encode() + b"\n" + payload, hashlib.sha256).digest()
        if not hmac.compare_digest(tag, expected[:TAG_SIZE]):
            raise ValueError("tag")
        key, member = orjson.loads(payload)
        return Position(str(key), bytes.fromhex(member) if member else None)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError) as e:
        raise InvalidOption(f"Cursor is invalid: p={cursor}") from e
