"""`feedstore acl reindex`: build the ACL mirrors from the stored entries (API.md §16.6).

Writes keep the mirrors (`fs:{P}:acl:<key>`, `fs:{P}:ac:<parent>`, keys.py) in step only while
auth is on; data written before needs them built once, before serving with auth on.
"""

from __future__ import annotations

from feedstore import acl, codec_json
from feedstore.entry import parent_of
from feedstore.keys import parse
from feedstore.store import Store

BATCH = 1000


def reindex(store: Store) -> tuple[int, int]:
    """Drop every ACL mirror, then mirror the ACL of each stored entry; return how many entries
    were read and how many have an ACL. An entry with an invalid ACL URN is InvalidAcl, naming
    it. Run it while no server writes with auth on (a write meanwhile may be undone)."""
    client, keys = store.redis, store.keys
    for pattern in ("fs:{*}:acl:*", "fs:{*}:ac:*"):
        for name in list(client.scan_iter(match=pattern, count=BATCH)):
            client.delete(name)
    read = owned = 0
    batch: list[str] = []
    names = client.scan_iter(match="fs:{*}:d:*", count=BATCH)
    for name in names:
        batch.append(keys.key_of_document(name.decode()))
        if len(batch) == BATCH:
            owned += _mirror(store, batch)
            read, batch = read + len(batch), []
    read, owned = read + len(batch), owned + _mirror(store, batch)
    with client.pipeline(transaction=False) as pipe:
        for name in client.scan_iter(match="fs:{*}:a:*", count=BATCH):
            parsed = parse(name.decode())
            if (
                parsed is not None
                and parsed.kind == "a"
                and not (store.cluster and keys.children_apart(parent_of(parsed.key)))
            ):
                pipe.sadd(keys.acl_children_key(parent_of(parsed.key)), parsed.key)
        pipe.execute()
    return read, owned


def _mirror(store: Store, batch: list[str]) -> int:
    owned = 0
    with store.redis.pipeline(transaction=False) as pipe:
        for key, raw in zip(batch, store.documents(batch), strict=True):
            if raw is None:
                continue
            found = acl.of_document(codec_json.loads_stored(raw), key)
            if found is None:
                continue
            owned += 1
            pipe.set(store.keys.acl_key(key), acl.dumps(found))
            if not (store.cluster and store.keys.children_apart(parent_of(key))):
                pipe.sadd(store.keys.acl_children_key(parent_of(key)), key)
        pipe.execute()
    return owned
