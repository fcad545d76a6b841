"""What a request asks for, read from its headers: body and answer formats, preconditions, CSRF.

Pure functions of header values, so they are tested without Flask.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Literal

from feedstore.entry import REVISION_DIGITS
from feedstore.errors import (
    InvalidBody,
    InvalidOption,
    MissingCsrfHeader,
    UnsupportedMediaType,
)


class Format(Enum):
    JSON = "json"
    XML = "xml"


XML_TYPES = frozenset({"application/atom+xml", "application/xml", "text/xml"})
SNIFFED_TYPES = frozenset({"", "application/x-www-form-urlencoded", "text/plain"})
OVERRIDABLE = frozenset({"PATCH", "PUT", "DELETE"})
OVERRIDE_HEADERS = ("X-HTTP-Method-Override", "X-Method-Override")
# Where the WSGI environ keeps the method a request was sent with, once an override replaced it.
SENT_METHOD = "feedstore.sent_method"


def body_format(mimetype: str, body: bytes) -> Format:
    """The format of a request body: by its type, or sniffed for form, text and untyped bodies."""
    mimetype = mimetype.lower()
    if mimetype == "application/json" or mimetype.endswith("+json"):
        return Format.JSON
    if mimetype in XML_TYPES or mimetype.endswith("+xml"):
        return Format.XML
    if mimetype not in SNIFFED_TYPES:
        raise UnsupportedMediaType(f"Unsupported media type: {mimetype}")
    start = body.lstrip()[:1]
    if start in (b"{", b"["):
        return Format.JSON
    if start == b"<":
        return Format.XML
    raise InvalidBody("the body is neither JSON nor XML.")


def answer_format(args: Mapping[str, str], accept: str) -> Format:
    """`?x`, or an XML Accept header without `?j`, selects Atom XML; JSON otherwise."""
    if "x" in args:
        return Format.XML
    if "j" in args or "xml" not in accept:
        return Format.JSON
    accepted = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if accepted & XML_TYPES and "application/json" not in accepted:
        return Format.XML
    return Format.JSON


def check_csrf(header_names: Iterable[str], mimetype: str) -> None:
    """A write must carry a header a cross-site form can't send (API.md §6)."""
    for name in header_names:
        if name[:2] in ("X-", "x-") or name.lower() == "authorization":
            return
    mimetype = mimetype.lower()
    if mimetype in XML_TYPES or mimetype.endswith(("json", "+xml")):
        return
    raise MissingCsrfHeader()


def method_override(method: str, value: str | None) -> str | None:
    """The method a POST asks to be treated as, if any; raise InvalidOption for one not allowed.

    `method` is the one the client sent: an override on any other method than POST is refused, as
    a PUT treated as a PATCH (or the reverse) would change fields the client did not mean to.
    """
    if value is None:
        return None
    if method != "POST":
        raise InvalidOption("Method override is only allowed on POST.")
    value = value.strip().upper()
    if value not in OVERRIDABLE:
        raise InvalidOption(f"Method override is not allowed: {value}")
    return value


IfMatch = frozenset[int] | Literal["*"]
# One entity tag of If-Match: `"3"`, `W/"3"`, or `3` as Kii sends it. [0-9], not \d, which would
# read a full-width digit as a number.
# A revision as an entity tag: quoted (strong, or weak with W/) or bare (as Kii sends it).
_ENTITY_TAG = re.compile(rf'(W/)?"([0-9]{{1,{REVISION_DIGITS}}})"|([0-9]{{1,{REVISION_DIGITS}}})')


def parse_if_match(value: str | None) -> IfMatch | None:
    """`If-Match` as the revisions it names: `"3"`, `3`, `W/"3"`, a list of them, or `*`.

    If-Match compares strongly (RFC 9110 §13.1.1): a weak tag is well-formed but names no
    revision, so a list of weak tags alone is an empty set that no entry matches (412).
    """
    if value is None or not value.strip():
        return None
    if value.strip() == "*":
        return "*"
    revisions: set[int] = set()
    for part in value.split(","):
        tag = _ENTITY_TAG.fullmatch(part.strip())
        if tag is None:
            raise InvalidOption(f"If-Match is invalid: {value}")
        weak, quoted, bare = tag.groups()
        if weak is None:
            revisions.add(int(quoted or bare))
    return frozenset(revisions)


def parse_if_none_match(value: str | None) -> bool:
    """Whether a write says `If-None-Match: *` (create only)."""
    if value is None or not value.strip():
        return False
    if value.strip() != "*":
        raise InvalidOption(f"If-None-Match on a write must be *: {value}")
    return True


def etag(revision: int) -> str:
    return f'"{revision}"'
