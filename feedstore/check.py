"""`feedstore check`: the keys kept beside the documents agree with them; `--repair` mends them.

Every write keeps, in its own MULTI, what reads rely on besides the documents (keys.py): each
entry in its parent's children set, its revision key, its members of its parent's indexes, its
aliases' keys with their places among their parents' children and indexes, and, with auth on,
its ACL mirror and its place in its parent's set of children that carry an ACL. A bug, a tool
other than feedstore or a hand edit can break that. `check` finds every disagreement in both
directions: what a document needs and Redis lacks (or holds wrong), and what Redis holds that no
document needs (a stale member, a dangling alias or mirror).

A repair is made under WATCH of the entry's revision key, after checking again that the
disagreement is still there, so a write that lands meanwhile is never undone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from feedstore import acl, alias, codec_json, index
from feedstore.entry import parent_of
from feedstore.keys import KeyScheme, parse
from feedstore.schema import Schema

BATCH = 500
Progress = Callable[[int], None]  # entries checked so far


@dataclass(frozen=True)
class Expected:
    """One thing Redis must hold for an entry: a member of a sorted set (`zset`) or of a set
    (`set`), or a string key's value (`string`)."""

    kind: str  # "zset" | "set" | "string"
    name: str  # the Redis key
    value: bytes  # the member, or the string's value
    entry: str  # the entry that needs it
    what: str  # what it is, in words: "child", "index member", "alias", "ACL mirror", ...


@dataclass(frozen=True)
class Damage:
    """One disagreement: `expected` is missing (or holds another value), or, when `stale`, it
    is there and no document needs it."""

    expected: Expected
    stale: bool = False

    def __str__(self) -> str:
        item = self.expected
        shown = item.value.decode(errors="replace")
        if self.stale:
            return f"stale {item.what}: {shown} in {item.name} (no entry needs it)"
        return f"missing {item.what} of {item.entry}: {shown} in {item.name}"


class Checker:
    """The check of one store: its Redis, key scheme, schema (for indexes) and auth setting."""

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        keys: KeyScheme,
        schema: Schema | None,
        *,
        auth_on: bool,
    ) -> None:
        self.redis: Any = client
        self.keys = keys
        self.fields = index.indexed_fields(schema)
        self.auth_on = auth_on
        self.cluster = isinstance(client, redis.RedisCluster)

    # -- what a document needs ---------------------------------------------------------------

    def expected(self, key: str, document: dict[str, Any]) -> list[Expected]:
        """Everything Redis must hold for the entry `key` stored as `document`."""
        keys, parent = self.keys, parent_of(key)
        revision = str(document["id"]).rpartition(",")[2]
        needed = [
            Expected("zset", keys.children_key(parent), key.encode(), key, "child"),
            Expected("string", keys.revision_key(key), revision.encode(), key, "revision"),
        ]
        needed += self._index_members(key, key, document)
        for name in alias.aliases_of(document):
            needed += [
                Expected("string", keys.alias_key(name), key.encode(), key, "alias"),
                Expected("zset", keys.children_key(parent_of(name)), name.encode(), key, "child"),
            ]
            needed += self._index_members(name, key, document)
            if self.auth_on and not self._apart(name):
                set_name = keys.acl_children_key(parent_of(name))
                needed.append(Expected("set", set_name, name.encode(), key, "ACL child"))
        if self.auth_on:
            own = acl.of_document(document, key)
            if own is not None:
                mirror = acl.dumps(own)
                needed.append(Expected("string", keys.acl_key(key), mirror, key, "ACL mirror"))
                if not self._apart(key):
                    set_name = keys.acl_children_key(parent)
                    needed.append(Expected("set", set_name, key.encode(), key, "ACL child"))
        return needed

    def _index_members(self, name: str, entry: str, document: dict[str, Any]) -> list[Expected]:
        if not self.fields or (self.cluster and self.keys.is_partition_root(name)):
            return []  # on a cluster, a partition root is indexed nowhere (partitions.py)
        parent = parent_of(name)
        return [
            Expected("zset", self.keys.index_key(parent, ".".join(path)), member, entry, "index")
            for path, member in index.members(document, name, self.fields).items()
        ]

    def _apart(self, key: str) -> bool:
        return self.cluster and self.keys.children_apart(parent_of(key))

    # -- the check ---------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> Iterator[Damage]:
        """Every disagreement: first what documents need and is missing, then what is stale."""
        needed: set[tuple[str, bytes]] = set()
        strings: set[str] = set()
        checked = 0
        for batch in _batches(self._document_keys(), BATCH):
            found = self._mget([self.keys.document_key(key) for key in batch])
            expectations = [
                item
                for key, raw in zip(batch, found, strict=True)
                if raw is not None
                for item in self.expected(key, codec_json.loads_stored(raw))
            ]
            for item in expectations:
                if item.kind == "string":
                    strings.add(item.name)
                else:
                    needed.add((item.name, item.value))
            yield from (Damage(item) for item in self._missing(expectations))
            checked += len(batch)
            if progress is not None:
                progress(checked)
        yield from self._stale(needed, strings)

    def _mget(self, names: list[str]) -> list[bytes | None]:
        """MGET, by slot on a cluster."""
        if self.cluster:
            return list(self.redis.mget_nonatomic(names))
        return list(self.redis.mget(names))

    def _document_keys(self) -> Iterator[str]:
        for name in self.redis.scan_iter(match="fs:{*}:d:*", count=BATCH):
            yield self.keys.key_of_document(name.decode())

    def _missing(self, expectations: list[Expected]) -> list[Expected]:
        with self.redis.pipeline(transaction=False) as pipe:
            for item in expectations:
                if item.kind == "zset":
                    pipe.zscore(item.name, item.value)
                elif item.kind == "set":
                    pipe.sismember(item.name, item.value)
                else:
                    pipe.get(item.name)
            answers = pipe.execute()
        return [
            item
            for item, answer in zip(expectations, answers, strict=True)
            if not _holds(item, answer)
        ]

    def _stale(self, needed: set[tuple[str, bytes]], strings: set[str]) -> Iterator[Damage]:
        """What Redis holds that no document needs: members of children sets, indexes and
        ACL-children sets, alias keys and ACL mirrors (revision keys outlive their entries)."""
        kinds = {"c": ("zset", "child"), "i": ("zset", "index"), "a": ("string", "alias")}
        if self.auth_on:
            kinds |= {"ac": ("set", "ACL child"), "acl": ("string", "ACL mirror")}
        for name in self.redis.scan_iter(match="fs:{*}:*", count=BATCH):
            text = name.decode()
            parsed = parse(text)
            if parsed is None or parsed.kind not in kinds:
                continue
            kind, what = kinds[parsed.kind]
            if kind == "string":
                if text not in strings:
                    value = self.redis.get(text) or b""
                    # An alias key names its entry; a mirror is its own entry's.
                    entry = value.decode() if parsed.kind == "a" else parsed.key
                    yield Damage(Expected(kind, text, value, entry, what), stale=True)
                continue
            members = (
                self.redis.zrange(text, 0, -1) if kind == "zset" else self.redis.smembers(text)
            )
            for member in members:
                if (text, member) not in needed:
                    entry = index.key_of(member) if parsed.kind == "i" else member.decode()
                    yield Damage(Expected(kind, text, member, entry, what), stale=True)

    # -- the repair --------------------------------------------------------------------------

    def repair(self, damage: Damage, attempts: int = 20) -> bool:
        """Mend `damage` if it is still there once the entry's revision key is WATCHed; return
        whether anything was written."""
        item = damage.expected
        if self.cluster:
            # The entry's keys and its parent's may be in two slots, which no transaction
            # spans: checked again and mended at once (a write between the two is not seen).
            if not self._still(self.redis, damage):
                return False
            _mend(self.redis, damage)
            return True
        watched = self.keys.revision_key(item.entry)
        for _ in range(attempts):
            with self.redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(watched)
                    if not self._still(pipe, damage):
                        return False
                    pipe.multi()
                    _mend(pipe, damage)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue
        return False

    def _still(self, pipe: Any, damage: Damage) -> bool:
        """Whether the damage is still there, the entry read again (under WATCH)."""
        item = damage.expected
        raw = pipe.get(self.keys.document_key(item.entry))
        now = self.expected(item.entry, codec_json.loads_stored(raw)) if raw is not None else []
        if damage.stale:
            if item.kind == "string":
                return not any(e.name == item.name and e.kind == "string" for e in now)
            return not any((e.name, e.value) == (item.name, item.value) for e in now)
        return item in now


def _holds(item: Expected, answer: Any) -> bool:
    """Whether Redis's answer (ZSCORE, SISMEMBER or GET) shows `item` there."""
    if item.kind == "zset":
        return answer is not None  # a score, 0.0 for every member feedstore adds
    if item.kind == "set":
        return bool(answer)
    return bool(answer == item.value)


def _mend(pipe: Any, damage: Damage) -> None:
    item = damage.expected
    if item.kind == "zset":
        if damage.stale:
            pipe.zrem(item.name, item.value)
        else:
            pipe.zadd(item.name, {item.value: 0})
    elif item.kind == "set":
        if damage.stale:
            pipe.srem(item.name, item.value)
        else:
            pipe.sadd(item.name, item.value)
    elif damage.stale:
        pipe.delete(item.name)
    else:
        pipe.set(item.name, item.value)


def _batches(keys: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
