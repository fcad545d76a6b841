"""Aliases (vte.cx's `link rel="alternate"`): other keys an entry is also found at.

An entry's aliases are the hrefs of its alternate links that are keys (start with `/`; an
alternate link to a URL elsewhere, `http://...`, is an ordinary Atom link), stored with it. The
write transaction
keeps the rest in the entry's own MULTI: each alias key maps to the entry's key, is a child of its
own parent (listed, counted and indexed there), and is refused while another entry or alias holds
it. A read through an alias answers the entry with its self link rewritten to the alias; the id
stays the entry's, so a client can write it back (through the alias or not).

Pure functions of documents; the transaction and the store call them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from feedstore.entry import validate_entry_key
from feedstore.errors import FeedstoreError, InvalidField
from feedstore.fields import ATTRIBUTE_PREFIX
from feedstore.schema import Schema

REL = "alternate"
MAX_ALIASES = 100
_HREF, _REL = f"{ATTRIBUTE_PREFIX}href", f"{ATTRIBUTE_PREFIX}rel"

Fields = dict[str, Any]


def aliases_of(fields: Mapping[str, Any] | None) -> list[str]:
    """The aliases an entry's fields (or stored document) name, in order."""
    links = fields.get("link") if fields else None
    if not isinstance(links, list):
        return []
    found = []  # a loop, not a comprehension: every entry written comes here twice
    for link in links:
        # type() first: every write asks, and isinstance of an ABC is slow for a plain dict.
        if (
            (type(link) is dict or isinstance(link, Mapping))
            and link.get(_REL) == REL
            and isinstance(link.get(_HREF), str)
            and link[_HREF].startswith("/")
        ):
            found.append(link[_HREF])
    return found


def check_document(key: str, fields: Mapping[str, Any] | None) -> None:
    """check() the aliases `fields` name, if any (most entries have none)."""
    aliases = aliases_of(fields)
    if aliases:
        check(key, aliases)


def check(key: str, aliases: list[str]) -> None:
    """400 unless `aliases` can be `key`'s: valid entry keys, not the key, none twice, few."""
    if len(aliases) > MAX_ALIASES:
        raise InvalidField(
            f"An entry has at most {MAX_ALIASES} aliases. Key = {key}", key=key, field="link"
        )
    for position, alias in enumerate(aliases):
        try:
            validate_entry_key(alias)
        except FeedstoreError as e:
            raise InvalidField(
                f"Alias is not a key an entry can have: {alias}", key=key, field="link"
            ) from e
        if alias == key:
            raise InvalidField(
                f"An entry can't be its own alias. Key = {key}", key=key, field="link"
            )
        if alias in aliases[:position]:
            raise InvalidField(f"Alias is given twice: {alias}", key=key, field="link")


def adding(aliases: Iterable[str]) -> Callable[[Fields, Schema | None], Fields]:
    """A patcher that adds alternate links for `aliases` (PUT ?_addalias); present ones stay."""
    wanted = list(aliases)

    def apply(stored: Fields, schema: Schema | None) -> Fields:
        present = set(aliases_of(stored))
        new = [{_HREF: alias, _REL: REL} for alias in wanted if alias not in present]
        return {**stored, "link": [*stored.get("link", []), *new]}

    return apply


def removing(aliases: Iterable[str]) -> Callable[[Fields, Schema | None], Fields]:
    """A patcher that drops the alternate links of `aliases` (?_removealias, DELETE via one)."""
    unwanted = set(aliases)

    def apply(stored: Fields, schema: Schema | None) -> Fields:
        links = [
            link
            for link in stored.get("link", [])
            if not (link.get(_REL) == REL and link.get(_HREF) in unwanted)
        ]
        return {**stored, "link": links}

    return apply


def seen_through(document: Mapping[str, Any], alias: str) -> dict[str, Any]:
    """The entry as read through one of its aliases: the self link is the alias."""
    links = [
        {**link, _HREF: alias} if isinstance(link, Mapping) and link.get(_REL) == "self" else link
        for link in document.get("link", [])
    ]
    return {**document, "link": links}
