"""Entries, their keys and ids: parsing what clients send, and the document the server stores.

An entry travels as a JSON-form document (the vte.cx convention of API.md §1.1); the XML codec
produces and consumes the same form, so everything here is format-neutral.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from feedstore.errors import InvalidField, InvalidId, InvalidKey
from feedstore.fields import (
    ATOM_LISTS,
    ATOM_TEXTS,
    Limits,
    as_list,
    check_depth,
    check_field,
    fields_fine,
)

ROOT = "/"
MAX_KEY_DEPTH = 10
SERVER_AUTHOR_PREFIX = "urn:feedstore:"
_CREATED, _UPDATED = f"{SERVER_AUTHOR_PREFIX}created:", f"{SERVER_AUTHOR_PREFIX}updated:"
SERVER_OWNED = ("id", "published", "updated")
_SERVER_OWNED = frozenset(SERVER_OWNED)  # looked up for every field sent
_ATOM_LIST_NAMES = frozenset(ATOM_LISTS)
# Revisions are Redis integers, signed 64-bit: at most 18 digits, so revision + 1 always fits.
REVISION_DIGITS = 18

# Atom's own fields, in the order they are written out; every other top-level name is custom.
ATOM_FIELDS = ("id", *ATOM_LISTS, *ATOM_TEXTS, "published", "updated")

# Non-ASCII is allowed but for the noncharacters U+FFFE and U+FFFF, which XML can't carry.
_SEGMENT_CHARACTERS = r"[A-Za-z0-9$_.\-@'()\[\]\u0080-\ufffd\U00010000-\U0010ffff]"
_SEGMENT = re.compile(f"{_SEGMENT_CHARACTERS}+")
# A whole key but the root: 1 to MAX_KEY_DEPTH segments, none of them . or ..
_KEY = re.compile(rf"(?:/(?!\.\.?(?:/|\Z)){_SEGMENT_CHARACTERS}+){{1,{MAX_KEY_DEPTH}}}")


def validate_key(key: str) -> str:
    """Return `key` if it is a well-formed entry key, else raise InvalidKey (API.md §1)."""
    # One match for all the rules (no cache: a bulk's keys are new to it, and a miss cost twice
    # the match); the rules, one by one, say what is wrong.
    return key if _KEY.fullmatch(key) else check_key_rules(key)


def check_key_rules(key: str) -> str:
    """validate_key's rules one by one: `key`, or InvalidKey naming the first it breaks."""
    if not key.startswith("/"):
        raise InvalidKey(f"Key must start with a slash. {key}", key=key)
    if key == ROOT:
        return key
    if key.endswith("/"):
        raise InvalidKey(f"Key must not end with a slash. {key}", key=key)
    segments = key[1:].split("/")
    if "" in segments:
        raise InvalidKey(f"Key must not contain an empty segment. {key}", key=key)
    # Browsers and HTTP clients resolve them away before sending (RFC 3986 §5.2.4), so an entry
    # at such a key could never be reached by its URL.
    if "." in segments or ".." in segments:
        raise InvalidKey(f"Key must not contain a . or .. segment. {key}", key=key)
    if not all(_SEGMENT.fullmatch(segment) for segment in segments):
        raise InvalidKey(f"Key must not contain any prohibited characters. {key}", key=key)
    if len(segments) > MAX_KEY_DEPTH:
        raise InvalidKey(f"Key is too deep. {key}", key=key)
    return key


def validate_entry_key(key: str) -> str:
    """Like validate_key, for a key an entry can be written at: not the root, not under /_."""
    return writable_key(validate_key(key))


def writable_key(key: str) -> str:
    """validate_entry_key's own rules, for a key validate_key passed (an entry's, decoded)."""
    if key == ROOT:
        raise InvalidKey(f"Key must not be the root. {key}", key=key)
    if key.startswith("/_"):
        raise InvalidKey(f"Key is reserved for the server. {key}", key=key)
    return key


def parent_of(key: str) -> str:
    """The parent key: `/a/b` -> `/a`, `/a` -> `/`."""
    head = key.rpartition("/")[0]
    return head or ROOT


def ancestors(key: str) -> Iterator[str]:
    """The parents of `key` up to, not including, the root, nearest first."""
    while (key := parent_of(key)) != ROOT:
        yield key


def is_revision(text: str) -> bool:
    """Whether `text` is a revision as clients send it: 1 to 18 ASCII digits (API.md §1.2)."""
    return 0 < len(text) <= REVISION_DIGITS and text.isascii() and text.isdigit()


class EntryId(NamedTuple):
    """An entry id `"<key>,<revision>"`, optionally ending `?_delete`.

    A named tuple, not a frozen dataclass: every entry of a bulk makes one, three times faster."""

    key: str
    revision: int | None
    delete: bool = False

    @classmethod
    def parse(cls, text: object) -> EntryId:
        """Parse an id as clients send it; raise InvalidId naming the id."""
        if not isinstance(text, str):
            raise InvalidId(f"id must be a string: {text!r}", field="id")
        body, delete = (
            (text[: -len("?_delete")], True) if text.endswith("?_delete") else (text, False)
        )
        key, comma, revision = body.rpartition(",")
        if comma:
            if not (revision.isascii() and revision.isdigit()):
                raise InvalidId(f"{text} has an invalid revision.", key=key, field="id")
            if len(revision) > REVISION_DIGITS:  # so with the line above, is_revision
                message = f"{text} has a revision of more than {REVISION_DIGITS} digits."
                raise InvalidId(message, key=key, field="id")
        else:
            if not delete:
                raise InvalidId(f"{text} has no revision.", key=body or None, field="id")
            if not body:
                # What vtecxnext sends to delete an entry it read without an id: the self
                # link names the key (entry_from_document).
                return cls("", None, delete=True)
            key, revision = body, ""
        try:
            validate_key(key)
        except InvalidKey as e:
            raise InvalidId(f"{text} has an invalid key.", key=key, field="id") from e
        return cls(key, int(revision) if revision else None, delete)

    def __str__(self) -> str:
        text = self.key if self.revision is None else f"{self.key},{self.revision}"
        return f"{text}?_delete" if self.delete else text


# EntryId(key, revision) without the named tuple's __new__, written in Python.
_new_id = tuple.__new__


@dataclass
class Entry:
    """One entry of a request: its target key, the id it was sent with, and its fields.

    `fields` holds everything the client may set, in the JSON form; the server-owned fields
    (`id`, `published`, `updated`, the server's `author` URIs) are never in it.
    """

    key: str | None
    id: EntryId | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    index: int = 0

    @property
    def revision(self) -> int | None:
        return self.id.revision if self.id else None


def self_link(document: Mapping[str, Any]) -> str | None:
    """The href of the `rel="self"` link of a JSON-form document, if any."""
    links = document.get("link")
    if type(links) is not list:
        if not isinstance(links, Mapping):
            return None
        links = [links]
    for link in links:
        # type() first: every write asks, and isinstance of an ABC is slow for a plain dict.
        if (type(link) is dict or isinstance(link, Mapping)) and link.get("___rel") == "self":
            href = link.get("___href")
            return href if isinstance(href, str) else None
    return None


def _sent_self_link(document: Mapping[str, Any]) -> str | None:
    """The key a sent entry's self link names; 400 for a self link without an href, or two."""
    links = document.get("link")
    if type(links) is list and len(links) == 1:  # the usual entry: its self link alone
        link = links[0]
        if type(link) is dict and link.get("___rel") == "self":
            href = link.get("___href")
            if type(href) is str:
                return href
    items = links if isinstance(links, list) else [links]
    own = [
        link
        for link in items
        if (type(link) is dict or isinstance(link, Mapping)) and link.get("___rel") == "self"
    ]
    if not own:
        return None
    href = own[0].get("___href")
    if not isinstance(href, str):
        raise InvalidField("The self link has no ___href.", field="link")
    if len(own) > 1:
        raise InvalidField(f"An entry has one self link. {href}", key=href, field="link")
    return href


def entry_from_document(
    document: object,
    index: int,
    limits: Limits,
    *,
    directives: bool = False,
    plain: bool = False,
    room: int | None = None,
) -> Entry:
    """Read one JSON-form entry; raise a BadRequest naming the entry and field when it is bad.

    `directives`: the document is a feedstore merge's body, where keyed list items may carry
    `$patch`; anywhere else that name is refused. `plain`: the codec saw that no string can hold
    a character XML can't carry (fields_fine). `room`: the levels of containers its fields may
    nest, when the codec left that check to this walk (None: it bounded the whole body).
    """
    if not isinstance(document, dict):
        raise InvalidField(f"Entry {index} is not an object.", field=f"entry[{index}]")
    key, entry_id = _usual_key_and_id(document)
    if key is None:  # any other shape: the self link and the id read one by one
        key = _sent_self_link(document)
        if key is not None:
            validate_key(key)
        sent_id = document.get("id")
        if sent_id is not None:
            entry_id = _same_key_id(sent_id, key) or EntryId.parse(sent_id)
    if entry_id is not None and not entry_id.key:
        if key is None:
            raise InvalidId("?_delete needs the entry's self link.", field="id")
        entry_id = EntryId(key, None, delete=True)
    # An id naming another key than the self link is checked by the write: it is right when
    # the self link is an alias of the entry the id names (an entry read through the alias).
    if entry_id is not None and key is None:
        key = entry_id.key
    fine = fields_fine(
        document, limits, skip=_SERVER_OWNED, directives=directives, plain=plain, room=room
    )
    if fine:
        # A copy in C, less the few server-owned names it has. A test per name, not a set
        # operation: the set an intersection makes costs twice as much (every entry comes here).
        fields = dict(document)
        for name in SERVER_OWNED:
            fields.pop(name, None)
        for name in ATOM_LISTS:
            if name not in fields:
                continue
            value = fields[name]  # a list or an object (fields_fine)
            if type(value) is not list:
                fields[name] = value = [value]
            if name == "author":
                value = [a for a in value if not _is_server_author(a)]
                if value:
                    fields[name] = value
                else:
                    del fields[name]
        return Entry(key, entry_id, fields, index)
    if room is not None:
        check_depth(document, room + 1, limits.max_depth)  # before check_field walks it
    fields = {}
    for name, value in document.items():
        if name in _SERVER_OWNED:
            continue
        check_field(name, value, key, limits, directives=directives)
        if name == "author":
            value = [a for a in as_list(value) if not _is_server_author(a)]
            if not value:
                continue
        elif name in _ATOM_LIST_NAMES:
            value = as_list(value)
        fields[name] = value
    return Entry(key=key, id=entry_id, fields=fields, index=index)


def checked_key_and_id(
    document: object, index: int, limits: Limits, *, plain: bool = False
) -> tuple[str | None, EntryId | None]:
    """The key and id of a JSON-form entry checked as entry_from_document checks it, with the
    same errors, but without making its fields: a restore stores the document as it is."""
    if type(document) is dict:
        key = _sent_self_link(document)
        if key is not None:
            validate_key(key)
            entry_id = _same_key_id(document.get("id"), key)
            if entry_id is not None and fields_fine(
                document, limits, skip=_SERVER_OWNED, plain=plain
            ):
                return key, entry_id
    entry = entry_from_document(document, index, limits, plain=plain)
    return entry.key, entry.id


def _usual_key_and_id(document: dict[str, Any]) -> tuple[str | None, EntryId | None]:
    """The key and id of the usual entry, its self link alone and the id `<that key>,<revision>`,
    read in one go (the key is checked); (None, None) for any other shape. What
    _sent_self_link and _same_key_id find for it, with fewer steps: every entry of a feed asks."""
    links, text = document.get("link"), document.get("id")
    if type(links) is list and len(links) == 1 and type(text) is str:
        link = links[0]
        if type(link) is dict and link.get("___rel") == "self":
            key = link.get("___href")
            # A valid key has no comma, so the id's last one ends its key.
            head, _, revision = text.rpartition(",")
            if head == key and is_revision(revision):
                return validate_key(key), _new_id(EntryId, (key, int(revision), False))
    return None, None


def _same_key_id(text: object, key: str | None) -> EntryId | None:
    """The usual id, `<the self link's key>,<revision>`, read at once (the key is checked)."""
    if type(text) is str and key is not None and text.startswith(key):
        revision = text[len(key) + 1 :]
        if text[len(key) : len(key) + 1] == "," and is_revision(revision):
            return EntryId(key, int(revision))
    return None


def _is_server_author(author: Any) -> bool:
    uri = author.get("uri") if isinstance(author, dict) else None
    return isinstance(uri, str) and uri.startswith(SERVER_AUTHOR_PREFIX)


def timestamp(moment: float | None = None) -> str:
    """RFC 3339 with milliseconds and the local offset, as vte.cx writes them."""
    seconds = time.time() if moment is None else moment
    zone = _zone_at(int(seconds // 60))  # the offset of that moment (DST included)
    return datetime.fromtimestamp(seconds, zone).isoformat(timespec="milliseconds")


@functools.lru_cache(maxsize=4)
def _zone_at(minute: int) -> timezone:
    """The local offset during `minute` (minutes since the epoch): offsets change on whole
    minutes, so every write of a minute shares one look-up of the local zone."""
    return timezone(timedelta(seconds=time.localtime(minute * 60).tm_gmtoff))


def stored_document(
    key: str,
    revision: int,
    fields: Mapping[str, Any],
    *,
    published: str,
    updated: str,
    created_by: str,
    updated_by: str | None,
) -> dict[str, Any]:
    """The entry as the server stores and serves it: server-owned fields first, then the rest."""
    authors: list[Any] = [{"uri": _CREATED + created_by}]
    if updated_by is not None:
        authors.append({"uri": _UPDATED + updated_by})
    authors.extend(fields.get("author", ()))
    links = list(fields.get("link", ()))
    if self_link({"link": links}) is None:
        links.insert(0, {"___href": key, "___rel": "self"})
    document: dict[str, Any] = {
        "id": f"{key},{revision}",
        "link": links,
        "author": authors,
        "published": published,
        "updated": updated,
    }
    document.update((name, value) for name, value in fields.items() if name not in document)
    return document


def put_document(
    key: str,
    revision: int,
    stored: Mapping[str, Any] | None,
    sent: Mapping[str, Any],
    *,
    updated: str,
    principal: str,
) -> dict[str, Any]:
    """What a PUT of `sent` stores over `stored` (None: the entry is new), by `principal`.

    The same document as stored_document(key, revision, merge_top_level(document_fields(stored),
    sent), ...) with the published time and creator of `stored`, made in one pass over each of
    them: every entry of every PUT goes through here. (A test holds the two to the same result.)
    """
    if stored:
        # A copy keeps the stored order (the head first, then the fields); update() then puts
        # each sent field where the stored one stands and a new one last, all in C.
        document = dict(stored)
        published = stored["published"]
        authors = _put_authors(stored.get("author", ()), principal, keep="author" not in sent)
        links: Any = stored.get("link", ())
    else:
        document = dict.fromkeys(("id", "link", "author", "published", "updated"))
        published = updated
        authors, links = [{"uri": _CREATED + principal}], ()
    document.update(sent)
    # The server's own, whatever was sent (entry_from_document drops them anyway).
    document["id"] = f"{key},{revision}"
    document["published"], document["updated"] = published, updated
    sent_links = sent.get("link")
    # A list of its own either way: the stored document's is left as it was.
    links = list(links) if sent_links is None else _merge_links(links, sent_links)
    if "author" in sent:
        authors.extend(sent["author"])
    first = links[0] if links else None
    # The self link is first in every stored document: found at once, else looked for.
    if not (type(first) is dict and first.get("___rel") == "self") and not _has_self_link(links):
        links.insert(0, {"___href": key, "___rel": "self"})
    document["link"], document["author"] = links, authors
    return document


def _put_authors(stored: Iterable[Any], principal: str, *, keep: bool) -> list[Any]:
    """A PUT's server authors (the stored creator, `principal` updating), then the stored
    client authors when `keep` (the PUT sends none of its own)."""
    if type(stored) is list and len(stored) == 2:
        # The usual stored authors, the server's two and no client's: the creator at once.
        created, updated = stored
        if type(created) is dict and type(updated) is dict:
            uri, last = created.get("uri"), updated.get("uri")
            if (
                type(uri) is str
                and type(last) is str
                and uri.startswith(_CREATED)
                and last.startswith(_UPDATED)
            ):
                return [
                    {"uri": _CREATED + (uri.rpartition(":")[2] or "anonymous")},
                    {"uri": _UPDATED + principal},
                ]
    created_by = None
    others = []
    for author in stored:
        uri = author.get("uri") if type(author) is dict else None
        if type(uri) is str and uri.startswith(SERVER_AUTHOR_PREFIX):
            if uri.startswith(_CREATED):
                created_by = uri.rpartition(":")[2]
        elif keep:
            others.append(author)
    return [{"uri": _CREATED + (created_by or "anonymous")}, {"uri": _UPDATED + principal}, *others]


def _has_self_link(links: Iterable[Any]) -> bool:
    for link in links:
        if (type(link) is dict or isinstance(link, Mapping)) and link.get("___rel") == "self":
            return True
    return False


def document_fields(document: Mapping[str, Any]) -> dict[str, Any]:
    """The client-settable fields of a stored document (the inverse of stored_document)."""
    fields = {name: value for name, value in document.items() if name not in SERVER_OWNED}
    authors = [a for a in fields.pop("author", ()) if not _is_server_author(a)]
    if authors:
        fields["author"] = authors
    return fields


def server_authors(document: Mapping[str, Any]) -> tuple[str, str | None]:
    """The principals that created and last updated a stored document."""
    created = updated = None
    for author in document.get("author", ()):
        uri = author.get("uri", "") if isinstance(author, dict) else ""
        if uri.startswith(_CREATED):
            created = uri.rpartition(":")[2]
        elif uri.startswith(_UPDATED):
            updated = uri.rpartition(":")[2]
    return created or "anonymous", updated


def merge_top_level(stored: Mapping[str, Any] | None, sent: Mapping[str, Any]) -> dict[str, Any]:
    """PUT: each top-level field sent replaces the stored one; links are replaced per rel."""
    merged = dict(stored or {})
    for name, value in sent.items():
        merged[name] = _merge_links(merged.get("link", []), value) if name == "link" else value
    return merged


def _merge_links(stored: Iterable[Any], sent: list[Any]) -> list[Any]:
    if len(sent) == 1 and sent[0].get("___rel") == "self":
        return list(stored)  # the usual PUT, at once
    sent_rels = {link.get("___rel") for link in sent}
    sent_rels.discard("self")
    if not sent_rels:
        return list(stored)  # the usual PUT: its only link is the self link, which stays
    kept = [link for link in stored if link.get("___rel") not in sent_rels]
    return kept + [link for link in sent if link.get("___rel") != "self"]
