"""What a write does differently on Redis Cluster, where one transaction can't leave one slot.

Every key of a partition shares its hash tag (keys.py), so a request whose entries are all in
one partition runs its one WATCH/MULTI/EXEC as on a single Redis, on the plain pipeline of the
node that holds the partition's slot (PartitionRoute), with the cluster pipeline as fallback
while the slot moves. Around that:

- A request whose entries are in two partitions is refused (CrossTreeWrite, 400) before anything
  is read or written: atomicity across slots is impossible on Redis Cluster.
- A parent above the partition depth (the root at depth 1, `/_user` at depth 2) keeps its
  children set, numbering counter and indexes in its own partition, not in its children's. For
  a child of such a parent (a partition root):
  - the child is ZADDed to the parent's children set before and after its transaction and never
    ZREMed on the request path: a listing never misses an entry that exists; readers skip the
    members without a document, and counts count documents (Store.count);
  - the parent's existence is read before the transaction, not watched;
  - a POST without a self link takes its number (INCR) before the transaction, so a POST that
    then fails has spent a number;
  - the child is in no index of the parent (`x-index`): feeds of such a parent scan or sort in
    memory;
  - deleting such a parent (depth 2 and more) reads its children's documents first: 400
    has_children while one exists, cross_tree_write with `?_rf`, since its subtree spans
    partitions.
On a single Redis none of this applies: everything stays inside the one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterError,
    MovedError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.retry import Retry

from feedstore.entry import ROOT, parent_of
from feedstore.errors import CrossTreeWrite, HasChildren, ServiceUnavailable
from feedstore.keys import KeyScheme
from feedstore.transaction import Action, ClusterRules, Write, Written

# How many taken numbers a POST skips before giving up (each one an INCR and an EXISTS).
MAX_SKIPPED_NUMBERS = 1000


@dataclass
class Prepared:
    """A cluster request made ready for its transaction: numbered, checked, its partition."""

    writes: list[Write]
    rules: ClusterRules
    # The children sets of parents above the depth, and the keys ZADDed to them before.
    listed: dict[str, list[str]]


def unretried(pipe: Any) -> Any:
    """A cluster transaction pipeline (PartitionRoute's fallback) that raises, rather than
    retries, what a command meets while it WATCHes: redis-py (8.1) retries a command that met
    MOVED, ASK or a lost connection on a new connection, where the earlier WATCHes no longer
    hold, so the EXEC would go unguarded. Raised, Store.write runs the whole attempt again."""
    strategy = getattr(pipe, "_execution_strategy", None)
    retry = getattr(strategy, "_retry", None)
    if retry is not None:
        # Still calls redis-py's failure handler once (it drops the connection), then raises.
        strategy._retry = Retry(NoBackoff(), 0, supported_errors=retry._supported_errors)  # type: ignore[union-attr]
    return pipe


class PartitionRoute:
    """Where one cluster write runs its transaction: on a plain pipeline of the node that holds
    its partition's slot, or, once that fails, on redis-py's cluster pipeline (unretried).

    redis-py's cluster pipeline spends about 100 us of Python routing each command, as much as
    a round trip; the node's own pipeline is the single-Redis path of Transaction. A node that
    no longer holds the slot answers MOVED to the first command (a WATCH or a read while
    watching, so nothing is written): the cluster client learns the new owner and the attempt
    runs again there. ASK or TRYAGAIN (the slot is moving), a lost connection, an uncovered
    slot, or MOVED for a key of another slot (an alias elsewhere, refused as cross-slot) send
    the rest of the request's attempts through the cluster pipeline, which handles them.
    """

    def __init__(self, client: Any, scheme: KeyScheme, prepared: Prepared) -> None:
        self.client = client
        # Any key of the partition: the hash tag alone decides the slot.
        self.slot_key = scheme.tag(prepared.rules.partition)
        self.slot = int(client.keyslot(self.slot_key))
        self.direct = True

    def pipeline(self) -> Any:
        """A transaction pipeline for the next attempt."""
        if self.direct:
            try:
                node = self.client.get_node_from_key(self.slot_key)
            except SlotNotCoveredError:
                self.direct = False
            else:
                return self.client.get_redis_connection(node).pipeline(transaction=True)
        return unretried(self.client.pipeline(transaction=True))

    def rerouted(self, error: Exception) -> bool:
        """Whether `error`, met on the node's own pipeline, is no conflict but a wrong route:
        then the next attempt goes elsewhere. A WatchError is a conflict unless redis-py
        raised it for a connection lost while watching."""
        if not self.direct:
            return False
        if isinstance(error, redis.WatchError) and "while watching" not in str(error):
            return False
        if isinstance(error, MovedError) and error.slot_id == self.slot:
            self.client.nodes_manager.move_slot(error)
            return True
        self.direct = False
        return True


def trees_of(scheme: KeyScheme, writes: Sequence[Write]) -> list[str]:
    """The partitions the writes are in, in request order; a POST numbered under a parent
    above the depth is a new one of its own."""
    trees: list[str] = []
    for w in writes:
        if w.numbered_under is None:
            tree = scheme.partition(w.key)
        elif scheme.children_apart(w.numbered_under):
            # Each one a partition of its own, however many there are.
            trees.append(f"a new entry under {w.numbered_under}")
            continue
        else:
            tree = scheme.partition(w.numbered_under)
        if tree not in trees:
            trees.append(tree)
    return trees


def prepare(client: Any, scheme: KeyScheme, writes: Sequence[Write]) -> Prepared:
    """Refuse a request over two partitions, number a POST under a parent above the depth,
    read the parents and children that live elsewhere, and list new partition roots."""
    trees = trees_of(scheme, writes)
    if len(trees) > 1:
        raise CrossTreeWrite(trees)
    writes = [_numbered(client, scheme, w) for w in writes]
    partition = scheme.partition(writes[0].key) if writes else ROOT
    heads = [w for w in writes if scheme.is_partition_root(w.key)]
    for w in heads:
        if w.action in (Action.DELETE, Action.CLEAR) and scheme.children_apart(w.key):
            _check_children(client, scheme, w)
    parents = sorted(
        {
            parent_of(w.key)
            for w in heads
            if w.action not in (Action.DELETE, Action.CLEAR) and parent_of(w.key) != ROOT
        }
    )
    missing: set[str] = set()
    if parents:
        found = _mget(client, [scheme.document_key(parent) for parent in parents])
        missing = {parent for parent, raw in zip(parents, found, strict=True) if raw is None}
    listed: dict[str, list[str]] = {}
    for w in heads:
        if w.action not in (Action.DELETE, Action.CLEAR) and parent_of(w.key) not in missing:
            listed.setdefault(scheme.children_key(parent_of(w.key)), []).append(w.key)
    _list(client, listed)
    return Prepared(writes, ClusterRules(partition, frozenset(missing)), listed)


def finish(client: Any, prepared: Prepared, written: Sequence[Written]) -> None:
    """ZADD the partition roots a request created again, after its EXEC: a prune that ran
    between the first ZADD and the EXEC can't have dropped them for good."""
    created = {each.key for each in written if each.created}
    _list(
        client,
        {name: [key for key in keys if key in created] for name, keys in prepared.listed.items()},
    )


def _list(client: Any, listed: dict[str, list[str]]) -> None:
    for name, keys in listed.items():
        if keys:
            client.zadd(name, dict.fromkeys(keys, 0))


def _numbered(client: Any, scheme: KeyScheme, w: Write) -> Write:
    """A POST numbered under a parent above the depth, given its number now: the number's
    counter is in the parent's partition, the new entry in a partition of its own."""
    parent = w.numbered_under
    if parent is None or not scheme.children_apart(parent):
        return w
    prefix = "" if parent == ROOT else parent
    for _ in range(MAX_SKIPPED_NUMBERS):
        key = f"{prefix}/{int(client.incr(scheme.sequence_key(parent)))}"
        taken = _mget(client, [scheme.document_key(key), scheme.alias_key(key)])
        if taken == [None, None]:
            return replace(w, key=key, numbered_under=None)
    raise ServiceUnavailable(f"No free number under {parent}. Please retry.")


def _check_children(client: Any, scheme: KeyScheme, w: Write) -> None:
    """Deleting a parent whose children are partitions of their own: none may exist."""
    name = scheme.children_key(w.key)
    start = b"-"
    while True:
        batch = cast(list[bytes], client.zrangebylex(name, start, b"+", start=0, num=500))
        keys = [member.decode() for member in batch]
        found = _mget(client, [scheme.document_key(key) for key in keys])
        alive = [key for key, raw in zip(keys, found, strict=True) if raw is not None]
        if alive:
            if w.recursive or w.action is Action.CLEAR:
                raise CrossTreeWrite([scheme.partition(w.key), *alive[:3]])
            raise HasChildren(w.key)
        if len(batch) < 500:
            return
        start = b"(" + batch[-1]


def _mget(client: Any, names: list[str]) -> list[bytes | None]:
    """MGET over any slots (on a cluster, read_each)."""
    if not names:
        return []
    if isinstance(client, redis.RedisCluster):
        return read_each(client, names)
    return cast(list[bytes | None], client.mget(names))


def read_one(client: Any, name: str) -> bytes | None:
    """The value of one key on a cluster, asked of the node that holds its slot directly.

    redis-py's cluster client spends about 100 us of Python on each command it routes, as much
    as the round trip itself; an entry's GET goes straight to the node's own client instead.
    When that node answers MOVED or ASK (the slot moved, or is moving) or can't be reached, the
    cluster client asks again: it follows the redirection and learns the new slot map.
    """
    try:
        return cast(
            bytes | None, client.get_redis_connection(client.get_node_from_key(name)).get(name)
        )
    except (MovedError, AskError, redis.ConnectionError, SlotNotCoveredError):
        return cast(bytes | None, client.get(name))


def read_each(client: Any, names: list[str]) -> list[bytes | None]:
    """The values of `names` on a cluster, at any time: an MGET per slot, or, while a slot
    moves, one GET per key.

    While a slot moves between primaries, a multi-key command on it is refused with TRYAGAIN
    whenever some of its keys have moved and some not (a page of children), for as long as the
    move takes, longer than redis-py retries it. A single key is always served, by the node
    that has it (after ASK).
    """
    if not names:
        return []
    try:
        return cast(list[bytes | None], client.mget_nonatomic(names))
    except (TryAgainError, ClusterError):
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(name)
            return cast(list[bytes | None], pipe.execute())
