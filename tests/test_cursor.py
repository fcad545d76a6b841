from __future__ import annotations

import base64

import pytest

from feedstore.cursor import Position, decode, encode
from feedstore.errors import InvalidOption

SECRET = b"s" * 32


def test_round_trip_is_url_safe() -> None:
    position = Position("/p/りんご", b"\x00\x01member")
    token = encode(position, "/p\nq", SECRET)
    assert "=" not in token and "+" not in token and "/" not in token
    assert decode(token, "/p\nq", SECRET) == position


@pytest.mark.parametrize(
    ("scope", "secret", "edit"),
    [
        ("/p\nq", SECRET, True),
        ("/p\nother", SECRET, False),
        ("/p\nq", b"x" * 32, False),
        ("/p\nq", None, False),
    ],
)
def test_edited_borrowed_or_unsigned_cursors_are_refused(
    scope: str, secret: bytes | None, edit: bool
) -> None:
    token = encode(Position("/p/1"), "/p\nq", SECRET)
    if edit:
        raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        raw[-3] ^= 1
        token = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidOption):
        decode(token, scope, secret)


@pytest.mark.parametrize("token", ["", "!!", "a", "L3EvMQ"])
def test_malformed_cursors_are_refused(token: str) -> None:
    with pytest.raises(InvalidOption):
        decode(token, "/p\nq", SECRET)
