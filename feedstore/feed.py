"""Reading feeds: a Query run over one parent's children, the cheapest way the data allows.

Plans, in the order they are chosen:
- no filter, no sort: the children in key order, one page (O(log n + page));
- sort on an indexed field: walk its index in order, narrowed by a filter on the same field;
- an `eq` filter (AND group) on an indexed field: walk that value's index range, in key order;
- any other filter: scan the children in key order;
- sort on a field without an index: read every child (at most the fetch limit) and sort.
Scans and walks examine at most `fetch_limit` children per request; stopping there before the
page is full makes the page partial (206), with a cursor to go on.

With auth on, the children a caller can't read are one more, implicit filter (`hidden`, from
access.py): skipped as non-matching children are, so pages stay full and the fetch limit and
206 apply as to any filter; an unfiltered count subtracts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from feedstore import codec_json
from feedstore.access import ChildFilter, entry_key
from feedstore.cursor import Position
from feedstore.errors import InvalidOption
from feedstore.index import encode_text, encode_value, indexed_fields, key_of
from feedstore.query import Filter, Matcher, Query, sort_value
from feedstore.schema import Schema
from feedstore.store import Store

BATCH = 500
# Which filters can bound an index walk, and the ZRANGEBYLEX bounds each gives (value encoded).
_LOW = {"eq": ("[", b"\x00"), "ge": ("[", b"\x00"), "gt": ("(", b"\x01"), "fm": ("[", b"")}
_HIGH = {"eq": ("(", b"\x01"), "le": ("(", b"\x01"), "lt": ("(", b"\x00"), "fm": ("(", b"\xff")}


@dataclass
class Page:
    """Matching children (stored JSON), where the next page starts, whether it is partial, and
    how many children were examined to find them."""

    documents: list[bytes]
    next: Position | None = None
    partial: bool = False
    count: int = 0
    examined: int = 0
    seq: str | None = None  # the change feed's sequence before the page was read (`follow`)


@dataclass(frozen=True)
class _Walk:
    """One index to walk: its Redis key, its bounds, its direction."""

    name: str
    low: bytes
    high: bytes
    descending: bool


class FeedReader:
    """Runs queries for one request against a Store, within the fetch limit."""

    def __init__(
        self,
        store: Store,
        schema: Schema | None,
        fetch_limit: int,
        hidden: ChildFilter | None = None,
    ) -> None:
        self.store = store
        self.hidden = hidden
        self.schema = schema
        self.fetch_limit = fetch_limit
        self.indexed = {".".join(path) for path in indexed_fields(schema)}

    def page(self, parent: str, query: Query, after: Position | None, follow: bool = False) -> Page:
        """Up to `query.limit` matching children after `after`, in the query's order; with
        `follow`, the change feed's sequence read before them (list then follow, API.md §18)."""
        if not query.filtered and query.sort is None and self.hidden is None:
            start, wanted = after.key if after else None, query.limit + 1
            if follow:
                keys, seq = self.store.child_keys_and_seq(parent, start, wanted)
            else:
                keys, seq = self.store.child_keys(parent, start, wanted), None
            more = len(keys) > query.limit
            keys = keys[: query.limit]
            documents = [raw for raw in self.store.documents(keys) if raw is not None]
            return Page(
                documents,
                Position(keys[-1]) if more and keys else None,
                examined=len(keys),
                seq=seq,
            )
        seq = self.store.feed_seq(parent) if follow else None
        if query.sort is not None and query.sort.field not in self._indexed(parent):
            page = self._sorted_in_memory(parent, query, after)
        else:
            candidates, matches = self._plan(parent, query, after, query.limit + 1)
            page = self._collect(candidates, matches, query.limit)
        page.seq = seq
        return page

    def count(self, parent: str, query: Query, after: Position | None) -> Page:
        """How many children match (`?c`); partial when the fetch limit stopped the count."""
        if not query.filtered:
            hidden = self.hidden.hidden_count() if self.hidden is not None else 0
            return Page([], count=self.store.count(parent) - hidden)
        candidates, matches = self._plan(parent, query, after, BATCH)
        page = self._collect(candidates, matches, None)
        page.count, page.documents = len(page.documents), []
        return page

    def _indexed(self, parent: str) -> set[str]:
        """The fields whose indexes list `parent`'s children (none of a parent whose children
        are partitions of their own on a cluster: partitions.py)."""
        return self.indexed if self.store.indexes_children(parent) else set()

    # -- plans ------------------------------------------------------------------------------

    def _plan(
        self, parent: str, query: Query, after: Position | None, first_batch: int
    ) -> tuple[Iterator[tuple[Position, bytes | None]], Matcher | None]:
        """The candidates to examine, and the matcher for what the index doesn't settle."""
        walk, served = self._index_walk(parent, query)
        if walk is None:
            candidates = self._scan(parent, after)
        else:
            candidates = self._walk(walk, after, first_batch)
        rest = replace(query, filters=[f for f in query.filters if f not in served])
        return candidates, (Matcher(rest, self.schema) if rest.filtered else None)

    def _index_walk(self, parent: str, query: Query) -> tuple[_Walk | None, list[Filter]]:
        """The index that serves this query, if one does, and the filters its bounds settle."""
        if not self.store.indexes_children(parent):
            return None, []
        if query.sort is not None:
            bounds = [
                f
                for f in query.filters
                if f.field == query.sort.field and (f.op in _LOW or f.op in _HIGH)
            ][:1]
            return self._walk_of(parent, query.sort.field, bounds, query.sort.descending)
        for condition in query.filters:
            if condition.op == "eq" and condition.field in self.indexed:
                return self._walk_of(parent, condition.field, [condition], False)
        return None, []

    def _walk_of(
        self, parent: str, field: str, bounds: list[Filter], descending: bool
    ) -> tuple[_Walk, list[Filter]]:
        low, high = b"-", b"+"
        served: list[Filter] = []
        for condition in bounds:
            declared = self.schema.type_of(condition.path) if self.schema else None
            if condition.op == "fm" and declared != "string":
                continue  # a prefix of a number's text is no range of numbers
            encoded = encode_text(condition.value, declared)
            if encoded is None:  # a number filter that isn't a number: nothing can match
                name = self.store.keys.index_key(parent, field)
                return _Walk(name, b"+", b"-", descending), [condition]
            if condition.op in _LOW:
                bracket, suffix = _LOW[condition.op]
                low = bracket.encode() + encoded + suffix
            if condition.op in _HIGH:
                bracket, suffix = _HIGH[condition.op]
                high = bracket.encode() + encoded + suffix
            if condition.op in _LOW or condition.op in _HIGH:
                served.append(condition)
        return _Walk(self.store.keys.index_key(parent, field), low, high, descending), served

    def _scan(self, parent: str, after: Position | None) -> Iterator[tuple[Position, bytes | None]]:
        last = after.key if after else None
        while True:
            keys = self.store.child_keys(parent, last, BATCH)
            yield from zip(map(Position, keys), self._readable(keys), strict=True)
            if len(keys) < BATCH:
                return
            last = keys[-1]

    def _walk(
        self, walk: _Walk, after: Position | None, batch: int
    ) -> Iterator[tuple[Position, bytes | None]]:
        """Index members in order; the first batch is a page's worth, later ones BATCH."""
        low, high = walk.low, walk.high
        while True:
            if after is not None and after.member is not None:
                if walk.descending:
                    high = b"(" + after.member
                else:
                    low = b"(" + after.member
            found = self.store.index_range(walk.name, low, high, batch, walk.descending)
            keys = [key_of(member) for member in found]
            positions = [Position(key, member) for key, member in zip(keys, found, strict=True)]
            yield from zip(positions, self._readable(keys), strict=True)
            if len(found) < batch:
                return
            after, batch = positions[-1], BATCH

    def _readable(self, keys: list[str]) -> list[bytes | None]:
        """The stored JSON of `keys`, None for those gone and those hidden from the caller."""
        documents = self.store.documents(keys)
        if self.hidden is None or not keys:
            return documents
        aliases = {}
        for key, raw in zip(keys, documents, strict=True):
            if raw is not None and (target := entry_key(raw, key)) != key:
                aliases[key] = target
        hidden = self.hidden.hidden(keys, aliases)
        return [None if key in hidden else raw for key, raw in zip(keys, documents, strict=True)]

    def _collect(
        self,
        candidates: Iterator[tuple[Position, bytes | None]],
        matches: Callable[[dict[str, Any]], bool] | None,
        limit: int | None,
    ) -> Page:
        """Take matching candidates until the page is full or the fetch limit is reached.

        With no matcher (the index settled every filter) documents are taken without decoding.
        """
        documents: list[bytes] = []
        last: Position | None = None
        examined = 0
        for examined, (position, raw) in enumerate(candidates, start=1):
            last = position
            if raw is not None and (matches is None or matches(codec_json.loads_stored(raw))):
                documents.append(raw)
                if limit is not None and len(documents) == limit:
                    more = next(candidates, None) is not None
                    return Page(documents, position if more else None, examined=examined)
            if examined >= self.fetch_limit:
                more = next(candidates, None) is not None
                return Page(documents, last if more else None, partial=more, examined=examined)
        return Page(documents, examined=examined)

    def _sorted_in_memory(self, parent: str, query: Query, after: Position | None) -> Page:
        """Sort on a field without an index: every child is read, so at most the fetch limit."""
        assert query.sort is not None
        total = self.store.count(parent)
        if total > self.fetch_limit:
            raise InvalidOption(
                f"Sorting {total} children needs an index: declare {query.sort.field} "
                f'"x-index": true in the schema (the fetch limit is {self.fetch_limit}).'
            )
        matches = Matcher(query, self.schema)
        declared = self.schema.type_of(query.sort.path) if self.schema else None
        rows: list[tuple[bytes, bytes]] = []
        examined = 0
        for position, raw in self._scan(parent, None):
            examined += 1
            if raw is None:
                continue
            document = codec_json.loads_stored(raw)
            if matches(document):
                value = encode_value(sort_value(document, query.sort.path, declared))
                # Missing values sort lowest; ties in key order, so positions are total.
                order = (
                    (b"\x00" if value is None else b"\x01" + value)
                    + b"\x00"
                    + position.key.encode()
                )
                rows.append((order, raw))
        rows.sort(reverse=query.sort.descending)
        if after is not None and after.member is not None:
            if query.sort.descending:
                rows = [row for row in rows if row[0] < after.member]
            else:
                rows = [row for row in rows if row[0] > after.member]
        page = rows[: query.limit]
        more = len(rows) > query.limit
        next_position = (
            Position(page[-1][0].rpartition(b"\x00")[2].decode(), page[-1][0]) if more else None
        )
        return Page([raw for _, raw in page], next_position, examined=examined)
