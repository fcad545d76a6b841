"""The write transaction: check every entry of a request against Redis, then write all or none.

`Transaction.run` WATCHes every key the request depends on (the entries, the parents inserts need,
the children of deletes), reads them, checks every entry and collects all failures, builds and
validates the new documents, and only then writes everything (documents, revisions, children,
indexes) in one MULTI/EXEC. A failed check raises at once and is never retried; a WatchError (a
writer slipped in) propagates to `Store.write`, which runs the whole check again on the newest
state.

An entry is watched through its revision key alone: every MULTI that changes an entry's document
or alias mapping also writes its revision key (the new revision, or INCRBY 0 where a delete or an
alias keeps it), so a change to any of the three fails the EXEC. Redis 6.2 checks each key a
WATCH adds against every key the connection already watches, so watching one key per entry
instead of three is what keeps a chunk of 1000 entries from costing Redis 40 ms.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Literal, NamedTuple

from redis.client import Pipeline
from redis.exceptions import WatchError

from feedstore import acl, alias, changes, codec_json, history, idempotency, merge, restore, watch
from feedstore.commit import commit
from feedstore.credentials import DeferredToken
from feedstore.entry import (
    EntryId,
    document_fields,
    merge_top_level,
    parent_of,
    put_document,
    server_authors,
    stored_document,
    timestamp,
)
from feedstore.errors import (
    Conflict,
    CrossTreeWrite,
    DuplicatedKey,
    DuplicatedKeys,
    FeedstoreError,
    HasChildren,
    InvalidId,
    MergeBaseGone,
    NotFound,
    ParentRequired,
    PreconditionFailed,
    RevisionConflict,
    collect,
)
from feedstore.history import HistoryRules
from feedstore.index import indexed_fields, members
from feedstore.keys import SCHEMA_VERSION_KEY, KeyScheme, user_groups_key
from feedstore.schema import Schema

Fields = dict[str, Any]
Patcher = Callable[[Fields, Schema | None], Fields]


class Action(Enum):
    CREATE = "create"  # POST: the key must not exist
    PUT = "put"  # PUT: the table of API.md §3.2
    PATCH = "patch"  # PATCH: the entry must exist, unless `upsert`
    DELETE = "delete"
    CLEAR = "clear"  # DELETE ?_clearfolder: the key's whole subtree, not the key
    RESTORE = "restore"  # import --mode restore: `fields` is the exported document (restore.py)


_REMOVALS = (Action.DELETE, Action.CLEAR)
_NO_KEYS: tuple[str, ...] = ()  # the subtree of a write that removes nothing


@dataclass
class Write:
    """One entry of a write request, with every precondition it carries.

    `revision` is the revision the client read (from the id or `?r=`), None for a forced write;
    `if_match` is a set of revisions or "*"; `patcher` (PATCH only) makes the new fields from
    the stored ones, inside the transaction. `numbered_under` (a POST without a self link) asks
    for the next free number under that parent: the transaction picks it, so only a write that
    commits spends one; `key` is empty until then. `merge` (`?_merge`, `Merge-Base`) makes a
    stale `revision` the base of a three-way merge (merge.py) instead of a 409. A RESTORE's
    `upsert` forces it over an entry that differs (restore.py).
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
    numbered_under: str | None = None
    claimed_id: EntryId | None = None  # the body's id, when it names another key than `key`
    merge: bool = False


class Written(NamedTuple):
    """What a write did to one key: its new revision and document (None when deleted), and
    the base revision a stale write was merged from."""

    key: str
    revision: int
    document: Mapping[str, Any] | None
    created: bool = False
    merged_from: int | None = None


@dataclass(frozen=True)
class ClusterRules:
    """What a transaction on Redis Cluster must keep to (partitions.py): its one partition;
    the parents above the partition depth found missing before it; the schema version, read
    before it (that key is in another slot)."""

    partition: str
    missing_parents: frozenset[str] = frozenset()
    schema_version: bytes | None = None
    # With auth on: the ACL mirrors of the partition's ancestors and the caller's groups, in
    # other slots, read before the transaction (never watched).
    outside_acls: Mapping[str, bytes | None] = field(default_factory=dict)
    groups: bytes | None = None


class _State:
    """What the transaction read of one target key; `alias_of` when the key is an alias."""

    # A plain class with slots: a request makes one per entry, and functools.cached_property
    # takes a lock on every first read (Python 3.11).
    __slots__ = ("_document", "alias_of", "exists", "names", "raw", "revision")

    def __init__(
        self,
        raw: bytes | None,
        revision: int,
        alias_of: str | None = None,
        names: tuple[str, str, str] = ("", "", ""),
    ) -> None:
        self.raw = raw
        self.exists = raw is not None
        self.revision = revision
        self.alias_of = alias_of
        self.names = names  # the document, revision and alias keys, as _read named them
        self._document: dict[str, Any] | None = None

    @property
    def may_have_aliases(self) -> bool:
        """False when the stored document has no alternate link: its links looked at once it
        is decoded (every write decodes it), else seen in its JSON (orjson writes every ASCII
        letter as itself), which a search of the whole document costs more than."""
        if self._document is not None:
            return bool(alias.aliases_of(self._document))
        return self.raw is not None and b'"alternate"' in self.raw

    @property
    def may_have_acl(self) -> bool:
        """False when the stored document has no contributor, so no ACL URN (as above)."""
        if self._document is not None:
            return "contributor" in self._document
        return self.raw is not None and b":acl:" in self.raw

    @property
    def document(self) -> dict[str, Any] | None:
        """The stored document, decoded on first use."""
        if self._document is None and self.raw is not None:
            self._document = codec_json.loads_stored(self.raw)
        return self._document


_ALIAS_OF = operator.attrgetter("alias_of")


class Transaction:
    """One attempt at a write request, on a pipeline that is about to WATCH."""

    def __init__(
        self,
        pipe: Pipeline,
        *,
        keys: KeyScheme,
        principal: str,
        max_subtree: int,
        schema_at: Callable[[bytes | None], Schema | None],
        cluster: ClusterRules | None = None,
        caller: acl.Caller | None = None,
        history: HistoryRules | None = None,
        changes: bool = False,
        lease: idempotency.Lease | None = None,
        token: DeferredToken | None = None,
    ) -> None:
        self.pipe = pipe
        self.changes = changes  # queue the change feed's events (changes.py)
        self.lease = lease  # with an Idempotency-Key: checked in _read, completed before EXEC
        self.history = history if history is not None and history.prefixes else None
        self.keys = keys
        self.principal = principal
        self.max_subtree = max_subtree
        self.schema_at = schema_at
        self.cluster = cluster
        # With auth on, who is writing; the ACLs of every key on the targets' paths, as read.
        self.caller = caller
        self.acls: dict[str, acl.Acl | None] = {}  # what authorization counts
        self.mirrors: dict[str, acl.Acl | None] = {}  # what Redis holds
        # A token to authenticate with the first read (`caller` is a stand-in until then).
        self.token = token

    def run(self, writes: Sequence[Write]) -> list[Written]:
        """Check every write against what is stored, then write all of them in one MULTI/EXEC."""
        pipe = self.pipe
        writes, sequences = self._numbered(writes)
        states, schema = self._read(writes)
        if any(map(_ALIAS_OF, states.values())):  # the states of `writes`, each key once
            # A write addressed to an alias is the entry's (a delete drops just the alias).
            writes = [_through_alias(w, states[w.key].alias_of) for w in writes]
            reject_duplicates(writes)  # an alias and its entry, say (Store.write saw the rest)
            self._stay_in_partition(w.key for w in writes)
            states, schema = self._read(writes)
        if self.caller is not None:
            collect(self._denied(writes, states))  # 403 outranks every other failure
        subtrees = {
            w.key: self._subtree(w)
            for w in writes
            if w.action in _REMOVALS and states[w.key].exists
        }
        if self.caller is not None and subtrees:
            collect(self._denied_below(subtrees))
        inside, unaliasing = self._aliases_inside(writes, subtrees)
        if unaliasing:
            self._stay_in_partition(w.key for w in unaliasing)
            reject_duplicates([*writes, *unaliasing])
            states.update(self._read([*writes, *unaliasing])[0])
        missing_parents = self._missing_parents(writes, states)

        now = timestamp()
        every = [*writes, *unaliasing] if unaliasing else writes
        documents: dict[str, dict[str, Any]] = {}
        merged: dict[str, int] = {}  # the base revision of each stale write merged
        errors: list[FeedstoreError] = []
        denied: list[FeedstoreError] = []
        aliased: list[Write] = []  # the writes that had or now have aliases (most have none)
        for w in every:
            try:
                state = states[w.key]
                _check(w, state, missing_parents, subtrees.get(w.key, _NO_KEYS))
                if w.action not in _REMOVALS:
                    base = self._merge_base(w, state) if w.merge else None
                    documents[w.key] = document = self._new_document(w, state, schema, now, base)
                    if base is not None:
                        merged[w.key] = int(w.revision or 0)
                    new_aliases = alias.aliases_of(document)
                    if new_aliases:
                        alias.check(w.key, new_aliases)
                    if new_aliases or state.may_have_aliases:
                        aliased.append(w)
                    changed = _acl_changed(w.key, state, document)
                    if changed and self.caller is not None and not self._may(w.key, "A"):
                        denied.append(self.caller.denial(w.key, "A"))
                elif w.action is Action.DELETE and state.may_have_aliases:
                    aliased.append(w)
            except FeedstoreError as error:
                errors.append(error)
        collect(denied)
        if self.caller is not None:
            self._hide_unreadable(errors)
        collect(errors)
        aliases = self._alias_changes(every, aliased, states, documents, subtrees, inside)

        fields = indexed_fields(schema)
        keys = self.keys
        # On a cluster, a partition root's parent keeps its children set and indexes in another
        # slot: partitions.py lists the child outside the transaction, and indexes it nowhere.
        apart = keys.is_partition_root if self.cluster is not None else _never
        written: list[Written] = []
        unchanged: set[str] = set()  # restores that found their entry as exported
        stored: dict[str, bytes | int] = {}  # documents and revisions, for one MSET
        children: dict[str, dict[str, int]] = {}  # the new keys of each parent, for one ZADD
        pipe.multi()
        for parent, last in sequences.items():
            pipe.set(keys.sequence_key(parent), last)
        for w in every:
            state = states[w.key]
            if w.action is Action.CLEAR:
                # The folder stays as it is; what goes is below it.
                _remove(pipe, keys, subtrees[w.key], w.key, fields)
                if self.caller is not None:
                    _remove_acls(pipe, keys, subtrees[w.key], w.key)
                if self.history is not None:
                    self._keep_removed(subtrees[w.key], inside)
                written.append(Written(w.key, state.revision, state.document))
                continue
            if fields and not apart(w.key):
                _update_indexes(pipe, keys, w.key, state.document, documents.get(w.key), fields)
            if w.action is Action.DELETE:
                if not apart(w.key):
                    pipe.zrem(keys.children_key(parent_of(w.key)), w.key)
                _remove(pipe, keys, [w.key, *subtrees[w.key]], w.key, fields)
                if self.caller is not None:
                    _remove_acls(pipe, keys, [w.key, *subtrees[w.key]], w.key)
                    if not apart(w.key):
                        pipe.srem(keys.acl_children_key(parent_of(w.key)), w.key)
                if self.history is not None:
                    self._keep_removed(subtrees[w.key], inside)
                    self._keep(w.key, state.revision, state.raw, removed=True)
                written.append(Written(w.key, state.revision, None))
                continue
            revision = state.revision + 1
            if w.action is Action.RESTORE:
                revision = restore.revision_of(documents[w.key])
                if restore.unchanged(state.exists, state.revision, revision):
                    written.append(Written(w.key, state.revision, state.document))
                    unchanged.add(w.key)
                    continue
            if self.caller is not None:
                self._mirror(w.key, documents[w.key], apart(w.key))
            if self.history is not None:
                self._keep(w.key, state.revision, state.raw)
            document_name, revision_name, _ = state.names
            document = documents[w.key]
            stored[document_name] = codec_json.dumps_document(document)
            stored[revision_name] = revision
            if not state.exists and not apart(w.key):
                children.setdefault(keys.children_key(parent_of(w.key)), {})[w.key] = 0
            written.append(Written(w.key, revision, document, not state.exists, merged.get(w.key)))
        # The same writes as a SET, SET and ZADD per entry, in a few commands, so a request of
        # many entries (a bulk's chunk) costs little beyond its documents. Keys are unique in a
        # request and a deleted key can't gain a child in it, so the order doesn't matter.
        if stored:
            # Not pipe.mset, which redis-py's cluster pipeline refuses whatever the slots.
            pipe.execute_command("MSET", *itertools.chain.from_iterable(stored.items()))
        for name, added in children.items():
            pipe.zadd(name, added)
        for change in aliases:
            change.queue(pipe, keys, fields, self.caller is not None)
        if self.changes:
            events = _events(every, written, subtrees, inside)
            if unchanged:  # a restore that found its entry as exported wrote nothing
                events = (event for event in events if event[0] not in unchanged)
            changes.queue(pipe, keys, self.principal, events, whole_store=self.cluster is None)
        if self.lease is not None:
            self.lease.queue(pipe, written[: len(writes)])  # the answer commits with the data
        commit(pipe)
        return written[: len(writes)]  # what the request asked for, without the unaliasing

    def _read(self, writes: Sequence[Write]) -> tuple[dict[str, _State], Schema | None]:
        """WATCH every target's revision key (which covers its document and alias mapping, see
        above) and read, in one MGET, its document, revision and alias mapping, and the schema
        version."""
        keys = [w.key for w in writes]
        triples = list(map(self.keys.entry_keys, keys))
        # The three columns of the triples, transposed in C.
        documents, revision_keys, aliases = zip(*triples, strict=True) if triples else ((), (), ())
        revisions = list(revision_keys)
        names = [*documents, *revisions, *aliases]
        # With auth on, the ACL mirrors of the targets' paths (and the caller's groups) are
        # watched and read with them: a revoke before EXEC makes the write run again. WATCH and
        # MGET go together, in one round trip; on a cluster, the schema version, in another
        # slot, was read before.
        on_path, groups = self._access_keys(keys)
        access = [*map(self.keys.acl_key, on_path), *groups]
        watched = [*revisions, *access] if access else revisions
        # With an Idempotency-Key, its record (in the same partition) is watched and read too.
        held = [self.lease.name] if self.lease is not None else []
        if held:
            watched = [*watched, *held]
        if self.cluster is None and self.token is not None:
            mget = ["MGET", *names, *access, *held, SCHEMA_VERSION_KEY]
            raw = self._read_authenticated(watched, mget)
            version = raw[-1]
        elif self.cluster is None:
            raw = self._watch_and_read(watched, "MGET", *names, *access, *held, SCHEMA_VERSION_KEY)
            version = raw[-1]
        else:
            raw = self._watch_and_read(watched, "MGET", *names, *access, *held)
            version = self.cluster.schema_version
        if self.lease is not None:
            self.lease.check(raw[len(names) + len(access)])  # LeaseLost: another's record
        if access:
            self._take_access(on_path, groups, raw[len(names) : len(names) + len(access)])
        n = len(keys)
        states = {
            key: _State(document, int(revision or 0), None if to is None else to.decode(), names)
            for key, names, document, revision, to in zip(
                keys, triples, raw[:n], raw[n : 2 * n], raw[2 * n : 3 * n], strict=True
            )
        }
        return states, self.schema_at(version)

    def _watch_and_read(self, watched: Sequence[str], *command: Any) -> Any:
        """watch.watch_and_read; with an Idempotency-Key, its lease's SET NX goes first, in
        the same round trip (idempotency.py)."""
        if self.lease is None:
            return watch.watch_and_read(self.pipe, watched, *command)
        return watch.watch_and_read(self.pipe, watched, *command, first=self.lease.claim)

    # -- authorization (API.md §16), with auth on ------------------------------------------

    def _read_authenticated(self, watched: list[str], mget: list[Any]) -> Any:
        """The first read of a write whose token is authenticated here (DeferredToken): the
        token's record is WATCHed and read with the rest, in the same round trip, and decides
        first: a token that authenticates no one is 401 before anything else is checked.
        The caller's groups are the record's (a group change rewrites it, so it is watched)."""
        assert self.token is not None and self.caller is not None
        name = self.token.record
        claim = self.lease.claim if self.lease is not None else None
        record, raw = watch.watch_and_read_all(
            self.pipe, [*watched, name], [("HGETALL", name), mget], first=claim
        )
        principal = self.token.authenticate(record)
        self.token = None  # authenticated: later reads (through an alias) need no record
        self.principal = principal.name
        self.caller = acl.Caller.of(principal, self.caller.default)
        return raw

    def _access_keys(self, keys: Sequence[str]) -> tuple[list[str], list[str]]:
        """The keys on the paths of `keys` whose ACL mirrors this transaction reads (those of
        other slots on a cluster were read before), and the caller's groups key, if it is
        read here."""
        if self.caller is None:
            return [], []
        first = not self.mirrors
        on_path = {k: None for key in keys for k in acl.path(key) if k not in self.mirrors}
        groups: list[str] = []
        uid = self.caller.principal.uid
        if self.cluster is None:
            if uid is not None and first:
                groups.append(user_groups_key(uid))
            return list(on_path), groups
        partition, outside = self.cluster.partition, self.cluster.outside_acls
        for k in list(on_path):
            if self.keys.partition(k) != partition:
                del on_path[k]
                self.acls[k] = self.mirrors[k] = acl.loads(outside.get(k))
        if uid is not None and first:
            self.caller = replace(self.caller, groups=acl.groups_of(self.cluster.groups))
        return list(on_path), groups

    def _take_access(self, on_path: list[str], groups: list[str], raw: list[Any]) -> None:
        assert self.caller is not None
        for key, value in zip(on_path, raw, strict=False):
            self.acls[key] = self.mirrors[key] = acl.loads(value)
        if groups:
            self.caller = replace(self.caller, groups=acl.groups_of(raw[-1]))

    def _may(self, key: str, right: str, layer: bool = False) -> bool:
        assert self.caller is not None
        return self.caller.decide(key, self.acls, layer).allows(right)

    def _denied(
        self, writes: Sequence[Write], states: Mapping[str, _State]
    ) -> list[FeedstoreError]:
        """A denial for each write whose right the caller lacks: C to create, U to update, D
        to delete (on the key; on its children, for `_clearfolder`)."""
        assert self.caller is not None
        denied = []
        for w in writes:
            state = states[w.key]
            if not state.exists:
                self.acls[w.key] = None  # a stale mirror of an entry gone doesn't count
            if w.action is Action.CLEAR:
                right, layer = "D", True
            elif w.action is Action.DELETE:
                right, layer = "D", False
            elif w.action is Action.CREATE or not state.exists:
                right, layer = "C", False
            else:
                right, layer = "U", False
            if not self._may(w.key, right, layer):
                denied.append(self.caller.denial(w.key, right))
        return denied

    def _denied_below(self, subtrees: Mapping[str, list[str]]) -> list[FeedstoreError]:
        """D on every entry below a removal that has an ACL of its own (watched and read)."""
        assert self.caller is not None
        below = [key for keys in subtrees.values() for key in keys]
        if not below:
            return []
        names = [self.keys.acl_key(key) for key in below]
        self.pipe.watch(*names)
        raw = watch.read(self.pipe, "MGET", *names)
        self.mirrors.update(zip(below, map(acl.loads, raw), strict=True))
        self.acls.update((key, self.mirrors[key]) for key in below)
        return [
            self.caller.denial(key, "D")
            for key in below
            if self.acls[key] is not None and not self._may(key, "D")
        ]

    def _hide_unreadable(self, errors: list[FeedstoreError]) -> None:
        """A 409 or 412 carries the stored entry only to a caller who may read it."""
        for error in errors:
            if error.current is not None and error.key and not self._may(error.key, "R"):
                error.current = None

    def _mirror(self, key: str, document: Mapping[str, Any], apart: bool) -> None:
        """Queue the update of `key`'s ACL mirror, and of its place in its parent's set of
        children with an ACL, when its ACL changes (or the mirror was stale)."""
        new = acl.of_document(document, key)
        if new == self.mirrors.get(key):
            return
        pipe, keys = self.pipe, self.keys
        if new is None:
            pipe.delete(keys.acl_key(key))
            if not apart:
                pipe.srem(keys.acl_children_key(parent_of(key)), key)
        else:
            pipe.set(keys.acl_key(key), acl.dumps(new))
            if not apart:
                pipe.sadd(keys.acl_children_key(parent_of(key)), key)

    # -- history and merge (API.md §17) --------------------------------------------------

    def _keep(self, key: str, revision: int, raw: bytes | None, removed: bool = False) -> None:
        """Queue keeping the revision a write supersedes, under a history prefix (history.py)."""
        assert self.history is not None
        count = self.history.count(key)
        if count:
            days = self.history.days if removed else 0
            history.queue(self.pipe, self.keys.history_key(key), revision, raw, count, days)

    def _keep_removed(self, keys: Iterable[str], inside: Mapping[str, bytes]) -> None:
        """Queue keeping the last revision of each entry a removal takes below its target."""
        for key in keys:
            raw = inside.get(key)
            if raw is not None:
                self._keep(key, codec_json.stored_revision(raw, key), raw, removed=True)

    def _merge_base(self, w: Write, state: _State) -> bytes | None:
        """The stored JSON of a stale write's base revision, when it asked to merge: read from
        the entry's history, under WATCH (kept revisions never change, so one HGET, and only
        for a stale write); MergeBaseGone (409) when the history no longer keeps it."""
        if not (w.merge and w.revision and state.exists and w.revision < state.revision):
            return None
        name = self.keys.history_key(w.key)
        base: bytes | None = watch.read(self.pipe, "HGET", name, str(w.revision))
        if base is None:
            raise MergeBaseGone(w.key, w.revision, state.document)
        return base

    def _stay_in_partition(self, keys: Iterable[str]) -> None:
        """On a cluster: CrossTreeWrite for a key outside the request's partition (one that an
        alias leads to, or that names an alias)."""
        if self.cluster is None:
            return
        trees = [self.cluster.partition]
        for key in keys:
            tree = self.keys.partition(key)
            if tree not in trees:
                trees.append(tree)
        if len(trees) > 1:
            raise CrossTreeWrite(trees)

    def _subtree(self, w: Write) -> list[str]:
        """The keys below a removal's target, watched. On a cluster, a parent whose children
        are partitions of their own was found without children before (partitions.py); its
        children set may still name deleted ones, which the removal drops."""
        if self.cluster is not None and self.keys.children_apart(w.key):
            return []
        recursive = w.recursive or w.action is Action.CLEAR
        return watch.subtree(self.pipe, self.keys, w.key, recursive, self.max_subtree)

    def _numbered(self, writes: Sequence[Write]) -> tuple[list[Write], dict[str, int]]:
        """Give every numbered write the next free number under its parent (so only a request
        that commits spends numbers: the counters are set in its MULTI); return copies of the
        writes, since a retry picks again, and each counter's new value."""
        wanted: dict[str, int] = {}
        for w in writes:
            if w.numbered_under is not None:
                wanted[w.numbered_under] = wanted.get(w.numbered_under, 0) + 1
        if not wanted:
            return list(writes), {}
        explicit = {w.key for w in writes if w.numbered_under is None}
        free, counters = watch.numbers(self.pipe, self.keys, wanted, explicit)
        numbered = [
            replace(w, key=free[w.numbered_under].pop(0)) if w.numbered_under is not None else w
            for w in writes
        ]
        return numbered, counters

    def _missing_parents(self, writes: Sequence[Write], states: Mapping[str, _State]) -> set[str]:
        """The parents inserts need that have no entry, or lose it in this request."""
        parents = {
            parent_of(w.key)
            for w in writes
            if w.action not in _REMOVALS and not states[w.key].exists
        }
        if not parents:
            return parents  # updates only, the usual PUT
        deleted = {w.key for w in writes if w.action is Action.DELETE}
        written = {w.key for w in writes if w.action is not Action.DELETE}
        if self.cluster is not None:
            # Parents above the partition depth were read before the transaction.
            apart = {parent for parent in parents if self.keys.children_apart(parent)}
            missing = (apart & self.cluster.missing_parents) - written
            parents -= apart
            found = watch.missing_parents(self.pipe, self.keys, parents, written)
            return found | missing | (parents & deleted)
        return watch.missing_parents(self.pipe, self.keys, parents, written) | (parents & deleted)

    def _aliases_inside(
        self, writes: Sequence[Write], subtrees: Mapping[str, list[str]]
    ) -> tuple[dict[str, bytes], list[Write]]:
        """What removals take with them: the stored documents of the entries below them (their
        aliases go too), and a write dropping the alternate link from each entry outside that
        an alias below them names."""
        if not subtrees:
            return {}, []
        gone = {w.key for w in writes if w.action is Action.DELETE}
        gone |= {key for keys in subtrees.values() for key in keys}
        inside: dict[str, bytes] = {}
        dropped: dict[str, list[str]] = {}
        for keys in subtrees.values():
            documents, aliases = watch.subtree_contents(self.pipe, self.keys, keys)
            inside.update(documents)
            for name, target in aliases.items():
                if target not in gone:
                    dropped.setdefault(target, []).append(name)
        return inside, [
            Write(Action.PATCH, target, patcher=alias.removing(names))
            for target, names in dropped.items()
        ]

    def _alias_changes(
        self,
        writes: Sequence[Write],
        aliased: Sequence[Write],
        states: Mapping[str, _State],
        documents: Mapping[str, dict[str, Any]],
        subtrees: Mapping[str, list[str]],
        inside: Mapping[str, bytes],
    ) -> list[_AliasChange]:
        """How each write moves aliases, once the keys new ones claim are checked (409, 400):
        those of `aliased`, the writes of an entry that had or now has aliases."""
        changes = [
            _AliasChange(w.key, states[w.key].document, documents.get(w.key)) for w in aliased
        ]
        for key, raw in inside.items():
            document = codec_json.loads_stored(raw)
            if alias.aliases_of(document):
                changes.append(_AliasChange(key, document, None))
        claims: dict[str, str] = {}
        errors: list[FeedstoreError] = []
        for change in changes:
            for name in change.added:
                if name in claims:
                    errors.append(DuplicatedKey(name))
                claims[name] = change.key
        if claims:
            self._stay_in_partition(claims)
            deleted = {w.key for w in writes if w.action is Action.DELETE}
            deleted |= {key for keys in subtrees.values() for key in keys}
            released = {name for change in changes for name in change.removed}
            written = set(documents)
            errors += watch.alias_claims(self.pipe, self.keys, claims, released, written, deleted)
        collect(errors)
        return changes

    def _new_document(
        self, w: Write, state: _State, schema: Schema | None, now: str, base: bytes | None = None
    ) -> dict[str, Any]:
        """The document a write stores: the new fields, checked against the schema. With a
        merge `base`, the fields are the write's changes since the base applied onto the stored
        ones (merge.py; MergeConflict when they overlap)."""
        stored = state.document
        try:
            if w.action is Action.RESTORE:
                return restore.document(
                    w.key, w.fields, stored, state.revision, schema, force=w.upsert
                )
            if base is not None and stored is not None:
                fields = self._merged(w, base, stored, schema)
            elif w.patcher is None and schema is None:
                # Most writes: a PUT with no schema to check the merged fields against.
                revision, principal = state.revision + 1, self.principal
                return put_document(
                    w.key, revision, stored, w.fields, updated=now, principal=principal
                )
            elif w.patcher is not None:
                old = document_fields(stored) if stored else (schema.defaults() if schema else {})
                fields = w.patcher(old, schema)
            else:
                fields = merge_top_level(document_fields(stored) if stored else None, w.fields)
            if schema is not None:
                schema.validate(fields, w.key, sent=w.fields if w.patcher is None else None)
        except FeedstoreError as error:
            # Patches and the schema know the field, not the entry: name it, and give a
            # conflict the stored entry, as every 409 carries it.
            error.key = error.key or w.key
            if isinstance(error, Conflict) and error.current is None:
                error.current = stored
            raise
        created_by, _ = server_authors(stored) if stored else (self.principal, None)
        return stored_document(
            w.key, state.revision + 1, fields,
            published=stored["published"] if stored else now, updated=now,
            created_by=created_by, updated_by=self.principal if stored else None,
        )  # fmt: skip

    @staticmethod
    def _merged(
        w: Write, base: bytes, stored: Mapping[str, Any], schema: Schema | None
    ) -> dict[str, Any]:
        """The request applied to its base (the same patcher, or PUT's top-level merge), then
        its changes since the base applied onto the stored fields."""
        old = document_fields(codec_json.loads_stored(base))
        mine = w.patcher(old, schema) if w.patcher is not None else merge_top_level(old, w.fields)
        return merge.three_way(old, document_fields(stored), mine, schema, key=w.key)


@dataclass
class _AliasChange:
    """One entry's aliases before and after the request, and what that queues in the MULTI."""

    key: str
    old_document: Mapping[str, Any] | None
    new_document: Mapping[str, Any] | None

    def __post_init__(self) -> None:
        self.old = set(alias.aliases_of(self.old_document))
        self.new = set(alias.aliases_of(self.new_document))
        self.added = sorted(self.new - self.old)
        self.removed = sorted(self.old - self.new)

    def queue(
        self, pipe: Pipeline, keys: KeyScheme, fields: list[tuple[str, ...]], auth: bool
    ) -> None:
        """Map the aliases added, unmap the ones removed, and keep every alias's place in its
        parent's children and indexes in step with the entry. With auth on, an alias is in its
        parent's set of children with an ACL: it is readable where its entry is (access.py)."""
        for name in self.added:
            pipe.set(keys.alias_key(name), self.key)
            _touch(pipe, keys, name)
            pipe.zadd(keys.children_key(parent_of(name)), {name: 0})
            if auth:
                pipe.sadd(keys.acl_children_key(parent_of(name)), name)
        for name in self.removed:
            pipe.delete(keys.alias_key(name))
            _touch(pipe, keys, name)
            pipe.zrem(keys.children_key(parent_of(name)), name)
            if auth:
                pipe.srem(keys.acl_children_key(parent_of(name)), name)
        for name in self.old | self.new:
            old = self.old_document if name in self.old else None
            new = self.new_document if name in self.new else None
            _update_indexes(pipe, keys, name, old, new, fields)


def _events(
    writes: Sequence[Write],
    written: Sequence[Written],
    subtrees: Mapping[str, list[str]],
    inside: Mapping[str, bytes],
) -> Iterator[tuple[str, int, str]]:
    """The change feed's events of a transaction, in its order: each key written (c, u) or
    deleted (d, with the revision deleted), the entries of a removed subtree first (their
    revisions from the documents the removal read); a `_clearfolder` keeps its folder."""
    for w, done in zip(writes, written, strict=True):
        for key in subtrees.get(w.key, ()):
            raw = inside.get(key)
            if raw is not None:  # None: an alias below, not an entry
                yield key, codec_json.stored_revision(raw, key), "d"
        if w.action is Action.CLEAR:
            continue
        operation = "d" if done.document is None else "c" if done.created else "u"
        yield done.key, done.revision, operation


def _through_alias(w: Write, target: str | None) -> Write:
    """A write addressed to an alias, made the entry's: PUT and PATCH write the entry, DELETE
    drops only the alias; creating at an alias stays there (and is refused as a duplicate)."""
    if target is None or w.action in (Action.CREATE, Action.CLEAR):
        return w
    if w.action is Action.DELETE:
        return Write(
            Action.PATCH,
            target,
            revision=w.revision,
            if_match=w.if_match,
            patcher=alias.removing([w.key]),
            index=w.index,
        )
    return replace(w, key=target)


def _remove(
    pipe: Pipeline,
    scheme: KeyScheme,
    keys: Sequence[str],
    top: str,
    fields: list[tuple[str, ...]],
) -> None:
    """Queue the removal of `keys` (a subtree below or at `top`), their children and indexes;
    each key's own children set and indexes go with it, so no parent needs updating but the
    top's (done by the caller)."""
    for key in keys:
        pipe.delete(scheme.document_key(key))
        _touch(pipe, scheme, key)
    for key in {*keys, top}:
        pipe.delete(
            scheme.children_key(key), *(scheme.index_key(key, ".".join(path)) for path in fields)
        )


def _remove_acls(pipe: Pipeline, scheme: KeyScheme, keys: Sequence[str], top: str) -> None:
    """Queue the removal of the ACL mirrors of removed `keys` and of their sets of children
    with an ACL (`top`'s too: its children go)."""
    for key in keys:
        pipe.delete(scheme.acl_key(key))
    for key in {*keys, top}:
        pipe.delete(scheme.acl_children_key(key))


def _acl_changed(key: str, state: _State, document: Mapping[str, Any]) -> bool:
    """Whether a write changes the set of ACL URNs of an existing entry; an invalid ACL URN in
    the new document is InvalidAcl either way."""
    if "contributor" not in document and not state.may_have_acl:
        return False  # the usual write: no ACL sent (ACLs are contributors) nor stored
    new = acl.of_document(document, key)
    if not state.exists or (new is None and not state.may_have_acl):
        return False  # no ACL before or after
    old = acl.of_document(state.document)
    return set(new or ()) != set(old or ())


def _touch(pipe: Pipeline, scheme: KeyScheme, key: str) -> None:
    """Write `key`'s revision unchanged, so a transaction watching it sees its entry change."""
    pipe.incrby(scheme.revision_key(key), 0)


def _never(key: str) -> bool:
    return False


def _update_indexes(
    pipe: Pipeline,
    scheme: KeyScheme,
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
        name = scheme.index_key(parent, ".".join(path))
        if path in before and before[path] != after.get(path):
            pipe.zrem(name, before[path])
        if path in after and after[path] != before.get(path):
            pipe.zadd(name, {after[path]: 0})


def reject_duplicates(writes: Sequence[Write]) -> None:
    """400 for a key written twice in one request (numbered writes have none yet)."""
    if len({w.key for w in writes}) == len(writes):
        return  # every key once, the usual request: nothing to look for
    seen: set[str] = set()
    for w in writes:
        if w.numbered_under is not None:
            continue
        if w.key in seen:
            raise DuplicatedKeys(w.key)
        seen.add(w.key)


def _check(w: Write, state: _State, missing_parents: set[str], subtree: Sequence[str]) -> None:
    """Raise the error one write meets against the stored state, if any (API.md §3, §5)."""
    if not _usual(w, state):
        _check_rules(w, state, missing_parents, subtree)


def _usual(w: Write, state: _State) -> bool:
    """Whether `w` is the usual PUT, of an entry at the revision it read, which every rule of
    _check_rules passes (test_transaction holds the two to that, whatever else the write
    carries): every entry of every PUT asks, and this is fewer steps."""
    return bool(
        w.revision
        and w.revision == state.revision
        and w.action is Action.PUT
        and w.claimed_id is None
        and w.if_match is None
        and not w.if_none_match
        and state.exists
    )


def _check_rules(
    w: Write, state: _State, missing_parents: set[str], subtree: Sequence[str]
) -> None:
    """_check's rules, one by one."""
    if w.claimed_id is not None and w.claimed_id.key != w.key:
        raise InvalidId(
            f"{w.claimed_id} does not match the self link {w.key}.", key=w.key, field="id"
        )
    if w.if_none_match and state.exists:
        raise PreconditionFailed(w.key, state.document)
    if w.if_match is not None and not (
        state.exists and (w.if_match == "*" or state.revision in w.if_match)
    ):
        raise PreconditionFailed(w.key, state.document)
    if w.action is Action.CREATE and (state.exists or state.alias_of is not None):
        if w.numbered_under is not None:
            # The number was free when picked, under WATCH: another POST took it since, so
            # this attempt's EXEC would fail anyway. Pick again rather than answer 409.
            raise WatchError(f"{w.key} was taken while numbering")
        raise DuplicatedKey(w.key, state.document)
    if w.action is Action.PATCH and not state.exists and not w.upsert:
        raise NotFound(w.key)
    if w.action in _REMOVALS and not state.exists:
        raise NotFound(w.key)
    if w.action is Action.DELETE and not w.recursive and subtree:
        raise HasChildren(w.key)
    if w.revision == 0 and state.exists:
        raise DuplicatedKey(w.key, state.document)
    if w.revision and not state.exists:
        raise NotFound(w.key)
    revision = w.revision
    # A merge (`w.merge`) of a stale revision reads its base instead (Transaction._merge_base).
    merging = w.merge and w.action not in _REMOVALS
    if revision and revision != state.revision and not (merging and revision < state.revision):
        raise RevisionConflict(w.key, revision, state.document)
    if not state.exists and w.action not in _REMOVALS and parent_of(w.key) in missing_parents:
        raise ParentRequired(w.key, parent_of(w.key))
