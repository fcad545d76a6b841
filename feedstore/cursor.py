"""Feed cursors: opaque, URL-safe, bound to their query, and refused when tampered with.

A cursor is base64url (no padding) of an HMAC tag and a small JSON payload (the last key, and the
index position when an index was walked). The tag covers the parent and the query's filters and
sort, so a cursor can't be edited, nor reused with another query.

With auth on, a cursor is sealed instead (`sealed=True`): AES-GCM, with a key derived from the
same secret and the scope (which then names the principal too) as associated data, so it
reveals no key or value of a child the caller can't read, and serves only its own caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from feedstore.errors import InvalidOption

TAG_SIZE = 12
NONCE_SIZE = 12
ALPHABET = re.compile(r"[A-Za-z0-9_\-]+")  # base64url without padding


@dataclass(frozen=True)
class Position:
    """Where a page ended: after `key`, or after `member` in an index walk."""

    key: str
    member: bytes | None = None


def sealing_key(secret: bytes) -> bytes:
    """The AES-256 key of sealed cursors, derived from the cursor secret (never the same key
    for two uses)."""
    return hmac.new(secret, b"feedstore cursor sealing", hashlib.sha256).digest()


def encode(position: Position, scope: str, secret: bytes, sealed: bool = False) -> str:
    payload = orjson.dumps([position.key, position.member.hex() if position.member else None])
    if sealed:
        nonce = os.urandom(NONCE_SIZE)
        box = AESGCM(sealing_key(secret)).encrypt(nonce, payload, scope.encode())
        return base64.urlsafe_b64encode(nonce + box).rstrip(b"=").decode()
    tag = hmac.new(secret, scope.encode() + b"\n" + payload, hashlib.sha256).digest()[:TAG_SIZE]
    return base64.urlsafe_b64encode(tag + payload).rstrip(b"=").decode()


def check_syntax(cursor: str) -> None:
    """400 unless `cursor` could be one: reads that don't page still refuse a malformed one."""
    if not ALPHABET.fullmatch(cursor):
        raise InvalidOption(f"Cursor is invalid: p={cursor}")


def decode(cursor: str, scope: str, secret: bytes | None, sealed: bool = False) -> Position:
    """The position a cursor names; 400 when it is malformed, edited, or another query's (or,
    sealed, another caller's)."""
    try:
        if secret is None:
            raise ValueError("no cursor was ever issued")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if sealed:
            nonce, box = raw[:NONCE_SIZE], raw[NONCE_SIZE:]
            try:
                payload = AESGCM(sealing_key(secret)).decrypt(nonce, box, scope.encode())
            except InvalidTag as e:
                raise ValueError("sealed") from e
            key, member = orjson.loads(payload)
            return Position(str(key), bytes.fromhex(member) if member else None)
        tag, payload = raw[:TAG_SIZE], raw[TAG_SIZE:]
        expected = hmac.new(secret, scope.encode() + b"\n" + payload, hashlib.sha256).digest()
        if not hmac.compare_digest(tag, expected[:TAG_SIZE]):
            raise ValueError("tag")
        key, member = orjson.loads(payload)
        return Position(str(key), bytes.fromhex(member) if member else None)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError) as e:
        raise InvalidOption(f"Cursor is invalid: p={cursor}") from e
