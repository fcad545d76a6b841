"""Store(redis): entries in Redis, read by key, by children and by index; the schema; counters.

Every write goes through `Store.write`, which runs a Transaction (transaction.py) and re-runs it, a
bounded number of times, when another writer slips in between its WATCH and EXEC. The key scheme
is in keys.py. Every method raises FeedstoreError subclasses, never redis errors.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar, cast

import redis
from redis.exceptions import (
    AskError,
    ClusterCrossSlotError,
    ClusterDownError,
    CrossSlotTransactionError,
    MovedError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)

from feedstore import acl, alias, codec_json, history, idempotency, partitions, watch
from feedstore.changes import ChangePage, ChangeStreams, newest
from feedstore.counter_range import CounterRange
from feedstore.credentials import DeferredToken
from feedstore.entry import parent_of
from feedstore.errors import (
    CrossTreeWrite,
    IdempotencyKeyNotAccepted,
    InvalidOption,
    NotReplicated,
    ServiceUnavailable,
)
from feedstore.history import HistoryRules
from feedstore.index import indexed_fields, members
from feedstore.keys import (
    SCHEMA_KEY,
    SCHEMA_VERSION_KEY,
    SECRET_KEY,
    KeyScheme,
    user_groups_key,
)
from feedstore.principal import ANONYMOUS, Principal
from feedstore.schema import Schema
from feedstore.transaction import (
    Action,
    ClusterRules,
    Fields,
    Patcher,
    Transaction,
    Write,
    Written,
    reject_duplicates,
)

__all__ = ["Action", "Fields", "Patcher", "Store", "Write", "Written"]

# What a transaction retries: a writer slipped in (WatchError), or, on a cluster, its slot moved
# or is moving (MOVED/ASK while it ran; redis-py turns most of them into WatchError at EXEC).
RETRIED = (
    redis.WatchError,
    MovedError,
    AskError,
    TryAgainError,
    ClusterDownError,
    SlotNotCoveredError,
)

P = ParamSpec("P")
T = TypeVar("T")


def _unavailable_on_redis_error(method: Callable[P, T]) -> Callable[P, T]:
    """Rewrap redis's connection failures as 503, at the one boundary that calls redis.

    So are the refusals of a Redis that can't take writes for now: a replica (READONLY: a
    primary demoted by a failover, reached without Sentinel) and a primary with too few
    replicas for its `min-replicas-to-write` (NOREPLICAS), nothing written. Such a primary may
    be one a failover is replacing: the idle connections are closed, so the next command
    connects again and, with Sentinel, asks where the primary is now.
    """

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except (
            redis.ConnectionError,
            redis.TimeoutError,
            ClusterDownError,
            SlotNotCoveredError,
        ) as e:
            store = args[0]
            assert isinstance(store, Store)
            store.on_redis_error()
            raise ServiceUnavailable("Redis is unavailable. Please retry.") from e
        except redis.ResponseError as e:
            if not isinstance(e, redis.ReadOnlyError) and "NOREPLICAS" not in str(e):
                raise
            store = args[0]
            assert isinstance(store, Store)
            store.on_redis_error()
            pool = getattr(store.redis, "connection_pool", None)  # a cluster client has none
            if pool is not None:
                pool.disconnect(inuse_connections=False)
            raise ServiceUnavailable("Redis can't take writes now. Please retry.") from e

    return wrapper


class Store:
    """Entries in Redis. Every method raises FeedstoreError subclasses, never redis errors."""

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        keys: KeyScheme | None = None,
        retries: int = 200,
        max_subtree: int = 1000,
        default_acl: acl.Acl | None = None,
        on_retry: Callable[[], None] = lambda: None,
        on_redis_error: Callable[[], None] = lambda: None,
        history: HistoryRules | None = None,
        changes: bool = True,
    ) -> None:
        """`on_retry` is called each time a write runs again after a WatchError, and
        `on_redis_error` each time Redis fails a request (metrics.py counts both)."""
        self.redis: Any = client
        self.on_retry = on_retry
        self.on_redis_error = on_redis_error
        self.keys = keys or KeyScheme()
        # On Redis Cluster a transaction keeps to one slot (partitions.py); reads over many
        # slots split by slot.
        self.cluster = isinstance(client, redis.RedisCluster)
        self.retries = retries
        self.max_subtree = max_subtree
        # With auth on (a default ACL given), every write is authorized in its transaction.
        self.default_acl = default_acl
        self.history = history or HistoryRules()
        self.records_changes = changes  # every write adds its events to the change feed
        self.streams = ChangeStreams(client, self.keys, self.cluster)
        self._schema: tuple[bytes | None, Schema | None] = (None, None)

    # -- reading ------------------------------------------------------------------------------

    @_unavailable_on_redis_error
    def get(self, key: str) -> tuple[int, bytes] | None:
        """The revision and stored JSON of `key` (of its entry, seen through it, when `key` is
        an alias), or None when it has no entry."""
        keys = self.keys
        if self.cluster:
            # One key per command: a moving slot refuses a multi-key read (partitions.py), and
            # an entry is read far more often than an alias.
            raw = partitions.read_one(self.redis, keys.document_key(key))
            target = (
                None if raw is not None else partitions.read_one(self.redis, keys.alias_key(key))
            )
        else:
            raw, target = self.redis.mget(keys.document_key(key), keys.alias_key(key))
        return self._found(key, raw, target)

    @_unavailable_on_redis_error
    def get_guarded(
        self, key: str, on_path: Sequence[str]
    ) -> tuple[tuple[int, bytes] | None, list[acl.Acl | None]]:
        """`get(key)` and the ACL mirrors of `on_path`, in one MGET on a single Redis."""
        if self.cluster or not on_path:
            return self.get(key), self.acls(on_path)
        keys = self.keys
        raw, target, *mirrors = self.redis.mget(
            keys.document_key(key), keys.alias_key(key), *map(keys.acl_key, on_path)
        )
        return self._found(key, raw, target), [acl.loads(mirror) for mirror in mirrors]

    @_unavailable_on_redis_error
    def get_guarded_with(
        self, record: str, key: str, on_path: Sequence[str]
    ) -> tuple[dict[Any, Any], tuple[int, bytes] | None, list[acl.Acl | None]]:
        """HGETALL of `record` (a token's, authenticating the read) and get_guarded(key,
        on_path), in one round trip on a single Redis."""
        keys = self.keys
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(record)
            pipe.mget(keys.document_key(key), keys.alias_key(key), *map(keys.acl_key, on_path))
            fields, (raw, target, *mirrors) = pipe.execute()
        return fields, self._found(key, raw, target), [acl.loads(mirror) for mirror in mirrors]

    def _found(self, key: str, raw: bytes | None, target: bytes | None) -> tuple[int, bytes] | None:
        if raw is not None:
            return codec_json.stored_revision(raw, key), raw
        if target is None:
            return None
        [seen] = self._through_aliases([key], [target.decode()])
        return None if seen is None else (codec_json.stored_revision(seen, target.decode()), seen)

    @_unavailable_on_redis_error
    def revision(self, key: str, revision: int) -> tuple[bytes, bool]:
        """The stored JSON of `key` at `revision` and whether it is the current one (history.py:
        404 revision_not_found, 410 revision_gone)."""
        return history.read_revision(self.redis, self.keys, key, revision)

    @_unavailable_on_redis_error
    def revisions(self, key: str, below: int | None, limit: int) -> tuple[list[bytes], int | None]:
        """A page of `key`'s revisions, newest first, and where the next page starts below."""
        return history.read_history(self.redis, self.keys, key, below, limit)

    @_unavailable_on_redis_error
    def changes(self, key: str, since: str | None, limit: int) -> ChangePage:
        """Up to `limit` events of `key`'s subtree after the sequence `since` (None: from the
        oldest kept), oldest first, and the last sequence examined (changes.py). 410
        ChangesExpired when events after `since` were trimmed; 400 on a cluster for a key above
        the partition depth."""
        return self.streams.read(key, since, limit)

    @_unavailable_on_redis_error
    def last_change(self, key: str) -> str:
        """The sequence of the newest event of `key`'s stream (`0-0`: none yet)."""
        return self.streams.last(key)

    @_unavailable_on_redis_error
    def feed_seq(self, key: str) -> str | None:
        """The change feed's newest sequence for `key`'s subtree, for a listing's first page
        (list then follow); None when the feed is off or can't serve `key` (a cluster, above
        the partition depth)."""
        if not self.records_changes:
            return None
        try:
            return self.streams.last(key)
        except InvalidOption:
            return None

    @_unavailable_on_redis_error
    def child_keys_and_seq(
        self, key: str, after: str | None, count: int
    ) -> tuple[list[str], str | None]:
        """`child_keys` and, read just before them in the same round trip, `feed_seq(key)`."""
        try:
            names = self.streams.names(key) if self.records_changes else None
        except InvalidOption:
            names = None
        if names is None:
            return self.child_keys(key, after, count), None
        start = b"(" + after.encode() if after is not None else b"-"
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xrevrange(names[0], "+", "-", count=1)
            pipe.get(names[1])
            pipe.zrangebylex(self.keys.children_key(key), start, b"+", start=0, num=count)
            last, horizon, found = pipe.execute()
        return [child.decode() for child in found], newest(last, horizon)

    @_unavailable_on_redis_error
    def child_keys(self, key: str, after: str | None, count: int) -> list[str]:
        """Up to `count` child keys of `key` in key order, after the key `after`."""
        start = b"(" + after.encode() if after is not None else b"-"
        found = cast(
            list[bytes],
            self.redis.zrangebylex(self.keys.children_key(key), start, b"+", start=0, num=count),
        )
        return [child.decode() for child in found]

    @_unavailable_on_redis_error
    def documents(self, keys: Sequence[str]) -> list[bytes | None]:
        """The stored JSON of each key (None where the entry is gone); an alias gives its
        entry, seen through it."""
        if not keys:
            return []
        found = self._mget([self.keys.document_key(key) for key in keys])
        missing = [i for i, raw in enumerate(found) if raw is None]
        if missing:
            targets = self._mget([self.keys.alias_key(keys[i]) for i in missing])
            hits = [(i, t.decode()) for i, t in zip(missing, targets, strict=True) if t is not None]
            if hits:
                seen = self._through_aliases([keys[i] for i, _ in hits], [t for _, t in hits])
                for (i, _), raw in zip(hits, seen, strict=True):
                    found[i] = raw
        return found

    def _through_aliases(
        self, aliases: Sequence[str], targets: Sequence[str]
    ) -> list[bytes | None]:
        """The stored JSON of each alias's entry, its self link made the alias."""
        raws = self._mget([self.keys.document_key(t) for t in targets])
        return [
            None
            if raw is None
            else codec_json.dumps_document(alias.seen_through(codec_json.loads_stored(raw), name))
            for name, raw in zip(aliases, raws, strict=True)
        ]

    def _transaction_pipeline(self) -> Any:
        """A pipeline for one WATCH/MULTI/EXEC; on a cluster, one that never silently moves to
        another connection while it watches (partitions.unretried). Store.write on a cluster
        uses the partition node's own pipeline instead (partitions.PartitionRoute)."""
        pipe = self.redis.pipeline(transaction=True)
        return partitions.unretried(pipe) if self.cluster else pipe

    def _mget(self, names: list[str]) -> list[bytes | None]:
        """MGET; on a cluster partitions.read_each, not atomic there: a listing's reads never
        were, and a counter's value and range need not be read at once."""
        if self.cluster:
            return partitions.read_each(self.redis, names)
        return cast(list[bytes | None], self.redis.mget(names))

    # -- ACL mirrors (auth on, access.py) --------------------------------------------------------

    @_unavailable_on_redis_error
    def acls(self, keys: Sequence[str]) -> list[acl.Acl | None]:
        """The ACL mirror of each key (None where it has none)."""
        if not keys:
            return []
        return [acl.loads(raw) for raw in self._mget([self.keys.acl_key(key) for key in keys])]

    @_unavailable_on_redis_error
    def alias_targets(self, keys: Sequence[str]) -> dict[str, str]:
        """The keys among `keys` that are aliases, with the key of the entry each names."""
        found = self._mget([self.keys.alias_key(key) for key in keys]) if keys else []
        return {key: raw.decode() for key, raw in zip(keys, found, strict=True) if raw}

    @_unavailable_on_redis_error
    def acl_children(self, parent: str) -> list[str]:
        """The children of `parent` that have an ACL of their own. On a cluster, a parent whose
        children are partitions of their own keeps no such set: its children are read."""
        if not (self.cluster and self.keys.children_apart(parent)):
            found = self.redis.smembers(self.keys.acl_children_key(parent))
            return sorted(member.decode() for member in found)
        owned: list[str] = []
        after = None
        while True:
            keys = self.child_keys(parent, after, 1000)
            own = self._mget([self.keys.acl_key(key) for key in keys])
            owned += [key for key, raw in zip(keys, own, strict=True) if raw is not None]
            if len(keys) < 1000:
                return owned
            after = keys[-1]

    def indexes_children(self, key: str) -> bool:
        """Whether the x-indexes of `key` list its children: not on a cluster when each child is
        a partition of its own (partitions.py)."""
        return not (self.cluster and self.keys.children_apart(key))

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
        """The key that signs cursors: made by the first worker that issues one, then shared.

        Read from Redis every time, never kept: a worker that kept it would go on signing with
        a key Redis lost (a flush, a failover to a replica that never got it) while the other
        servers sign with the new one, and their cursors would not page on each other."""
        found = cast(bytes | None, self.redis.get(SECRET_KEY))
        if found is None:
            self.redis.set(SECRET_KEY, os.urandom(32), nx=True)
            found = cast(bytes, self.redis.get(SECRET_KEY))
        return found

    @_unavailable_on_redis_error
    def existing_secret(self) -> bytes | None:
        """The cursor key if one was made; reading a cursor must not create it (reads change
        nothing), and with no key yet no cursor can be valid."""
        return cast(bytes | None, self.redis.get(SECRET_KEY))

    # -- counters (vte.cx `_addids`, `_getids`, `_setids`, `_rangeids`, `_allocids`) ------------

    @_unavailable_on_redis_error
    def add_ids(self, key: str, amount: int, lease: idempotency.Lease | None = None) -> int:
        """Add to the counter of `key` and return its new value, within its range if it has one.

        The range is WATCHed, so a `_rangeids` between the read and the write is never missed;
        the counter itself is WATCHed only when a range must check the new value. A sum past
        Redis's signed 64-bit range is InvalidOption, the counter left as it was. With a
        `lease` (an Idempotency-Key), the counter is always WATCHed and SET, its answer beside it.
        """
        counter, bounds = self.keys.counter_key(key), self.keys.counter_range_key(key)
        if lease is not None:

            def add(pipe: Any, value: bytes | None, raw_span: bytes | None) -> int:
                total, span = int(value or 0) + amount, _range_of(raw_span)
                if not -(2**63) <= total < 2**63:
                    raise _overflow(key, amount)
                if span is not None:
                    span.check(total, key)
                pipe.multi()
                pipe.set(counter, total)
                return span.shown(total) if span is not None else total

            return self._counted_once(lease, [counter, bounds], add)
        for attempt in range(self.retries):
            with self._transaction_pipeline() as pipe:
                try:
                    pipe.watch(bounds)
                    span = _range_of(cast(bytes | None, pipe.get(bounds)))
                    if span is None:
                        pipe.multi()
                        pipe.incrby(counter, amount)
                        return int(pipe.execute()[0])
                    pipe.watch(counter)
                    value = int(cast(bytes | None, pipe.get(counter)) or 0) + amount
                    if not -(2**63) <= value < 2**63:
                        raise _overflow(key, amount)
                    span.check(value, key)
                    pipe.multi()
                    pipe.set(counter, value)
                    pipe.execute()
                    return span.shown(value)
                except RETRIED:
                    self._back_off(attempt)
                except redis.ResponseError as e:
                    if "overflow" not in str(e):
                        raise
                    raise _overflow(key, amount) from e
        raise ServiceUnavailable("Too many concurrent writes. Please retry.")

    @_unavailable_on_redis_error
    def get_ids(self, key: str) -> int:
        found = self._mget([self.keys.counter_key(key), self.keys.counter_range_key(key)])
        raw_value, span = found[0], _range_of(found[1])
        value = int(raw_value or 0)
        return span.shown(value) if span is not None else value

    @_unavailable_on_redis_error
    def set_ids(self, key: str, value: int, lease: idempotency.Lease | None = None) -> int:
        """Set the counter of `key`; with a range, the value must be within it."""
        bounds = self.keys.counter_range_key(key)
        if lease is not None:

            def set_value(pipe: Any, raw_span: bytes | None) -> int:
                span = _range_of(raw_span)
                if span is not None:
                    span.check(value, key, setting=True)
                pipe.multi()
                pipe.set(self.keys.counter_key(key), value)
                return value

            return self._counted_once(lease, [bounds], set_value)
        for attempt in range(self.retries):
            with self._transaction_pipeline() as pipe:
                try:
                    pipe.watch(bounds)
                    span = _range_of(cast(bytes | None, pipe.get(bounds)))
                    if span is not None:
                        span.check(value, key, setting=True)
                    pipe.multi()
                    pipe.set(self.keys.counter_key(key), value)
                    pipe.execute()
                    return value
                except RETRIED:
                    self._back_off(attempt)
        raise ServiceUnavailable("Too many concurrent writes. Please retry.")

    @_unavailable_on_redis_error
    def counter_range(self, key: str) -> CounterRange | None:
        return _range_of(cast(bytes | None, self.redis.get(self.keys.counter_range_key(key))))

    @_unavailable_on_redis_error
    def set_counter_range(
        self, key: str, span: CounterRange | None, lease: idempotency.Lease | None = None
    ) -> None:
        """Give the counter of `key` a range (its value becomes min - 1), or remove it (its value
        stays), in one transaction."""
        if lease is not None:

            def set_range(pipe: Any) -> CounterRange | None:
                pipe.multi()
                self._queue_range(pipe, key, span)
                return span

            self._counted_once(lease, [], set_range)
            return
        with self._transaction_pipeline() as pipe:
            self._queue_range(pipe, key, span)
            pipe.execute()

    def _queue_range(self, pipe: Any, key: str, span: CounterRange | None) -> None:
        if span is None:
            pipe.delete(self.keys.counter_range_key(key))
        else:
            pipe.set(self.keys.counter_range_key(key), str(span))
            pipe.set(self.keys.counter_key(key), span.low - 1)

    @_unavailable_on_redis_error
    def allocate_ids(
        self, key: str, count: int, lease: idempotency.Lease | None = None
    ) -> list[int]:
        """`count` numbers from the sequence that numbers the children POSTed under `key`: no
        POST and no other allocation gets them."""
        sequence = self.keys.sequence_key(key)
        if lease is not None:

            def allocate(pipe: Any, value: bytes | None) -> list[int]:
                last = int(value or 0) + count
                pipe.multi()
                pipe.set(sequence, last)
                return list(range(last - count + 1, last + 1))

            return self._counted_once(lease, [sequence], allocate)
        last = int(self.redis.incrby(sequence, count))
        return list(range(last - count + 1, last + 1))

    def _counted_once(
        self, lease: idempotency.Lease, names: list[str], apply: Callable[..., T]
    ) -> T:
        """A counter change with an Idempotency-Key: `names` and the lease's record WATCHed and
        read in one round trip; `apply(pipe, *values)` checks, opens the MULTI and queues the
        change, and its result's answer is queued beside it (idempotency.Lease)."""
        for attempt in range(self.retries):
            with self._transaction_pipeline() as pipe:
                try:
                    watched = [*names, lease.name]
                    *values, held = watch.watch_and_read(
                        pipe, watched, "MGET", *watched, first=lease.claim
                    )
                    lease.check(held)
                    result = apply(pipe, *values)
                    lease.queue(pipe, result)
                    pipe.execute()
                    return result
                except RETRIED:
                    self._back_off(attempt)
        raise ServiceUnavailable("Too many concurrent writes. Please retry.")

    # -- pagination indexes (pagination.py) -----------------------------------------------------

    @_unavailable_on_redis_error
    def page_index(self, name: str, ttl: int) -> list[str]:
        """The cursors of a pagination index, its lifetime renewed by the read."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(name, 0, -1)
            pipe.expire(name, ttl)
            found = cast(list[bytes], pipe.execute()[0])
        return [item.decode() for item in found]

    @_unavailable_on_redis_error
    def save_page_index(self, name: str, keep: int, cursors: Sequence[str], ttl: int) -> None:
        """Keep the first `keep` cursors of an index, then `cursors`: one transaction.

        An index is a cache that a read builds: saved on the primary is enough, whatever the
        replicas confirm (wait_replicas).
        """
        with self._transaction_pipeline() as pipe:
            if keep:
                pipe.ltrim(name, 0, keep - 1)
            else:
                pipe.delete(name)
            if cursors:
                pipe.rpush(name, *cursors)
            pipe.expire(name, ttl)
            with contextlib.suppress(NotReplicated):
                pipe.execute()

    @_unavailable_on_redis_error
    def count(self, key: str) -> int:
        """How many children `key` has. On a cluster, the children set of a parent above the
        partition depth may name deleted children (partitions.py): their documents are
        counted."""
        if not (self.cluster and self.keys.children_apart(key)):
            return int(self.redis.zcard(self.keys.children_key(key)))
        total, after = 0, None
        while True:
            keys = self.child_keys(key, after, 1000)
            found = self._mget([self.keys.document_key(child) for child in keys])
            total += sum(raw is not None for raw in found)
            if len(keys) < 1000:
                return total
            after = keys[-1]

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
        with self._transaction_pipeline() as pipe:
            if document is None:
                pipe.delete(SCHEMA_KEY)
            else:
                pipe.set(SCHEMA_KEY, codec_json.dumps_document(document))
            # A new random version, not a count: a count starts again at 1 when Redis loses it
            # (a flush, a failover to a stale replica), and a worker that compiled the old
            # schema at that number would keep it.
            pipe.set(SCHEMA_VERSION_KEY, os.urandom(16).hex())
            pipe.execute()
        self.reindex(Schema(document) if document is not None else None)

    @_unavailable_on_redis_error
    def reindex(self, schema: Schema | None) -> int:
        """Rebuild every field index from the stored entries; return how many entries it read.

        Writes made meanwhile maintain the indexes themselves; this fills in what was stored
        before an index was declared.
        """
        for name in self.redis.scan_iter(match="fs:{*}:i:*", count=1000):
            self.redis.delete(name)
        fields = indexed_fields(schema)
        if not fields:
            return 0
        read = 0
        batch: list[str] = []
        for name in self.redis.scan_iter(match="fs:{*}:d:*", count=1000):
            batch.append(self.keys.key_of_document(name.decode()))
            if len(batch) == 1000:
                read += self._index_batch(batch, fields)
                batch = []
        return read + self._index_batch(batch, fields)

    def _index_batch(self, keys: list[str], fields: list[tuple[str, ...]]) -> int:
        with self.redis.pipeline(transaction=False) as pipe:
            for key, raw in zip(keys, self.documents(keys), strict=True):
                if raw is not None and self.indexes_children(parent_of(key)):
                    for path, member in members(codec_json.loads_stored(raw), key, fields).items():
                        pipe.zadd(self.keys.index_key(parent_of(key), ".".join(path)), {member: 0})
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
    def write(
        self,
        writes: Sequence[Write],
        principal: Principal = ANONYMOUS,
        lease: idempotency.Lease | None = None,
        token: DeferredToken | None = None,
    ) -> list[Written]:
        """Check and apply every write atomically: all of them, or none and a FeedstoreError.

        With auth on, `principal` must have the rights each write needs (API.md §16.3),
        checked inside the transaction: AccessDenied (or Unauthorized, anonymous) otherwise.
        With a `lease` (write_once), its record is checked and its answer queued in the
        transaction: idempotency.LeaseLost when another request took the record over.
        With a `token` instead of a principal, the transaction authenticates it first
        (credentials.py's DeferredToken; read before it on a cluster, where its record is in
        another slot) and the write is its principal's: InvalidToken or TokenExpired, nothing
        written. A lease needs the principal first (its record's name carries it)."""
        assert token is None or lease is None, "an idempotent write knows its principal"
        if token is not None and self.cluster:
            principal = token.principal = token.credentials.principal_of_token(token.token)
            token = None
        reject_duplicates(writes)
        caller = None if self.default_acl is None else acl.Caller.of(principal, self.default_acl)
        prepared = partitions.prepare(self.redis, self.keys, writes) if self.cluster else None
        # On a cluster, the partition's node is given the transaction directly until it meets
        # a slot on the move or a lost connection (partitions.PartitionRoute).
        route = partitions.PartitionRoute(self.redis, self.keys, prepared) if prepared else None
        for attempt in range(self.retries):
            with route.pipeline() if route else self._transaction_pipeline() as pipe:
                try:
                    if prepared is None:
                        transaction = self._transaction(pipe, principal, caller, lease=lease)
                        transaction.token = token
                        return transaction.run(writes)
                    # The schema version is in another slot: read before WATCH (never watched).
                    rules = replace(
                        prepared.rules,
                        schema_version=partitions.read_one(self.redis, SCHEMA_VERSION_KEY),
                    )
                    if caller is not None:
                        rules = self._outside_access(rules, principal)
                    transaction = self._transaction(pipe, principal, caller, rules, lease)
                    written = transaction.run(prepared.writes)
                    partitions.finish(self.redis, prepared, written)
                    return written
                except RETRIED as e:
                    if route is not None and route.rerouted(e):
                        continue  # not a conflict: again at once, now on the right node
                    self._back_off(attempt)
                except (redis.ConnectionError, redis.TimeoutError) as e:
                    if route is None or not route.rerouted(e):
                        raise
                except (RedisClusterException, ClusterCrossSlotError) as e:
                    # A key outside the request's partition that no check foresaw (an alias
                    # of data written on a single Redis): refused, nothing written.
                    if not _cross_slot(e):
                        raise
                    trees = partitions.trees_of(self.keys, prepared.writes if prepared else writes)
                    raise CrossTreeWrite([*trees, "an alias in another tree"]) from e
        raise ServiceUnavailable("Too many concurrent writes. Please retry.")

    @_unavailable_on_redis_error
    def write_once(
        self, writes: Sequence[Write], principal: Principal, request: idempotency.Request
    ) -> idempotency.Outcome[list[Written]]:
        """`write` exactly once per Idempotency-Key (`request.key`) of `principal` (API.md §19):
        the answer `request.render` makes of the Written list is stored in the write's own
        MULTI, and a request with the same key gets it back (`replayed`) without writing.

        IdempotencyKeyReused (422) for the key sent with another fingerprint,
        IdempotencyInProgress (409) while the first request holds its lease; a failed write
        raises its error and records nothing, so a retry is a fresh attempt."""
        first = writes[0] if writes else Write(Action.PUT, "/")
        target = first.numbered_under if first.numbered_under is not None else first.key
        if self.cluster and first.numbered_under is not None and self.keys.children_apart(target):
            # The new entry is a partition of its own, numbered before its transaction.
            raise IdempotencyKeyNotAccepted(
                f"on Redis Cluster a new entry under {target} is a tree of its own: give it a "
                "self link."
            )
        return self.once(
            target, principal, request, lambda lease: self.write(writes, principal, lease)
        )

    def once(
        self,
        key: str,
        principal: Principal,
        request: idempotency.Request,
        write: Callable[[idempotency.Lease], T],
    ) -> idempotency.Outcome[T]:
        """Run `write` with the lease of `principal`'s record of `request.key`, in `key`'s
        partition (idempotency.run), or answer from the record."""
        digest = idempotency.digest(request.key)
        name = self.keys.idempotency_key(key, principal.name, digest)
        return idempotency.run(name, request, write, self._transaction_pipeline)

    def _transaction(
        self,
        pipe: Any,
        principal: Principal,
        caller: acl.Caller | None,
        rules: ClusterRules | None = None,
        lease: idempotency.Lease | None = None,
    ) -> Transaction:
        return Transaction(
            pipe,
            keys=self.keys,
            principal=principal.name,
            max_subtree=self.max_subtree,
            schema_at=self._schema_at,
            cluster=rules,
            caller=caller,
            history=self.history,
            changes=self.records_changes,
            lease=lease,
        )

    def _outside_access(self, rules: ClusterRules, principal: Principal) -> ClusterRules:
        """On a cluster: the ACL mirrors of the partition's ancestors and the caller's groups
        live in other slots, so they are read before the transaction, not watched (API.md
        §16.7)."""
        above = acl.path(rules.partition)[1:]
        names = [self.keys.acl_key(key) for key in above]
        if principal.uid is not None:
            names.append(user_groups_key(principal.uid))
        found = partitions.read_each(self.redis, names)
        groups = found[len(above)] if principal.uid is not None else None
        return replace(rules, outside_acls=dict(zip(above, found, strict=False)), groups=groups)

    def _back_off(self, attempt: int) -> None:
        """After a WatchError: retry at once twice, then after a short random pause."""
        self.on_retry()
        if attempt >= 2:
            time.sleep(random.uniform(0, 0.001 * min(attempt, 20)))


def _cross_slot(error: Exception) -> bool:
    """Whether redis-py (or Redis) refused a transaction for keys in two slots."""
    if isinstance(error, CrossSlotTransactionError | ClusterCrossSlotError):
        return True
    return "same" in str(error) and "slot" in str(error)


def _range_of(raw: bytes | None) -> CounterRange | None:
    """A stored range (written by set_counter_range, so trusted)."""
    return CounterRange.parse(raw.decode()) if raw is not None else None


def _overflow(key: str, amount: int) -> InvalidOption:
    return InvalidOption(f"The counter of {key} would overflow: _addids={amount}")
