from __future__ import annotations

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from feedstore import codec_json
from feedstore.errors import (
    DuplicatedKey,
    EntryErrors,
    HasChildren,
    NotFound,
    ParentRequired,
    PreconditionFailed,
    RevisionConflict,
    ServiceUnavailable,
    TreeTooLarge,
)
from feedstore.keys import KeyScheme
from feedstore.store import Action, Store, Write
from tests.conftest import all_keys, put, snapshot, stored

KEYS = KeyScheme()


def test_revisions_start_at_one_and_add_one_per_write(store: Store) -> None:
    assert [w.revision for w in store.write([put("/a")])] == [1]
    assert [w.revision for w in store.write([put("/a", 1, x=1)])] == [2]
    assert [w.revision for w in store.write([put("/a", x=1)])] == [3]
    assert stored(store, "/a")["id"] == "/a,3"


def test_put_keeps_fields_it_does_not_carry(store: Store) -> None:
    store.write([put("/a", x=1, y=2)])
    store.write([put("/a", y=3)])
    document = stored(store, "/a")
    assert (document["x"], document["y"]) == (1, 3)
    assert document["published"] <= document["updated"]


def test_stale_revision_is_409_with_the_current_entry(store: Store) -> None:
    store.write([put("/a"), put("/a/1", x=1)])
    store.write([put("/a/1", 1, x=2)])
    with pytest.raises(RevisionConflict) as caught:
        store.write([put("/a/1", 1, x=3)])
    assert caught.value.current is not None and caught.value.current["id"] == "/a/1,2"
    assert stored(store, "/a/1")["x"] == 2


def test_revision_zero_inserts_and_conflicts_when_present(store: Store) -> None:
    store.write([put("/a", 0)])
    with pytest.raises(DuplicatedKey):
        store.write([put("/a", 0)])


def test_revision_on_a_missing_entry_is_404(store: Store) -> None:
    with pytest.raises(NotFound):
        store.write([put("/a", 3)])


def test_insert_needs_the_parent_unless_the_request_creates_it(store: Store) -> None:
    with pytest.raises(ParentRequired) as caught:
        store.write([put("/a/1")])
    assert caught.value.message == "Parent path is required. /a"
    store.write([put("/a/1"), put("/a")])
    assert store.count("/a") == 1


def test_a_deleted_key_continues_from_its_last_revision(store: Store) -> None:
    store.write([put("/a")])
    store.write([put("/a", x=1)])
    store.write([Write(Action.DELETE, "/a")])
    assert store.get("/a") is None
    with pytest.raises(NotFound):
        store.write([put("/a", 2)])
    assert [w.revision for w in store.write([put("/a")])] == [3]


def test_delete_refuses_an_entry_with_children_and_rf_deletes_the_subtree(store: Store) -> None:
    store.write([put("/a"), put("/a/1"), put("/a/1/x"), put("/a/2")])
    with pytest.raises(HasChildren):
        store.write([Write(Action.DELETE, "/a")])
    store.write([Write(Action.DELETE, "/a", recursive=True)])
    assert [store.get(k) for k in ("/a", "/a/1", "/a/1/x", "/a/2")] == [None] * 4
    assert store.count("/") == 0 and store.count("/a") == 0


def test_rf_refuses_a_tree_over_the_limit(redis_client: redis.Redis) -> None:
    store = Store(redis_client, max_subtree=3)
    store.write([put("/a"), put("/a/1"), put("/a/2"), put("/a/3")])
    with pytest.raises(TreeTooLarge):
        store.write([Write(Action.DELETE, "/a", recursive=True)])
    assert store.count("/a") == 3


@pytest.mark.single_redis
def test_a_failing_entry_writes_nothing_and_every_failure_is_named(
    store: Store, redis_client: redis.Redis
) -> None:
    store.write([put("/a"), put("/a/1", x=1)])
    before = snapshot(redis_client)
    with pytest.raises(EntryErrors) as caught:
        store.write([put("/a/1", 9, x=2), put("/b/1"), put("/a/2", x=3)])
    assert [type(e) for e in caught.value.errors] == [RevisionConflict, ParentRequired]
    assert caught.value.status == 409
    assert snapshot(redis_client) == before


def test_if_match_and_if_none_match(store: Store) -> None:
    store.write([put("/a")])
    with pytest.raises(PreconditionFailed):
        store.write([Write(Action.PUT, "/a", if_match=frozenset({5}))])
    with pytest.raises(PreconditionFailed):
        store.write([Write(Action.PUT, "/b", if_match="*")])
    with pytest.raises(PreconditionFailed):
        store.write([Write(Action.PUT, "/a", if_none_match=True)])
    assert store.write([Write(Action.PUT, "/a", if_match=frozenset({1, 4}))])[0].revision == 2


def test_child_keys_in_key_order_after_a_key(store: Store) -> None:
    store.write([put("/a"), *(put(f"/a/{n}") for n in "dbca")])
    assert store.child_keys("/a", None, 3) == ["/a/a", "/a/b", "/a/c"]
    assert store.child_keys("/a", "/a/c", 3) == ["/a/d"]
    documents = store.documents(["/a/b", "/a/none"])
    assert codec_json.loads_stored(documents[0] or b"")["id"] == "/a/b,1"
    assert documents[1] is None


def numbered(parent: str, **fields: object) -> Write:
    return Write(Action.CREATE, "", dict(fields), numbered_under=parent)


@pytest.mark.single_redis
def test_numbering_counts_per_parent_and_skips_taken_keys(store: Store) -> None:
    store.write([put("/a"), put("/b")])
    assert [w.key for w in store.write([numbered("/a"), numbered("/a")])] == ["/a/1", "/a/2"]
    store.write([put("/a/3")])
    assert [w.key for w in store.write([numbered("/a"), numbered("/b")])] == ["/a/4", "/b/1"]
    # A number is skipped when the same request writes that key explicitly.
    written = store.write([put("/b/2"), numbered("/b")])
    assert [w.key for w in written] == ["/b/2", "/b/3"]


def test_a_failed_write_spends_no_number(store: Store, redis_client: redis.Redis) -> None:
    store.write([put("/a")])
    with pytest.raises(ParentRequired):
        store.write([numbered("/nowhere")])
    with pytest.raises(NotFound):
        store.write([numbered("/a"), put("/a/x", 1)])  # /a/x has no revision 1: 404
    assert [w.key for w in store.write([numbered("/a")])] == ["/a/1"]
    assert redis_client.exists(KEYS.sequence_key("/nowhere")) == 0


def test_unreachable_redis_is_503() -> None:
    client = redis.Redis(unix_socket_path="/nonexistent/redis.sock", retry=Retry(NoBackoff(), 0))
    store = Store(client)
    with pytest.raises(ServiceUnavailable):
        store.get("/a")
    with pytest.raises(ServiceUnavailable):
        store.write([put("/a")])


def test_clear_removes_the_subtree_its_children_and_indexes_and_keeps_the_key(
    store: Store, redis_client: redis.Redis
) -> None:
    store.set_schema({"type": "object", "properties": {"n": {"type": "integer", "x-index": True}}})
    store.write([put("/a", n=1), put("/a/1", n=2), put("/a/1/x", n=3), put("/a/2", n=4)])
    store.write([Write(Action.CLEAR, "/a")])
    assert stored(store, "/a")["n"] == 1
    assert store.count("/a") == 0 and store.child_keys("/a", None, 10) == []
    left = {key.decode() for key in all_keys(redis_client)}
    below = [KEYS.children_key("/a"), KEYS.index_key("/a", "n"), KEYS.index_key("/a/1", "n")]
    below += [KEYS.document_key(key) for key in ("/a/1", "/a/1/x", "/a/2")]
    assert not left & set(below), "nothing below /a is left"
    kept = [
        KEYS.document_key("/a"),
        *(KEYS.revision_key(key) for key in ("/a", "/a/1", "/a/1/x", "/a/2")),
    ]
    assert set(kept) <= left, "revisions stay, so a key written again continues"
    # A cluster keeps the root's children in no index (partitions.py).
    in_index = bool(redis_client.zrange(KEYS.index_key("/", "n"), 0, -1))
    assert in_index == store.indexes_children("/"), "/a is still in its parent's index"


def test_a_worker_follows_the_schema_after_redis_lost_the_one_it_compiled(
    redis_client: redis.Redis,
) -> None:
    """Redis can lose a schema (a flush, a failover to a stale replica); a schema set after it
    must reach a worker that compiled the lost one, as it reaches a fresh worker."""
    worker, other = Store(redis_client), Store(redis_client)
    other.set_schema({"type": "object", "properties": {"a": {"type": "string"}}})
    assert worker.schema() is not None and "a" in worker.schema().document["properties"]
    redis_client.flushall()
    other.set_schema({"type": "object", "properties": {"b": {"type": "string"}}})
    assert (
        worker.schema() is not None
        and worker.schema().document == Store(redis_client).schema_document()
    )


def test_a_worker_signs_cursors_with_the_key_redis_has_now(redis_client: redis.Redis) -> None:
    worker, other = Store(redis_client), Store(redis_client)
    lost = worker.secret()
    redis_client.flushall()
    assert worker.existing_secret() is None
    fresh = other.secret()
    assert fresh != lost
    assert worker.secret() == worker.existing_secret() == fresh
