"""The Redis key scheme: every key feedstore writes, in one place.

The rule every key follows, now and later: **a key that belongs to an entry key carries the hash
tag of that key's partition**, `fs:{<partition>}:<kind>:<entry key>`. The partition of a key is
its first `depth` segments (`/11/1/2` is in `/11` at depth 1, in `/11/1` at depth 2; a key with
fewer segments is its own partition; the root's is `/`). Redis Cluster places a key by its tag
alone, so every key of one partition lives in one slot, and a request's WATCH/MULTI/EXEC stays in
one slot: on a single Redis and on a cluster alike. The depth is a setting (`partition_depth`,
recorded in Redis under `fs:partition-depth`, see migration.py); keys of a parent *above* the
depth (the root at depth 1, `/_user` at depth 2) are in another partition than its children.

fs:{P}:d:<key>          the stored document (orjson), present while the entry exists
fs:{P}:r:<key>          the last revision written; kept after a delete, so a re-insert continues;
                        written (INCRBY 0 when it stays) in every MULTI that changes fs:d:<key> or
                        fs:a:<key>, so a WATCH of it covers both (transaction.py)
fs:{P}:c:<key>          sorted set of the keys of <key>'s children (score 0: lexicographic order)
fs:{P}:a:<alias>        an alias (alias.py): the key of the entry it names, while it does; P is
                        the alias key's own partition
fs:{P}:n:<key>          the counter that numbers children POSTed without a self link (and
                        `_allocids`)
fs:{P}:ids:<key>        the vte.cx counter of <key> (`_addids`, `_getids`, `_setids`)
fs:{P}:idr:<key>        the range of that counter (`_rangeids`, counter_range.py), absent without
fs:{P}:i:<field>:<key>  the index of <key>'s children on an `x-index` field (index.py)
fs:{P}:acl:<key>        the entry's own ACL (acl.py), JSON [[principal, rights], ...]; absent
                        when it has none; kept only while auth is on (`feedstore acl reindex`)
fs:{P}:ac:<key>         set of <key>'s children that carry an ACL of their own (auth.md calls
                        it fs:a:, a kind aliases already use); not kept on a cluster for a
                        parent whose children are partitions of their own (partitions.py)
fs:{P}:h:<key>          hash: revision -> stored JSON of <key>'s superseded revisions, only under
                        a `history` prefix (history.py); written in the write's MULTI, expires
                        `history_days` after a delete
fs:{P}:x                stream: the change feed of partition P (changes.py), one event (fields
                        k r o p) per key written or deleted, XADDed in the write's MULTI
fs:{P}:xh               the id of the last event trimmed from fs:{P}:x (the 410 horizon)
fs:{P}:idem:<principal>:<sha256 hex of an Idempotency-Key>
                        a write's idempotency record (idempotency.py): `p:<token>` while its
                        lease is held (PX 30000), then its answer, set in the write's MULTI
                        (EX `idempotency_ttl`); P is the partition of the request's first
                        target key (a POST without self link: its parent's), <principal> the
                        writer's name (a uid, or `anonymous`)
where P is the partition of the <key> (or <alias>) the key names.

Global keys, outside every partition (each read or written alone, or with its own tag):
fs:{schema}             the field schema in force (JSON), shared by every worker
fs:{schema}:v           its version, a random token new on every change, read with every write
fs:secret               the key that signs feed cursors, made once, read by every worker per page
fs:pg:<digest>          list: the cursors ending each page of a pagination index (pagination.py);
                        <digest> is the SHA-256 of the parent, filters, sort and page size; expires
fs:partition-depth      the partition depth the keys are written with (migration.py)
fs:x:/                  stream: the change feed of the whole store, on a single Redis only (a
                        cluster can't keep one: its events are in every slot); fs:xh:/ its horizon
fs:xtrim                the lease of the change feed's retention pass, one a minute (changes_cli)
fs:xscan, fs:xknown     the lease of its SCAN for streams, one per 10 minutes, and the set of the
                        streams that SCAN found, which the passes between trim (changes.py)

Credentials (credentials.py, sessions.py; global, each read or written alone or in a
non-transactional pipeline, so they may sit in any slot of a cluster):
fs:uidseq               the counter that numbers users (uids are decimal, as vte.cx's)
fs:user:<account>       hash: uid, password (argon2id; empty for a token-only user), disabled
                        ("0"/"1"), created (Unix seconds)
fs:uid:<uid>            the account of a uid
fs:ug:<uid>             the uid's group keys, a JSON array (`["/_group/sales"]`); a string, so a
                        write can WATCH it and read it in its MGET
fs:grp:<group>          set of the member uids of /_group/<group> (for listing)
fs:tok:<id>             hash: uid, account, groups (a copy of fs:ug, kept in step by the CLI, so
                        a token costs one read), secret_sha256 (hex), name, created, expires (Unix
                        seconds, empty: never), service ("0"/"1"), last_used (at most once a minute)
fs:tokens:<uid>         set of the uid's token ids
fs:sess:<sha256(sid)>   hash: uid, account, created, groups (at login); EXPIRE = the idle timeout,
                        pushed back on use
fs:sessions:<uid>       set of the uid's session digests, for the CLI to end them; EXPIRE = the
                        maximum session age
fs:fail:<account>       failed logins in a row; EXPIRE = the lock it earned plus 15 minutes

Entry keys contain no `{`, `}` or `:` (entry.py), so a key parses back unambiguously.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from feedstore.entry import ROOT

SCHEMA_KEY = "fs:{schema}"
SCHEMA_VERSION_KEY = "fs:{schema}:v"
SECRET_KEY = "fs:secret"
DEPTH_KEY = "fs:partition-depth"
PAGE_INDEX_PREFIX = "fs:pg:"
# The kinds of partitioned keys, as they appear after the tag.
KINDS = ("d", "r", "c", "a", "n", "ids", "idr", "i", "acl", "ac", "h", "x", "xh", "idem")
# The change feed's kinds (changes.py): one stream and its horizon per partition, no entry key.
STREAM_KINDS = ("x", "xh")
USER_GROUPS_PREFIX = "fs:ug:"
DEFAULT_DEPTH = 1
MAX_DEPTH = 10


@dataclass(frozen=True)
class KeyScheme:
    """The Redis keys of entries at one partition depth; made once per app, passed explicitly.

    Every method is plain string slicing: it runs several times per entry of every write.
    """

    depth: int = DEFAULT_DEPTH

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= MAX_DEPTH:
            raise ValueError(f"the partition depth must be 1 to {MAX_DEPTH}: {self.depth}")

    def partition(self, key: str) -> str:
        """The partition of an entry key: its first `depth` segments (the root's is the root)."""
        if self.depth == 1:  # the default, on every write's path: one find
            end = key.find("/", 1)
            return key if end < 0 else key[:end]
        end = 0
        for _ in range(self.depth):
            end = key.find("/", end + 1)
            if end < 0:
                return key
        return key[:end] or ROOT

    def is_partition_root(self, key: str) -> bool:
        """Whether `key` heads its own partition, its parent's keys being in another one."""
        return key != ROOT and key.count("/") <= self.depth

    def children_apart(self, key: str) -> bool:
        """Whether the children of `key` are each in a partition of their own (the root's are)."""
        return key == ROOT or key.count("/") < self.depth

    def tag(self, key: str) -> str:
        """`fs:{<partition>}:`, the start of every key of `key`'s partition."""
        if self.depth == 1:  # partition()'s own shortcut, without the call: every key asks
            end = key.find("/", 1)
            return f"fs:{{{key if end < 0 else key[:end]}}}:"
        return f"fs:{{{self.partition(key)}}}:"

    def entry_keys(self, key: str) -> tuple[str, str, str]:
        """The document, revision and alias keys of `key`, the partition found once."""
        tag = self.tag(key)
        return tag + "d:" + key, tag + "r:" + key, tag + "a:" + key

    def document_key(self, key: str) -> str:
        return self.tag(key) + "d:" + key

    def revision_key(self, key: str) -> str:
        return self.tag(key) + "r:" + key

    def children_key(self, key: str) -> str:
        return self.tag(key) + "c:" + key

    def alias_key(self, alias: str) -> str:
        return self.tag(alias) + "a:" + alias

    def sequence_key(self, key: str) -> str:
        return self.tag(key) + "n:" + key

    def counter_key(self, key: str) -> str:
        return self.tag(key) + "ids:" + key

    def counter_range_key(self, key: str) -> str:
        return self.tag(key) + "idr:" + key

    def acl_key(self, key: str) -> str:
        return self.tag(key) + "acl:" + key

    def acl_children_key(self, parent: str) -> str:
        return self.tag(parent) + "ac:" + parent

    def history_key(self, key: str) -> str:
        return self.tag(key) + "h:" + key

    def change_stream_key(self, key: str) -> str:
        """The change feed of `key`'s partition (changes.py)."""
        return self.tag(key) + "x"

    def change_horizon_key(self, key: str) -> str:
        return self.tag(key) + "xh"

    def idempotency_key(self, key: str, principal: str, digest: str) -> str:
        """The record of an Idempotency-Key (`digest`, its SHA-256 in hex) of `principal`'s,
        in the partition of `key`, the request's first target (idempotency.py)."""
        return f"{self.tag(key)}idem:{principal}:{digest}"

    def index_key(self, parent: str, field: str) -> str:
        return f"{self.tag(parent)}i:{field}:{parent}"

    def key_of_document(self, name: str) -> str:
        """The entry key of a document key (`fs:{/a}:d:/a/1` -> `/a/1`)."""
        return name.partition("}:d:")[2]


@dataclass(frozen=True)
class ParsedKey:
    """A key of feedstore's, any scheme: its kind, the entry key it names, an index's field."""

    kind: str
    key: str
    field: str = ""
    tag: str | None = None  # the partition tag it carries; None in the untagged (old) scheme

    def name(self, scheme: KeyScheme) -> str:
        """Its name in `scheme`."""
        if self.kind == "i":
            return scheme.index_key(self.key, self.field)
        return scheme.tag(self.key) + self.kind + ":" + self.key


def parse(name: str) -> ParsedKey | None:
    """A partitioned key of the tagged or of the old, untagged scheme (`fs:d:/11/1`), or None
    for a global key or one that isn't feedstore's."""
    if not name.startswith("fs:"):
        return None
    rest, tag = name[3:], None
    if rest.startswith("{"):
        tag, _, rest = rest[1:].partition("}:")
    kind, _, tail = rest.partition(":")
    if kind not in KINDS or not tail or kind in STREAM_KINDS:
        # A change stream is its partition's, not an entry's: migrate leaves it where it is.
        return None
    if kind == "i":
        field, _, key = tail.rpartition(":")
        return ParsedKey(kind, key, field, tag) if field and key.startswith("/") else None
    return ParsedKey(kind, tail, "", tag) if tail.startswith("/") else None


def user_groups_key(uid: str) -> str:
    return USER_GROUPS_PREFIX + uid


def page_index_key(scope: str) -> str:
    return PAGE_INDEX_PREFIX + hashlib.sha256(scope.encode()).hexdigest()
