"""Store(redis): the key scheme, the atomic revision check-and-write, and child listings.

Redis keys (all bytes; documents are orjson):
    fs:d:<key>   the stored document, present while the entry exists
    fs:r:<key>   the last revision written; kept after a delete, so a re-insert continues from it
    fs:c:<key>   sorted set of the keys of <key>'s children (score 0: lexicographic order)
    fs:n:<key>   the counter that numbers children POSTed without a self link
    fs:schema    the field schema in force (JSON), shared by every worker
    fs:schema:v  its version, bumped on every change, read with every write to stay current
    fs:i:<field>:<key>  the index of <key>'s children on an `x-index` field (see index.py)
    fs:ids:<key> the vte.cx counter of <key> (`_addids`, `_getids`, `_setids`)
    fs:secret    the key that signs feed cursors, made once, shared by every worker

Every write request goes through `Store.write`: WATCH every key it touches, read them, check every
entry (collecting all failures), then MULTI, write all, EXEC. A failed check raises at once and is
never retried; a WatchError (another writer slipped in) re-runs the whole check, a bounded number of
times, so a stale revision becomes a 409 and a forced write applies to the newest state.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, ParamSpec, TypeVar, cast

import redis
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
    ServiceUnavailable,
    TreeTooLarge,
    collect,
)
from feedstore.index import index_key, indexed_fields, members
from feedstore.schema import Schema

Fields = dict[str, Any]
Patcher = Callable[[Fields, Schema | None], Fields]
SCHEMA_KEY = "fs:schema"
SCHEMA_VERSION_KEY = "fs:schema:v"
SECRET_KEY = "fs:secret"
P = ParamSpec("P")
T = TypeVar("T")


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


@dataclass(frozen=True)
class Page:
    """One page of a child listing; `last` is the key to continue after, when more remain."""

    documents: list[bytes]
    last: str | None


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


def _document_key(key: str) -> str:
    return f"fs:d:{key}"


def _revision_key(key: str) -> str:
    return f"fs:r:{key}"


def _children_key(key: str) -> str:
    return f"fs:c:{key}"


def _sequence_key(key: str) -> str:
    return f"fs:n:{key}"


def _counter_key(key: str) -> str:
    return f"fs:ids:{key}"


def _unavailable_on_redis_error(method: Callable[P, T]) -> Callable[P, T]:
    """Rewrap redis's connection failures as 503, at the one boundary that calls redis."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise ServiceUnavailable("Redis is unavailable. Please retry.") from e

    return wrapper


class Store:
    """Entries in Redis. Every method raises FeedstoreError subclasses, never redis errors."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        retries: int = 200,
        max_subtree: int = 1000,
        principal: str = "anonymous",
    ) -> None:
        self.redis = client
        self.retries = retries
        self.max_subtree = max_subtree
        self.principal = principal
        self._schema: tuple[bytes | None, Schema | None] = (None, None)
        self._secret: bytes | None = None

    # -- reading ------------------------------------------------------------------------------

    @_unavailable_on_redis_error
    def get(self, key: str) -> tuple[int, bytes] | None:
        """The revision and stored JSON of `key`, or None when it has no entry."""
        revision, raw = cast(
            list[bytes | None], self.redis.mget(_revision_key(key), _document_key(key))
        )
        return None if raw is None or revision is None else (int(revision), raw)

    @_unavailable_on_redis_error
    def children(self, key: str, limit: int, after: str | None = None) -> Page:
        """Up to `limit` children of `key` in key order, starting after the key `after`."""
        start = b"(" + after.encode() if after is not None else b"-"
        keys = cast(
            list[bytes],
            self.redis.zrangebylex(_children_key(key), start, b"+", start=0, num=limit + 1),
        )
        more = len(keys) > limit
        keys = keys[:limit]
        if not keys:
            return Page([], None)
        raws = cast(list[bytes | None], self.redis.mget([b"fs:d:" + child for child in keys]))
        documents = [raw for raw in raws if raw is not None]
        return Page(documents, keys[-1].decode() if more else None)

    @_unavailable_on_redis_error
    def child_keys(self, key: str, after: str | None, count: int) -> list[str]:
        """Up to `count` child keys of `key` in key order, after the key `after`."""
        start = b"(" + after.encode() if after is not None else b"-"
        found = cast(
            list[bytes], self.redis.zrangebylex(_children_key(key), start, b"+", start=0, num=count)
        )
        return [child.decode() for child in found]

    @_unavailable_on_redis_error
    def documents(self, keys: Sequence[str]) -> list[bytes | None]:
        """The stored JSON of each key (None where the entry is gone)."""
        if not keys:
            return []
        return cast(list[bytes | None], self.redis.mget([_document_key(key) for key in keys]))

    @_unavailable_on_redis_error
    def index_range(
        self, name: str, low: bytes, high: bytes, count: int, descending: bool = False
    ) -> list[bytes]:
        """Up to `count` members of an index between ZRANGEBYLEX bounds, in order."""
        if descending:
            found = self.redis.zrevrangebylex(name, high, low, start=0, num=count)
        else:
            found = self.redis.zrangebylex(name, low, high, start=0, num=count)
        return cast(list[bytes], found)

    @_unavailable_on_redis_error
    def secret(self) -> bytes:
        """The key that signs cursors: made by the first worker that issues one, then shared."""
        if self._secret is None:
            self.redis.set(SECRET_KEY, os.urandom(32), nx=True)
            self._secret = cast(bytes, self.redis.get(SECRET_KEY))
        return self._secret

    @_unavailable_on_redis_error
    def existing_secret(self) -> bytes | None:
        """The cursor key if one was made; reading a cursor must not create it (reads change
        nothing), and with no key yet no cursor can be valid."""
        if self._secret is None:
            self._secret = cast(bytes | None, self.redis.get(SECRET_KEY))
        return self._secret

    @_unavailable_on_redis_error
    def add_ids(self, key: str, amount: int) -> int:
        """Add to the counter of `key` (vte.cx `_addids`) and return its new value."""
        return int(self.redis.incrby(_counter_key(key), amount))

    @_unavailable_on_redis_error
    def get_ids(self, key: str) -> int:
        return int(cast(bytes | None, self.redis.get(_counter_key(key))) or 0)

    @_unavailable_on_redis_error
    def set_ids(self, key: str, value: int) -> int:
        self.redis.set(_counter_key(key), value)
        return value

    @_unavailable_on_redis_error
    def count(self, key: str) -> int:
        """How many children `key` has."""
        return int(self.redis.zcard(_children_key(key)))

    @_unavailable_on_redis_error
    def ping(self) -> bool:
        return bool(self.redis.ping())

    # -- the schema -----------------------------------------------------------------------------

    @_unavailable_on_redis_error
    def schema_document(self) -> dict[str, Any] | None:
        """The schema in force, as it was set, or None."""
        raw = cast(bytes | None, self.redis.get(SCHEMA_KEY))
        return codec_json.loads_stored(raw) if raw is not None else None

    @_unavailable_on_redis_error
    def schema(self) -> Schema | None:
        """The compiled schema in force (compiled again only when its version changes)."""
        return self._schema_at(cast(bytes | None, self.redis.get(SCHEMA_VERSION_KEY)))

    @_unavailable_on_redis_error
    def set_schema(self, document: Mapping[str, Any] | None) -> None:
        """Check, store and publish a schema to every worker; None removes it."""
        if document is not None:
            Schema(document)
        with self.redis.pipeline(transaction=True) as pipe:
            if document is None:
                pipe.delete(SCHEMA_KEY)
            else:
                pipe.set(SCHEMA_KEY, codec_json.dumps_document(document))
            pipe.incr(SCHEMA_VERSION_KEY)
            pipe.execute()
        self.reindex(Schema(document) if document is not None else None)

    @_unavailable_on_redis_error
    def reindex(self, schema: Schema | None) -> int:
        """Rebuild every field index from the stored entries; return how many entries it read.

        Writes made meanwhile maintain the indexes themselves; this fills in what was stored
        before an index was declared.
        """
        for name in self.redis.scan_iter(match="fs:i:*", count=1000):
            self.redis.delete(name)
        fields = indexed_fields(schema)
        if not fields:
            return 0
        read = 0
        batch: list[str] = []
        for name in self.redis.scan_iter(match="fs:d:*", count=1000):
            batch.append(name.decode()[len("fs:d:") :])
            if len(batch) == 1000:
                read += self._index_batch(batch, fields)
                batch = []
        return read + self._index_batch(batch, fields)

    def _index_batch(self, keys: list[str], fields: list[tuple[str, ...]]) -> int:
        with self.redis.pipeline(transaction=False) as pipe:
            for key, raw in zip(keys, self.documents(keys), strict=True):
                if raw is not None:
                    for path, member in members(codec_json.loads_stored(raw), key, fields).items():
                        pipe.zadd(index_key(parent_of(key), ".".join(path)), {member: 0})
            pipe.execute()
        return len(keys)

    def _schema_at(self, version: bytes | None) -> Schema | None:
        cached_version, schema = self._schema
        if version != cached_version:
            document = self.schema_document()
            schema = Schema(document) if document is not None else None
            self._schema = (version, schema)
        return schema

    # -- writing ------------------------------------------------------------------------------

    @_unavailable_on_redis_error
    def number(self, parent: str, count: int) -> list[str]:
        """Allocate `count` new child keys under `parent` (POST without a self link).

        Numbers taken by entries written at explicit keys are skipped; the write's own check
        still answers 409 if another writer takes a number between this and the write.
        """
        prefix = "" if parent == ROOT else parent
        keys: list[str] = []
        while len(keys) < count:
            wanted = count - len(keys)
            last = int(self.redis.incrby(_sequence_key(parent), wanted))
            candidates = [f"{prefix}/{number}" for number in range(last - wanted + 1, last + 1)]
            with self.redis.pipeline(transaction=False) as pipe:
                for key in candidates:
                    pipe.exists(_document_key(key))
                taken = pipe.execute()
            keys += [key for key, exists in zip(candidates, taken, strict=True) if not exists]
        return keys

    @_unavailable_on_redis_error
    def write(self, writes: Sequence[Write]) -> list[Written]:
        """Check and apply every write atomically: all of them, or none and a FeedstoreError."""
        _reject_duplicates(writes)
        for attempt in range(self.retries):
            with self.redis.pipeline(transaction=True) as pipe:
                try:
                    return self._attempt(pipe, writes)
                except redis.WatchError:
                    if attempt >= 2:
                        time.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
        raise ServiceUnavailable("Too many concurrent writes. Please retry.")

    def _attempt(self, pipe: Pipeline, writes: Sequence[Write]) -> list[Written]:
        keys = [w.key for w in writes]
        pipe.watch(*map(_document_key, keys))
        raw = _read(
            pipe, "MGET", *map(_document_key, keys), *map(_revision_key, keys), SCHEMA_VERSION_KEY
        )
        states = {key: _State(raw[i], int(raw[len(keys) + i] or 0)) for i, key in enumerate(keys)}
        schema = self._schema_at(raw[-1])
        subtrees = {
            w.key: self._watch_subtree(pipe, w.key, w.recursive)
            for w in writes
            if w.action is Action.DELETE and states[w.key].exists
        }
        missing_parents = self._watch_parents(pipe, writes, states)

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
        pipe.multi()
        for w in writes:
            state = states[w.key]
            _update_indexes(pipe, w.key, state.document, documents.get(w.key), fields)
            if w.action is Action.DELETE:
                for key in [w.key, *subtrees[w.key]]:
                    pipe.delete(_document_key(key), _children_key(key))
                    for path in fields:
                        pipe.delete(index_key(key, ".".join(path)))
                    pipe.zrem(_children_key(parent_of(key)), key)
                written.append(Written(w.key, state.revision, None))
                continue
            revision = state.revision + 1
            pipe.set(_document_key(w.key), codec_json.dumps_document(documents[w.key]))
            pipe.set(_revision_key(w.key), revision)
            if not state.exists:
                pipe.zadd(_children_key(parent_of(w.key)), {w.key: 0})
            written.append(Written(w.key, revision, documents[w.key], created=not state.exists))
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

    def _watch_parents(
        self, pipe: Pipeline, writes: Sequence[Write], states: Mapping[str, _State]
    ) -> set[str]:
        """WATCH the parents that inserts need and return those that are missing."""
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
            pipe.watch(*(_document_key(key) for key in stored_parents))
            if _read(pipe, "EXISTS", *map(_document_key, stored_parents)) < len(stored_parents):
                missing |= {
                    key for key in stored_parents if not _read(pipe, "EXISTS", _document_key(key))
                }
        return missing

    def _watch_subtree(self, pipe: Pipeline, key: str, recursive: bool) -> list[str]:
        """WATCH the children of a key being deleted; with `recursive`, list its whole subtree."""
        pipe.watch(_children_key(key))
        if not recursive:
            return [child.decode() for child in _read(pipe, "ZRANGE", _children_key(key), 0, 0)]
        subtree: list[str] = []
        level = [key]
        while level:
            pipe.watch(*(_children_key(node) for node in level))
            level = [
                child.decode()
                for node in level
                for child in _read(pipe, "ZRANGE", _children_key(node), 0, -1)
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


def _reject_duplicates(writes: Sequence[Write]) -> None:
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
