"""The change feed (API.md §18): one Redis Stream of events per partition, written in the write's
own MULTI, read by `?_changes`, trimmed by a retention pass with an exact 410 horizon.

Every key a committed write creates, updates or deletes (each key of a removed subtree too) is
one event `XADD fs:{P}:x * k <key> r <revision> o c|u|d p <principal>` queued in the write's MULTI,
so an event exists exactly when its write committed; on a single Redis the same event goes to
`fs:x:/`, the whole store's stream. The sequence is the stream entry id (`1795773533279-0`):
strictly increasing per stream, never rewound.

Which stream a key's feed reads: its partition's, when every key below it is in that partition
(the key is at or below the partition depth); otherwise `fs:x:/`, filtered to the key's subtree,
which Redis Cluster can't keep (400 there).

The retention pass (`trim`) drops the events older than `changes_retention` and those past
`changes_max` per stream, and in the same MULTI records the id of the last one dropped in the
stream's horizon key: a reader whose `_since` is below it missed events (410 changes_expired);
one at it did not.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from feedstore.entry import timestamp
from feedstore.errors import ChangesExpired, InvalidOption
from feedstore.keys import KeyScheme

WHOLE_STORE_STREAM = "fs:x:/"
WHOLE_STORE_HORIZON = "fs:xh:/"
# The streams serve's retention pass trims, as the last SCAN of the keyspace found them (a set),
# and the lease that SCAN holds: serve's pass SCANs at most every DISCOVERY_SECONDS.
KNOWN_STREAMS_KEY = "fs:xknown"
DISCOVERY_LEASE_KEY = "fs:xscan"
DISCOVERY_SECONDS = 600
CHANGE_SCHEME = "urn:feedstore:change"
OPERATIONS = {"c": "created", "u": "updated", "d": "deleted"}
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# A page examines at most this many events per event it may answer, when the stream holds
# other keys' events too (the whole store's, or a partition's below its root).
EXAMINE_FACTOR = 20
_SEQUENCE = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
ZERO = "0-0"
# The events the retention pass reads at a time, looking for the last one past changes_max.
TRIM_PAGE = 10_000


@dataclass(frozen=True)
class Change:
    """One event: its sequence, the key, the revision written (for a delete: deleted), what
    happened (c, u or d) and who did it."""

    seq: str
    key: str
    revision: int
    operation: str
    principal: str

    @property
    def milliseconds(self) -> int:
        """When it happened: the stream id's time part."""
        return int(self.seq.partition("-")[0])

    @property
    def kind(self) -> str:
        """`created`, `updated` or `deleted`."""
        return OPERATIONS[self.operation]


@dataclass(frozen=True)
class ChangePage:
    """The events of one read, oldest first; `seq`, the last event examined (the next read's
    `_since`, even when every event examined was filtered out); `more`, whether more events
    are already waiting after it."""

    changes: list[Change]
    seq: str
    more: bool = False


# -- writing (in the write's MULTI) ----------------------------------------------------------


# A request's events past the first, in one command: redis-py packs, queues and parses each
# command of a MULTI in Python (~70k instructions for an XADD), so a write of 100 entries spent
# more on its 200 XADDs than on anything else. The script makes the same XADDs, in order, in
# the same MULTI. KEYS: the streams (the whole store's last, when it has its copy); ARGV: the
# principal, "1" for a copy in the whole store's stream, then per event the number of its
# stream in KEYS, its key, revision and operation.
_ADD_EVENTS = """
local principal, copy = ARGV[1], ARGV[2] == '1'
local whole = KEYS[#KEYS]
for i = 3, #ARGV, 4 do
  local k, r, o = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  redis.call('XADD', KEYS[tonumber(ARGV[i])], '*', 'k', k, 'r', r, 'o', o, 'p', principal)
  if copy then
    redis.call('XADD', whole, '*', 'k', k, 'r', r, 'o', o, 'p', principal)
  end
end
"""


def queue(
    pipe: Any,
    keys: KeyScheme,
    principal: str,
    events: Iterable[tuple[str, int, str]],
    whole_store: bool,
) -> None:
    """Queue one XADD per `(key, revision, operation)` on its partition's stream, and on the
    whole store's stream when `whole_store` (a single Redis); more than one event, in one
    script (the same XADDs, in the same order)."""
    whole = WHOLE_STORE_STREAM if whole_store else None
    queue_events(pipe, keys.change_stream_key, whole, principal, events)


def queue_events(
    pipe: Any,
    stream_of: Callable[[str], str],
    whole: str | None,
    principal: str,
    events: Iterable[tuple[str, int, str]],
) -> None:
    """queue's commands, the streams named by `stream_of` (a key's) and `whole` (None: no
    copy); the bench's baseline issues them on streams of its own."""
    events = list(events)
    if len(events) == 1:
        [(key, revision, operation)] = events
        fields = ("k", key, "r", revision, "o", operation, "p", principal)
        pipe.execute_command("XADD", stream_of(key), "*", *fields)
        if whole is not None:
            pipe.execute_command("XADD", whole, "*", *fields)
        return
    if not events:
        return
    streams: dict[str, int] = {}  # each stream's number in KEYS, from 1 as Lua counts
    arguments: list[Any] = [principal, "0" if whole is None else "1"]
    for key, revision, operation in events:
        stream = stream_of(key)
        number = streams.get(stream)
        if number is None:
            number = streams[stream] = len(streams) + 1
        arguments += (number, key, revision, operation)
    names = list(streams) if whole is None else [*streams, whole]
    pipe.execute_command("EVAL", _ADD_EVENTS, len(names), *names, *arguments)


# -- items (the entries a change feed answers) ------------------------------------------------


def category(change: Change) -> dict[str, str]:
    return {"___scheme": CHANGE_SCHEME, "___term": change.kind, "___label": change.seq}


def item(change: Change) -> dict[str, Any]:
    """A change as an entry: `id` `<key>,<revision>` (a delete's: the revision deleted), the
    self link, `updated` the event's time, the author `urn:feedstore:<kind>:<principal>`, and
    the change category, whose label is the sequence."""
    return {
        "id": f"{change.key},{change.revision}",
        "link": [{"___href": change.key, "___rel": "self"}],
        "author": [{"uri": f"urn:feedstore:{change.kind}:{change.principal}"}],
        "updated": timestamp(change.milliseconds / 1000),
        "category": [category(change)],
    }


def items(
    changes: Sequence[Change], current: Mapping[str, Mapping[str, Any] | None] | None = None
) -> list[dict[str, Any]]:
    """The items of a page. With `current` (`?e`: each key's stored entry, None when gone), a
    key appears once, at its last event, as the current entry with the change category
    appended when it exists (its content is the current one whichever event it is shown at)."""
    if current is None:
        return [item(change) for change in changes]
    last = {change.key: i for i, change in enumerate(changes)}
    shown = []
    for i, change in enumerate(changes):
        if last[change.key] != i:
            continue
        document = current.get(change.key)
        if change.operation == "d" or document is None:
            shown.append(item(change))
        else:
            categories = [*document.get("category", ()), category(change)]
            shown.append({**document, "category": categories})
    return shown


# -- reading ---------------------------------------------------------------------------------


def parse_sequence(value: str, option: str = "_since") -> str:
    """A sequence as a full stream id (`123` is `123-0`); 400 naming the option otherwise."""
    match = _SEQUENCE.fullmatch(value)
    if match is None or int(match[1]) >= 2**64 or int(match[2] or 0) >= 2**64:
        raise InvalidOption(f"Sequence is invalid: {option}={value}")
    return f"{int(match[1])}-{int(match[2] or 0)}"


def sequence_order(seq: str) -> tuple[int, int]:
    """A stream id as a pair that compares as Redis orders them."""
    ms, _, counter = seq.partition("-")
    return int(ms), int(counter or 0)


def in_subtree(key: str, top: str) -> bool:
    return top == "/" or key == top or key.startswith(top + "/")


class ChangeStreams:
    """Where each key's events are, and how they are read and trimmed, on one Redis client."""

    def __init__(self, client: Any, keys: KeyScheme, cluster: bool) -> None:
        self.redis = client
        self.keys = keys
        self.cluster = cluster

    def names(self, key: str) -> tuple[str, str]:
        """The stream holding the events of `key`'s subtree, and its horizon key; 400 on a
        cluster for a key whose subtree spans partitions."""
        if not self.keys.children_apart(key):
            return self.keys.change_stream_key(key), self.keys.change_horizon_key(key)
        if self.cluster:
            raise InvalidOption(
                f"On Redis Cluster a change feed reads one partition, and {key} is above the "
                f"partition depth ({self.keys.depth}). Key = {key}",
                key=key,
            )
        return WHOLE_STORE_STREAM, WHOLE_STORE_HORIZON

    def last(self, key: str) -> str:
        """The sequence of the newest event of `key`'s stream (see `newest`)."""
        stream, horizon = self.names(key)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.xrevrange(stream, "+", "-", count=1)
            pipe.get(horizon)
            found, trimmed = pipe.execute()
        return newest(found, trimmed)

    def read(self, key: str, since: str | None, limit: int) -> ChangePage:
        """Up to `limit` events of `key`'s subtree after `since` (exclusive; None: from the
        oldest kept). ChangesExpired (410) when `since` is below the stream's horizon."""
        stream, horizon_name = self.names(key)
        batch = min(limit + 1, MAX_LIMIT + 1)
        start = "-" if since is None else "(" + since
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(horizon_name)
            pipe.xrange(stream, start, "+", count=batch)
            horizon, found = pipe.execute()
        expired = horizon is not None and sequence_order(horizon.decode())
        if since is not None and expired and sequence_order(since) < expired:
            oldest = self.redis.xrange(stream, "-", "+", count=1)
            raise ChangesExpired(key, since, oldest[0][0].decode() if oldest else None)
        changes: list[Change] = []
        # From the oldest kept, the sequence to go on from is the horizon (or 0-0), never
        # below it: a later read from there is not a 410.
        seq = since or (horizon.decode() if horizon is not None else ZERO)
        examined, cap = 0, max(limit, 1) * EXAMINE_FACTOR
        while True:
            for entry_id, fields in found:
                if len(changes) == limit:
                    return ChangePage(changes, seq, more=True)
                seq = entry_id.decode()
                examined += 1
                change = _change(seq, fields)
                if in_subtree(change.key, key):
                    changes.append(change)
            if len(found) < batch:
                return ChangePage(changes, seq)
            if examined >= cap:
                return ChangePage(changes, seq, more=True)
            found = self.redis.xrange(stream, "(" + seq, "+", count=batch)

    def horizon(self, key: str) -> str | None:
        """The id of the last event trimmed from `key`'s stream, if any."""
        _, horizon_name = self.names(key)
        found = self.redis.get(horizon_name)
        return found.decode() if found is not None else None

    # -- retention -----------------------------------------------------------------------

    def stream_names(self) -> Iterator[str]:
        """Every change stream in Redis (each partition's, and the whole store's)."""
        for name in self.redis.scan_iter(match="fs:{*}:x", count=1000):
            yield name.decode() if isinstance(name, bytes) else name
        if not self.cluster and self.redis.exists(WHOLE_STORE_STREAM):
            yield WHOLE_STORE_STREAM

    def known_stream_names(self, rediscover_ms: int = DISCOVERY_SECONDS * 1000) -> list[str]:
        """The streams serve's retention pass trims: those the last SCAN of the keyspace
        found, kept in KNOWN_STREAMS_KEY. The SCAN runs again, and replaces them, when none has
        run within `rediscover_ms` (DISCOVERY_LEASE_KEY: one per period of the serves sharing a
        Redis). A SCAN walks every key of the store, 1,000 a command, and ran every minute
        (13 µs per PUT of the bench's Redis time, in the window it fell in); a stream that
        appears since is trimmed from the next one, which its retention can wait for."""
        if self.redis.set(DISCOVERY_LEASE_KEY, os.getpid(), nx=True, px=rediscover_ms):
            names = sorted(self.stream_names())
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(KNOWN_STREAMS_KEY)
                if names:
                    pipe.sadd(KNOWN_STREAMS_KEY, *names)
                pipe.execute()
            return names
        known = self.redis.smembers(KNOWN_STREAMS_KEY)
        return sorted(name.decode() if isinstance(name, bytes) else name for name in known)

    def trim(
        self,
        retention: int,
        most: int,
        now: float | None = None,
        names: Sequence[str] | None = None,
    ) -> Iterator[tuple[str, int]]:
        """Drop the events older than `retention` seconds (at `now`, time.time() unless given)
        and beyond the newest `most` of each stream (of `names`; None: every stream, found by
        a SCAN); yield each stream with how many it lost."""
        cut_ms = int(((time.time() if now is None else now) - retention) * 1000)
        for stream in self.stream_names() if names is None else names:
            yield stream, self.trim_stream(stream, cut_ms, most)

    def trim_stream(self, stream: str, cut_ms: int, most: int) -> int:
        """Trim one stream (see `trim`) and set its horizon in the same MULTI; return how many
        events went. New events only ever come after the last one trimmed, so nothing is
        watched."""
        last: tuple[int, int] | None = None
        if cut_ms > 0 and self._oldest_before(stream, cut_ms):
            older = self.redis.xrevrange(stream, f"({cut_ms}-0", "-", count=1)
            if older:
                last = sequence_order(older[0][0].decode())
        excess = int(self.redis.xlen(stream)) - most
        if excess > 0:
            beyond = self._nth_oldest(stream, excess)
            if beyond is not None:
                last = max(last or (0, 0), sequence_order(beyond))
        if last is None:
            return 0
        horizon = horizon_of(stream)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.xtrim(stream, minid=f"{last[0]}-{last[1] + 1}", approximate=False)
            pipe.set(horizon, f"{last[0]}-{last[1]}")
            removed, _ = pipe.execute()
        return int(removed)

    def _oldest_before(self, stream: str, cut_ms: int) -> bool:
        """Whether the stream's oldest event is older than `cut_ms`.

        Asked before the XREVRANGE that finds the newest such event: in Redis 6.2 an XREVRANGE
        whose end is below every event walks the whole stream to find none (62-88 ms for 600,000
        events, 190 ms in a bench's stream of 1.1 million), and that is the usual case, every
        pass, for every stream younger than the retention. XRANGE - + COUNT 1 takes 0.1 ms."""
        oldest = self.redis.xrange(stream, "-", "+", count=1)
        return bool(oldest) and sequence_order(oldest[0][0].decode())[0] < cut_ms

    def _nth_oldest(self, stream: str, n: int) -> str | None:
        """The id of the `n`-th oldest event (None: fewer), read TRIM_PAGE events at a time: a
        stream far past `changes_max` (a minute of bulk writes adds a million events) is never
        held whole in this process.

        The pages are read on one connection as hiredis parses them: only each page's last id
        is used, and redis-py's XRANGE callback would build a dict for every event (0.76 s of
        CPU for 300,000 events, against 0.30 s)."""
        pool = self._pool_of(stream)
        conn = pool.get_connection()
        try:
            start, found = "-", None
            while n > 0:
                conn.send_command("XRANGE", stream, start, "+", "COUNT", min(n, TRIM_PAGE))
                page = conn.read_response()
                if not page:
                    break
                found = page[-1][0].decode()
                n -= len(page)
                start = "(" + found
            return found
        except (redis.ConnectionError, redis.TimeoutError):
            conn.disconnect()  # a reply may be left unread on it
            raise
        finally:
            pool.release(conn)

    def _pool_of(self, stream: str) -> Any:
        """The connection pool of the Redis that holds `stream` (its node's, on a cluster)."""
        if self.cluster:
            return self.redis.get_node_from_key(stream).redis_connection.connection_pool
        return self.redis.connection_pool


def newest(found: Sequence[tuple[bytes, Any]], horizon: bytes | None) -> str:
    """Where a follower starts: the newest event kept (XREVRANGE + - COUNT 1 found it), or the
    horizon when the retention pass trimmed every event (a start below it would be 410), or
    `0-0` for a stream never written."""
    seq = found[0][0].decode() if found else ZERO
    if horizon is not None and sequence_order(horizon.decode()) > sequence_order(seq):
        return horizon.decode()
    return seq


def horizon_of(stream: str) -> str:
    """The horizon key of a stream: `fs:{P}:x` -> `fs:{P}:xh`, `fs:x:/` -> `fs:xh:/`."""
    if stream == WHOLE_STORE_STREAM:
        return WHOLE_STORE_HORIZON
    return stream + "h"


def _change(seq: str, fields: dict[bytes, bytes]) -> Change:
    return Change(
        seq,
        fields[b"k"].decode(),
        int(fields[b"r"]),
        fields[b"o"].decode(),
        fields.get(b"p", b"").decode(),
    )
