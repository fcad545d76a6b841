"""Entries <-> JSON bytes with orjson, in the vte.cx convention (`___attribute`, `______text`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from feedstore.entry import Entry, entry_from_document
from feedstore.errors import (
    EntryRequired,
    FeedstoreError,
    InvalidBody,
    TooManyEntries,
    collect,
)
from feedstore.fields import INT_MAX, INT_MIN, Limits, WideInteger, check_depth
from feedstore.schema import Schema

CONTENT_TYPE = "application/json; charset=utf-8"
# The shortest run of digits that can be an integer orjson doesn't carry: -2^63 - 1 has 19.
LONG_DIGITS = 19
# Every digit to "0", every other byte to " ": a run of digits is then a run of zeros, which a
# substring test finds at C speed (a regex took 9 µs per KB of body).
_DIGITS_TO_ZEROS = bytes(ord("0") if byte in b"0123456789" else ord(" ") for byte in range(256))
_LONG_RUN = b"0" * LONG_DIGITS
# Every run of LONG_DIGITS bytes holds two consecutive multiples of this (2 * 9 < 19), so a run of
# digits that long shows as two digits in a row in every ninth byte of the body.
_SAMPLE_STEP = (LONG_DIGITS - 1) // 2
# Past this many places to look closer at, the whole body is scanned at once.
_MAX_WINDOWS = 32


def loads(body: bytes, limits: Limits, schema: Schema | None = None) -> list[Entry]:
    """Read a request body in any of the shapes of API.md §1.1; raise BadRequest when it is bad.

    `schema` is not needed (JSON carries its own types); it keeps the signature of codec_xml.
    The walk that checks each entry's fields also bounds their depth: the body is walked once.
    """
    document = _parse(body)
    documents, level = _unwrap_at(document)
    room = limits.max_depth - level  # the levels each entry's fields may nest
    if room < 0:
        check_depth(document, limits.max_depth)
    return entries_from(documents, limits, plain=plain_strings(body), room=room)


def plain_strings(body: bytes) -> bool:
    """Whether no string of the JSON text `body` can hold a character XML can't carry (C0
    controls but tab and newlines, lone surrogates, U+FFFE, U+FFFF).

    In JSON those come only from escapes (`\\u`, `\\b`, `\\f`) or the UTF-8 of U+FFFE and
    U+FFFF (EF BF BE, EF BF BF): raw control characters and surrogates aren't valid JSON text,
    which orjson refuses. A body without a backslash has no escape; each test is one memchr.
    """
    if b"\\" in body:
        return False
    return b"\xef" not in body or (b"\xef\xbf\xbe" not in body and b"\xef\xbf\xbf" not in body)


def loads_documents(body: bytes, limits: Limits, schema: Schema | None = None) -> list[Any]:
    """The entries of a body as JSON-form documents, unwrapped from any accepted shape."""
    return unwrap(loads_document(body, limits))


def loads_document(body: bytes, limits: Limits) -> Any:
    """Read any JSON document (a patch body, a schema) with the same bounds as entries."""
    document = _parse(body)
    check_depth(document, limits.max_depth)
    return document


def _parse(body: bytes) -> Any:
    """The JSON value of `body`, with integers wider than 64 bits kept as written."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidBody(str(e)) from e
    if has_long_digits(body):
        # orjson reads an integer past 64 bits as a float, rounded: read the body again with the
        # integers as written, so that the entry checks refuse such a one by its field. (The body
        # parsed as JSON, and orjson refuses numbers that overflow a double, so this parse can't
        # fail or meet an integer too long for int().)
        document = json.loads(body, parse_int=_integer)
    return document


def has_long_digits(body: bytes) -> bool:
    """Whether `body` has a run of LONG_DIGITS ASCII digits, found from every ninth byte (a
    ninth of the body mapped, not all of it): only where two sampled bytes in a row are digits
    is the stretch around them mapped whole."""
    sampled = body[::_SAMPLE_STEP].translate(_DIGITS_TO_ZEROS)
    at = sampled.find(b"00")
    for _ in range(_MAX_WINDOWS):
        if at < 0:
            return False
        # A run through sampled bytes `at` and `at + 1` lies within LONG_DIGITS of them.
        start = max(0, at * _SAMPLE_STEP - LONG_DIGITS)
        stretch = body[start : (at + 1) * _SAMPLE_STEP + LONG_DIGITS]
        if _LONG_RUN in stretch.translate(_DIGITS_TO_ZEROS):
            return True
        at = sampled.find(b"00", at + 1)
    return at >= 0 and _LONG_RUN in body.translate(_DIGITS_TO_ZEROS)


def loads_message(body: bytes, limits: Limits) -> str | None:
    """The title of a message feed `{"feed":{"title":"..."}}` (None without a title)."""
    document = loads_document(body, limits)
    feed = document.get("feed") if isinstance(document, dict) and len(document) == 1 else None
    if not isinstance(feed, dict) or set(feed) - {"title"}:
        raise InvalidBody('a message is a feed with only a title: {"feed":{"title":"..."}}')
    title = feed.get("title")
    if title is not None and not isinstance(title, str):
        raise InvalidBody("a message's title must be a string.")
    return title


def _integer(text: str) -> int:
    number = int(text)
    return number if INT_MIN <= number <= INT_MAX else WideInteger(number)


def unwrap(document: Any) -> list[Any]:
    """The entries of a feed, an `entry` wrapper, a bare array or a single bare entry."""
    return _unwrap_at(document)[0]


def _unwrap_at(document: Any) -> tuple[list[Any], int]:
    """unwrap, and the level of containers the entries are at (a bare entry is at 1)."""
    level = 1
    if isinstance(document, dict) and len(document) == 1:
        if "feed" in document:
            feed = document["feed"]
            if not isinstance(feed, dict):
                raise InvalidBody("feed must be an object.")
            document, level = {"entry": feed.get("entry", [])}, 2
        if "entry" in document:
            document, level = document["entry"], level + 1
    if isinstance(document, list):
        return document, level + 1
    if isinstance(document, dict):
        return [document], level
    raise InvalidBody("the body must be a feed, an entry or an array of entries.")


def entries_from(
    documents: Sequence[Any],
    limits: Limits,
    *,
    directives: bool = False,
    plain: bool = False,
    room: int | None = None,
) -> list[Entry]:
    """Entries from JSON-form documents, with the per-request count limits checked first;
    `directives` for a feedstore merge's body (`$patch` in keyed list items), `plain` when no
    string in them can hold a character XML can't carry (plain_strings), `room` when their
    depth is left to the walk that checks them (entry_from_document)."""
    if not documents:
        raise EntryRequired()
    if len(documents) > limits.max_entries:
        raise TooManyEntries(limits.max_entries)
    entries: list[Entry] = []
    errors: list[FeedstoreError] = []
    for index, document in enumerate(documents):
        try:
            entries.append(
                entry_from_document(
                    document, index, limits, directives=directives, plain=plain, room=room
                )
            )
        except FeedstoreError as error:
            errors.append(error)
    collect(errors)
    return entries


def dumps(documents: Iterable[Mapping[str, Any]]) -> bytes:
    """A feed of entries: `{"feed":{"entry":[...]}}`."""
    return orjson.dumps({"feed": {"entry": list(documents)}})


def dumps_stored(raw_documents: Iterable[bytes]) -> bytes:
    """A feed of entries already stored as JSON bytes, spliced without decoding them."""
    return b'{"feed":{"entry":[' + b",".join(raw_documents) + b"]}}"


def dumps_bare(documents: Sequence[Mapping[str, Any]], single: bool = False) -> bytes:
    """Entries without their feed, as vte.cx answers them: `[...]`, or `{...}` for one entry."""
    return orjson.dumps(documents[0] if single else list(documents))


def dumps_stored_bare(raw_documents: Sequence[bytes], single: bool = False) -> bytes:
    """Stored entries without their feed, spliced without decoding them: `[...]` or `{...}`."""
    return raw_documents[0] if single else b"[" + b",".join(raw_documents) + b"]"


def dumps_message(
    title: str,
    error: Mapping[str, Any] | None = None,
    *,
    subtitle: str | None = None,
    links: Sequence[Mapping[str, str]] = (),
    rights: str | None = None,
) -> bytes:
    """A message feed `{"feed":{"title":...}}`, with the `error` member for errors; a summary
    (vte.cx's pagination answer) adds a subtitle and links, `?_access` a subtitle and rights."""
    feed: dict[str, Any] = {"title": title}
    if subtitle is not None:
        feed["subtitle"] = subtitle
    if links:
        feed["link"] = list(links)
    if rights is not None:
        feed["rights"] = rights
    body: dict[str, Any] = {"feed": feed}
    if error is not None:
        body["error"] = error
    return orjson.dumps(body)


def dumps_document(document: Any) -> bytes:
    """Any JSON value, for the one unwrapped answer (the schema) and for storage."""
    return orjson.dumps(document)


def stored_revision(raw: bytes, key: str) -> int:
    """The revision in a stored document's id, read without decoding the document.

    Stored documents start with their id (entry.stored_document puts it first, orjson keeps the
    order and writes keys' characters unescaped), so a read needs one Redis GET, not two.
    """
    prefix = b'{"id":"' + key.encode() + b","
    if raw.startswith(prefix):
        end = raw.find(b'"', len(prefix))
        digits = raw[len(prefix) : end]
        if digits.isdigit():
            return int(digits)
    return int(str(loads_stored(raw)["id"]).rpartition(",")[2])


def loads_stored(raw: bytes) -> dict[str, Any]:
    """A document as the store keeps it; it was written by dumps_document, so it is trusted."""
    document: dict[str, Any] = orjson.loads(raw)
    return document
