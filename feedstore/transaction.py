"""The write transaction: check every entry of a request against Redis, then write all or none.

`Transaction.run` WATCHes every key the request touches (the entries, the parents inserts need, the
children of deletes), reads them, checks every entry and collects all failures, builds and validates
the new documents, and only then writes everything (documents, revisions, children, indexes) in one
MULTI/EXEC. A failed check raises at once and is never retried; a WatchError (a writer slipped in)
propagates to `Store.write`, which runs the whole check again on the newest state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from redis.client import Pipeline

from feedstore import codec_json
from feedstore.entry import (
    ROOT,
    document_fields,
    merge_top_level,
    parent_of,
    server_authors,
    stored_document,
    timestamp,
)
from feedstore.errors import (
    DuplicatedKey,
    DuplicatedKeys,
    FeedstoreError,
    HasChildren,
    NotFound,
    ParentRequired,
    PreconditionFailed,
    RevisionConflict,
    TreeTooLarge,
    collect,
)
from feedstore.index import indexed_fields, members
from feedstore.keys import (
    SCHEMA_VERSION_KEY,
    children_key,
    document_key,
    index_key,
    revision_key,
)
from feedstore.schema import Schema

Fields = dict[str, Any]
Patcher = Callable[[Fields, Schema | None], Fields]


class Action(Enum):
    CREATE = "create"  # POST: the key must not exist
    PUT = "put"  # PUT: the table of API.md §3.2
    PATCH = "patch"  # PATCH: the entry must exist, unless `upsert`
    DELETE = "delete"


@dataclass
class Write:
    """One entry of a write request, with every precondition it carries.

    `revision` is the revision the client read (from the id or `?r=`), None for a forced write;
    `if_match` is a set of revisions or "*"; `patcher` (PATCH only) makes the new fields from
    the stored ones, inside the transaction.
    """

    action: Action
    key: str
    fields: Fields = field(default_factory=dict)
    revision: int | None = None
    if_match: frozenset[int] | Literal["*"] | None = None
    if_none_match: bool = False
    recursive: bool = False
    upsert: bool = False
    patcher: Patcher | None = None
    index: int = 0


@dataclass(frozen=True)
class Written:
    """What a write did to one key: its new revision and document (None when deleted)."""

    key: str
    revision: int
    document: Mapping[str, Any] | None
    created: bool = False


@dataclass
class _State:
    """What the transaction read of one target key."""

    raw: bytes | None
    revision: int

    @property
    def exists(self) -> bool:
        return self.raw is not None

    @functools.cached_property
    def document(self) -> dict[str, Any] | None:
        return codec_json.loads_stored(self.raw) if self.raw is not None else None


class Transaction:
    """One attempt at a write request, on a pipeline that is about to WATCH."""

    def __init__(
        self,
        pipe: Pipeline,
        *,
        principal: str,
        max_subtree: int,
        schema_at: Callable[[bytes | None], Schema | None],
    ) -> None:
        self.pipe = pipe
        self.principal = principal
        self.max_subtree = max_subtree
        self.schema_at = schema_at

    def run(self, writes: Sequence[Write]) -> list[Written]:
        """Check every write against what is stored, then write all of them in one MULTI/EXEC."""
        pipe = self.pipe
        keys = [w.key for w in writes]
        pipe.watch(*map(document_key, keys))
        raw = _read(
            pipe, "MGET", *map(document_key, keys), *map(revision_key, keys), SCHEMA_VERSION_KEY
        )
        states = {key: _State(raw[i], int(raw[len(keys) + i] or 0)) for i, key in enumerate(keys)}
        schema = self.schema_at(raw[-1])
        subtrees = {
            w.key: self._watch_subtree(w.key, w.recursive)
            for w in writes
            if w.action is Action.DELETE and states[w.key].exists
        }
        missing_parents = self._watch_parents(writes, states)

        now = timestamp()
        documents: dict[str, dict[str, Any]] = {}
        errors: list[FeedstoreError] = []
        for w in writes:
            try:
                _check(w, states[w.key], missing_parents, subtrees.get(w.key, []))
                if w.action is not Action.DELETE:
                    documents[w.key] = self._new_document(w, states[w.key], schema, now)
            except FeedstoreError as error:
                errors.append(error)
        collect(errors)

        fields = indexed_fields(schema)
        written: list[Written] = []
        stored: dict[str, bytes | int] = {}  # documents and revisions, for one MSET
        children: dict[str, dict[str, int]] = {}  # the new keys of each parent, for one ZADD
        pipe.multi()
        for w in writes:
            state = states[w.key]
            _update_indexes(pipe, w.key, state.document, documents.get(w.key), fields)
            if w.action is Action.DELETE:
                for key in [w.key, *subtrees[w.key]]:
                    pipe.delete(document_key(key), children_key(key))
                    for path in fields:
                        pipe.delete(index_key(key, ".".join(path)))
                    pipe.zrem(children_key(parent_of(key)), key)
                written.append(Written(w.key, state.revision, None))
                continue
            revision = state.revision + 1
            stored[document_key(w.key)] = codec_json.dumps_document(documents[w.key])
            stored[revision_key(w.key)] = revision
            if not state.exists:
                children.setdefault(children_key(parent_of(w.key)), {})[w.key] = 0
            written.append(Written(w.key, revision, documents[w.key], created=not state.exists))
        # The same writes as a SET, SET and ZADD per entry, in a few commands, so a request of
        # many entries (a bulk's chunk) costs little beyond its documents. Keys are unique in a
        # request and a deleted key can't gain a child in it, so the order doesn't matter.
        if stored:
            pipe.mset(stored)
        for name, added in children.items():
            pipe.zadd(name, added)
        pipe.execute()
        return written

    def _new_document(
        self, w: Write, state: _State, schema: Schema | None, now: str
    ) -> dict[str, Any]:
        """The document a write stores: the new fields, checked against the schema."""
        stored = state.document
        if w.patcher is not None:
            base = document_fields(stored) if stored else (schema.defaults() if schema else {})
            fields = w.patcher(base, schema)
        else:
            fields = merge_top_level(document_fields(stored) if stored else None, w.fields)
        if schema is not None:
            schema.validate(fields, w.key)
        created_by, _ = server_authors(stored) if stored else (self.principal, None)
        return stored_document(
            w.key, state.revision + 1, fields,
            published=stored["published"] if stored else now, updated=now,
            created_by=created_by, updated_by=self.principal if stored else None,
        )  # fmt: skip

    def _watch_parents(self, writes: Sequence[Write], states: Mapping[str, _State]) -> set[str]:
        """WATCH the parents that inserts need and return those that are missing."""
        pipe = self.pipe
        written = {w.key for w in writes if w.action is not Action.DELETE}
        deleted = {w.key for w in writes if w.action is Action.DELETE}
        parents = {
            parent_of(w.key)
            for w in writes
            if w.action is not Action.DELETE and not states[w.key].exists
        }
        # A parent written in this same request is there when the child is, one being deleted isn't.
        stored_parents = sorted(parents - written - {ROOT})
        missing = parents & deleted
        if stored_parents:
            pipe.watch(*(document_key(key) for key in stored_parents))
            if _read(pipe, "EXISTS", *map(document_key, stored_parents)) < len(stored_parents):
                missing |= {
                    key for key in stored_parents if not _read(pipe, "EXISTS", document_key(key))
                }
        return missing

    def _watch_subtree(self, key: str, recursive: bool) -> list[str]:
        """WATCH the children of a key being deleted; with `recursive`, list its whole subtree."""
        pipe = self.pipe
        pipe.watch(children_key(key))
        if not recursive:
            return [child.decode() for child in _read(pipe, "ZRANGE", children_key(key), 0, 0)]
        subtree: list[str] = []
        level = [key]
        while level:
            pipe.watch(*(children_key(node) for node in level))
            level = [
                child.decode()
                for node in level
                for child in _read(pipe, "ZRANGE", children_key(node), 0, -1)
            ]
            subtree.extend(level)
            if len(subtree) + 1 > self.max_subtree:
                raise TreeTooLarge(key, len(subtree) + 1, self.max_subtree)
        return subtree


def _update_indexes(
    pipe: Pipeline,
    key: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    fields: list[tuple[str, ...]],
) -> None:
    """Queue the index changes of one entry's write (inside the write's MULTI)."""
    if not fields:
        return
    before, after = members(old, key, fields), members(new, key, fields)
    parent = parent_of(key)
    for path in fields:
        name = index_key(parent, ".".join(path))
        if path in before and before[path] != after.get(path):
            pipe.zrem(name, before[path])
        if path in after and after[path] != before.get(path):
            pipe.zadd(name, {after[path]: 0})


def _read(pipe: Pipeline, *command: Any) -> Any:
    """Run a read at once on a pipeline that is WATCHing (before MULTI nothing is buffered)."""
    return pipe.execute_command(*command)


def reject_duplicates(writes: Sequence[Write]) -> None:
    seen: set[str] = set()
    for w in writes:
        if w.key in seen:
            raise DuplicatedKeys(w.key)
        seen.add(w.key)


def _check(w: Write, state: _State, missing_parents: set[str], subtree: list[str]) -> None:
    """Raise the error one write meets against the stored state, if any (API.md §3, §5)."""
    if w.if_none_match and state.exists:
        raise PreconditionFailed(w.key, state.document)
    if w.if_match is not None and not (
        state.exists and (w.if_match == "*" or state.revision in w.if_match)
    ):
        raise PreconditionFailed(w.key, state.document)
    if w.action is Action.CREATE and state.exists:
        raise DuplicatedKey(w.key, state.document)
    if w.action is Action.PATCH and not state.exists and not w.upsert:
        raise NotFound(w.key)
    if w.action is Action.DELETE:
        if not state.exists:
            raise NotFound(w.key)
        if not w.recursive and subtree:
            raise HasChildren(w.key)
    if w.revision == 0 and state.exists:
        raise DuplicatedKey(w.key, state.document)
    if w.revision and not state.exists:
        raise NotFound(w.key)
    if w.revision and w.revision != state.revision:
        raise RevisionConflict(w.key, w.revision, state.document)
    if not state.exists and w.action is not Action.DELETE and parent_of(w.key) in missing_parents:
        raise ParentRequired(w.key, parent_of(w.key))
