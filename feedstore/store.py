"""Store(redis): entries in Redis, read by key, by children and by index; the schema; counters.

Every write goes through `Store.write`, which runs a Transaction (transaction.py) and re-runs it, a
bounded number of times, when another writer slips in between its WATCH and EXEC. The key scheme
is in keys.py. Every method raises FeedstoreError subclasses, never redis errors.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar, cast

import redis

from feedstore import codec_json
from feedstore.entry import ROOT, parent_of
from feedstore.errors import InvalidOption, ServiceUnavailable
from feedstore.index import indexed_fields, members
from feedstore.keys import (
    DOCUMENT_PREFIX,
    INDEX_PREFIX,
    SCHEMA_KEY,
    SCHEMA_VERSION_KEY,
    SECRET_KEY,
    children_key,
    counter_key,
    document_key,
    index_key,
    sequence_key,
)
from feedstore.schema import Schema
from feedstore.transaction import (
    Action,
    Fields,
    Patcher,
    Transaction,
    Write,
    Written,
    reject_duplicates,
)

__all__ = ["Action", "Fields", "Patcher", "Store", "Write", "Written"]

P = ParamSpec("P")
T = TypeVar("T")


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
        raw = cast(bytes | None, self.redis.get(document_key(key)))
        return None if raw is None else (codec_json.stored_revision(raw, key), raw)

    @_unavailable_on_redis_error
    def child_keys(self, key: str, after: str | None, count: int) -> list[str]:
        """Up to `count` child keys of `key` in key order, after the key `after`."""
        start = b"(" + after.encode() if after is not None else b"-"
        found = cast(
            list[bytes], self.redis.zrangebylex(children_key(key), start, b"+", start=0, num=count)
        )
        return [child.decode() for child in found]

    @_unavailable_on_redis_error
    def documents(self, keys: Sequence[str]) -> list[bytes | None]:
        """The stored JSON of each key (None where the entry is gone)."""
        if not keys:
            return []
        return cast(list[bytes | None], self.redis.mget([document_key(key) for key in keys]))

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
        """Add to the counter of `key` (vte.cx `_addids`) and return its new value.

        Raises InvalidOption, leaving the counter as it was, when the sum would pass Redis's
        signed 64-bit range (INCRBY refuses it atomically).
        """
        try:
            return int(self.redis.incrby(counter_key(key), amount))
        except redis.ResponseError as e:
            if "overflow" not in str(e):
                raise
            raise InvalidOption(f"The counter of {key} would overflow: _addids={amount}") from e

    @_unavailable_on_redis_error
    def get_ids(self, key: str) -> int:
        return int(cast(bytes | None, self.redis.get(counter_key(key))) or 0)

    @_unavailable_on_redis_error
    def set_ids(self, key: str, value: int) -> int:
        self.redis.set(counter_key(key), value)
        return value

    @_unavailable_on_redis_error
    def count(self, key: str) -> int:
        """How many children `key` has."""
        return int(self.redis.zcard(children_key(key)))

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
        for name in self.redis.scan_iter(match=INDEX_PREFIX + "*", count=1000):
            self.redis.delete(name)
        fields = indexed_fields(schema)
        if not fields:
            return 0
        read = 0
        batch: list[str] = []
        for name in self.redis.scan_iter(match=DOCUMENT_PREFIX + "*", count=1000):
            batch.append(name.decode()[len(DOCUMENT_PREFIX) :])
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
            last = int(self.redis.incrby(sequence_key(parent), wanted))
            candidates = [f"{prefix}/{number}" for number in range(last - wanted + 1, last + 1)]
            with self.redis.pipeline(transaction=False) as pipe:
                for key in candidates:
                    pipe.exists(document_key(key))
                taken = pipe.execute()
            keys += [key for key, exists in zip(candidates, taken, strict=True) if not exists]
        return keys

    @_unavailable_on_redis_error
    def write(self, writes: Sequence[Write]) -> list[Written]:
        """Check and apply every write atomically: all of them, or none and a FeedstoreError."""
        reject_duplicates(writes)
        for attempt in range(self.retries):
            with self.redis.pipeline(transaction=True) as pipe:
                try:
                    transaction = Transaction(
                        pipe,
                        principal=self.principal,
                        max_subtree=self.max_subtree,
                        schema_at=self._schema_at,
                    )
                    return transaction.run(writes)
                except redis.WatchError:
                    if attempt >= 2:
                        time.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
        raise ServiceUnavailable("Too many concurrent writes. Please retry.")
