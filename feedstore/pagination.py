"""Paging by number, as vte.cx's pagination index (API.md §4.10).

`?_pagination=<from>,<to>` reads pages `from` to `to` of a query and keeps, in a Redis list, the
cursor that ends each page (the list's `LAST` marks the end of the feed); `?n=<k>` then reads page
k from the cursor that ends page k - 1. An index belongs to a parent, the query's filters and
sort, and its page size, and lives `pagination_ttl` seconds after it was last built or read.
Pages are ordinary feed pages, so page k is exactly what `?f&p=<cursor of page k - 1>` returns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from feedstore import cursor
from feedstore.cursor import Position
from feedstore.errors import InvalidOption
from feedstore.feed import FeedReader
from feedstore.keys import page_index_key
from feedstore.query import Query
from feedstore.store import Store

LAST = ""  # the list's end: the page before it is the feed's last
MAX_PAGE = 100_000
_NUMBER = re.compile(r"0*([1-9][0-9]{0,5})")


@dataclass(frozen=True)
class PageRange:
    """The pages a `_pagination` request indexes, `first` to `last` (1-based, inclusive)."""

    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> PageRange:
        """`<to>` (pages 1 to it) or `<from>,<to>`; 400 naming the value otherwise."""
        first, last = check_range_syntax(text)
        if first > last:
            raise InvalidOption(f"Pagination must not end before it starts: _pagination={text}")
        return cls(first, last)


def check_range_syntax(text: str) -> tuple[int, int]:
    """The numbers of `_pagination=<to>` or `<from>,<to>`, each 1 to MAX_PAGE, in any order."""
    first, _, last = text.rpartition(",") if "," in text else ("1", "", text)
    numbers = [_number(part) for part in (first, last)]
    if numbers[0] is None or numbers[1] is None:
        raise InvalidOption(
            f"Pagination must be <to> or <from>,<to>, pages from 1 to {MAX_PAGE}: "
            f"_pagination={text}"
        )
    return numbers[0], numbers[1]


def check_options(args: Mapping[str, str]) -> None:
    """`_pagination` and `n` syntax, in every read mode, as query.check_options does for `l`."""
    if "_pagination" in args:
        check_range_syntax(args["_pagination"])
    if "n" in args:
        page_number(args["n"])


def page_number(text: str) -> int:
    """The page `n=<k>` asks for; 400 naming the value when it isn't 1 to MAX_PAGE."""
    number = _number(text)
    if number is None:
        raise InvalidOption(f"Page number must be a number from 1 to {MAX_PAGE}: n={text}")
    return number


def _number(text: str) -> int | None:
    match = _NUMBER.fullmatch(text)
    return int(match[1]) if match and int(match[1]) <= MAX_PAGE else None


@dataclass(frozen=True)
class Indexed:
    """What a `_pagination` request did (vte.cx's answer: title, subtitle, `link rel=next`)."""

    pages: int  # the last page number the index knows (0 when the query matches nothing)
    entries: int  # entries in the pages this request read
    more: bool  # pages follow the last one indexed
    partial: bool  # the fetch limit stopped the request before its last page


class PageIndex:
    """The pagination index of one query: the cursors that end its pages, in Redis."""

    def __init__(
        self,
        store: Store,
        reader: FeedReader,
        parent: str,
        query: Query,
        scope: str,
        ttl: int,
        sealed: bool = False,
    ) -> None:
        self.store = store
        self.sealed = sealed  # cursors encrypted (auth on, cursor.py)
        self.reader = reader
        self.parent = parent
        self.query = query
        self.scope = scope  # the cursors' scope: parent, filters and sort
        self.ttl = ttl
        self.name = page_index_key(f"{scope}\nl={query.limit}")

    def build(self, pages: PageRange) -> Indexed:
        """Read pages `pages.first` to `pages.last` and keep their cursors.

        Pages before `first` must be indexed already (400 otherwise). The pages from `first` on
        are replaced in one transaction, so concurrent builds of one query never mix. The whole
        request examines at most the fetch limit of children, plus the page that reaches it;
        then it stops early (`partial`), and the client goes on from the next page.
        """
        index = self.store.page_index(self.name, self.ttl)
        after = self._after_page(index, pages.first - 1)
        secret = self.store.secret()
        cursors: list[str] = []
        entries = examined = 0
        more, partial = True, False
        for number in range(pages.first, pages.last + 1):
            page = self.reader.page(self.parent, self.query, after)
            entries += len(page.documents)
            examined += page.examined
            if page.next is None:
                cursors.append(LAST)
                more = False
                break
            cursors.append(cursor.encode(page.next, self.scope, secret, self.sealed))
            after = page.next
            if examined >= self.reader.fetch_limit and number < pages.last:
                partial = True
                break
        self.store.save_page_index(self.name, pages.first - 1, cursors, self.ttl)
        known = pages.first - 1 + len(cursors)
        if pages.first == 1 and not more and entries == 0:
            known = 0  # vte.cx: nothing matches, no page
        return Indexed(known, entries, more, partial)

    def start(self, number: int) -> Position | None:
        """Where page `number` starts (None: at the beginning). The index must reach the page:
        400 otherwise, with vte.cx's messages."""
        index = self.store.page_index(self.name, self.ttl)
        if not index or number > len(index):
            if index and index[-1] == LAST:
                raise InvalidOption("There is no designated page.")
            raise InvalidOption("Please make a pagination index in advance.")
        return self._after_page(index, number - 1)

    def _after_page(self, index: list[str], number: int) -> Position | None:
        """The position after page `number` (None for page 0: the beginning)."""
        if number == 0:
            return None
        if len(index) < number or index[number - 1] == LAST:
            specified = number + 1
            if index and index[-1] == LAST:
                raise InvalidOption(
                    "The entry of the specified page does not exist. "
                    f"Specified page number = {specified}"
                )
            raise InvalidOption(
                "Please make a previous pagination index in advance. "
                f"Specified page number = {specified}"
            )
        secret = self.store.existing_secret()
        return cursor.decode(index[number - 1], self.scope, secret, self.sealed)
