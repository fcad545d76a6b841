"""The change feed's events (changes.py): one per key of every write kind, in commit order, in
the write's own MULTI; on a real redis-server, fakeredis and a real cluster."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from redis.connection import AbstractConnection

from feedstore import changes, keys
from feedstore.changes import WHOLE_STORE_STREAM, ChangeStreams
from feedstore.errors import ChangesExpired, InvalidOption
from feedstore.keys import KeyScheme
from feedstore.store import Store
from tests.conftest import put
from tests.test_transaction import interleave, second_client

KEYS = KeyScheme()


def events(redis_client: Any, key: str = "/n") -> list[tuple[str, int, str]]:
    """The events of `key`'s partition stream, oldest first, as (key, revision, operation)."""
    found = redis_client.xrange(KEYS.change_stream_key(key), "-", "+")
    return [(f[b"k"].decode(), int(f[b"r"]), f[b"o"].decode()) for _, f in found]


def whole_store(redis_client: Any) -> list[tuple[str, int, str]]:
    found = redis_client.xrange(WHOLE_STORE_STREAM, "-", "+")
    return [(f[b"k"].decode(), int(f[b"r"]), f[b"o"].decode()) for _, f in found]


@pytest.fixture
def tree(client: FlaskClient, redis_client: Any) -> FlaskClient:
    """/n with /n/1 (and /n/1/a below it) and /n/2, the stream emptied after."""
    assert (
        client.post("/d/", json={"link": [{"___href": "/n", "___rel": "self"}]}).status_code == 201
    )
    for key in ("/n/1", "/n/1/a", "/n/2"):
        assert client.put(f"/d{key}", json={"title": key}).status_code == 200
    redis_client.delete(KEYS.change_stream_key("/n"), WHOLE_STORE_STREAM)
    return client


def test_post_put_and_delete_each_add_one_event(client: FlaskClient, redis_client: Any) -> None:
    client.post("/d/", json={"link": [{"___href": "/n", "___rel": "self"}]})
    client.post("/d/n", json={"title": "numbered"})
    client.put("/d/n/x", json={"title": "inserted"})
    client.put("/d/n/x", json={"title": "updated"})
    client.delete("/d/n/x")
    assert events(redis_client) == [
        ("/n", 1, "c"),
        ("/n/1", 1, "c"),
        ("/n/x", 1, "c"),
        ("/n/x", 2, "u"),
        ("/n/x", 2, "d"),
    ]


def test_whole_store_stream_on_a_single_redis(client: FlaskClient, redis_client: Any) -> None:
    client.post("/d/", json={"link": [{"___href": "/n", "___rel": "self"}]})
    client.post("/d/", json={"link": [{"___href": "/m", "___rel": "self"}]})
    expected = [("/n", 1, "c"), ("/m", 1, "c")]
    if isinstance(redis_client, redis.RedisCluster):
        expected = []  # events of every slot can't share one stream
    assert whole_store(redis_client) == expected


def test_put_delete_patch_and_multi_entry_feeds(tree: FlaskClient, redis_client: Any) -> None:
    feed = [
        {"link": [{"___href": "/n/2", "___rel": "self"}], "title": "two"},
        {"link": [{"___href": "/n/3", "___rel": "self"}], "title": "three"},
    ]
    assert tree.put("/d/", json=feed).status_code == 200
    assert tree.patch("/d/n/3", json={"title": "patched"}).status_code == 200
    assert (
        tree.put("/d/", json=[{"id": "/n/3,2?_delete"}, {"id": "/n/2,2", "title": "2"}]).status_code
        == 200
    )
    assert events(redis_client) == [
        ("/n/2", 2, "u"),
        ("/n/3", 1, "c"),
        ("/n/3", 2, "u"),
        ("/n/3", 2, "d"),
        ("/n/2", 3, "u"),
    ]


@pytest.mark.single_redis
def test_a_feed_across_partitions_adds_each_event_to_its_own_stream(
    client: FlaskClient, redis_client: Any
) -> None:
    for key in ("/n", "/m"):
        client.post("/d/", json={"link": [{"___href": key, "___rel": "self"}]})
    redis_client.delete(KEYS.change_stream_key("/n"), KEYS.change_stream_key("/m"))
    redis_client.delete(WHOLE_STORE_STREAM)
    feed = [{"link": [{"___href": key, "___rel": "self"}]} for key in ("/n/1", "/m/1", "/n/2")]
    assert client.put("/d/", json=feed).status_code == 200
    assert events(redis_client, "/n") == [("/n/1", 1, "c"), ("/n/2", 1, "c")]
    assert events(redis_client, "/m") == [("/m/1", 1, "c")]
    assert whole_store(redis_client) == [("/n/1", 1, "c"), ("/m/1", 1, "c"), ("/n/2", 1, "c")]
    [(_, fields)] = redis_client.xrange(KEYS.change_stream_key("/m"), "-", "+")
    assert fields[b"p"] == b"anonymous"


def test_rf_deletes_each_key_of_the_subtree(tree: FlaskClient, redis_client: Any) -> None:
    assert tree.delete("/d/n/1?_rf").status_code == 200
    assert events(redis_client) == [("/n/1/a", 1, "d"), ("/n/1", 1, "d")]


def test_clearfolder_deletes_what_is_below_and_keeps_the_folder(
    tree: FlaskClient, redis_client: Any
) -> None:
    assert tree.delete("/d/n?_clearfolder").status_code == 200
    assert sorted(events(redis_client)) == [("/n/1", 1, "d"), ("/n/1/a", 1, "d"), ("/n/2", 1, "d")]


def test_bulk_chunks_add_one_event_per_entry(tree: FlaskClient, redis_client: Any) -> None:
    feed = [{"link": [{"___href": f"/n/b{i}", "___rel": "self"}]} for i in range(5)]
    assert tree.put("/d/?_bulk", json=feed).status_code == 200
    assert sorted(events(redis_client)) == [(f"/n/b{i}", 1, "c") for i in range(5)]


def test_an_alias_edit_is_an_update_of_its_entry(tree: FlaskClient, redis_client: Any) -> None:
    body = {
        "link": [{"___href": "/n/1", "___rel": "self"}, {"___href": "/n/al", "___rel": "alternate"}]
    }
    assert tree.put("/d/?_addalias", json=[body]).status_code == 200
    assert events(redis_client) == [("/n/1", 2, "u")]


def test_revert_and_merge_are_updates(client: FlaskClient, redis_client: Any) -> None:
    client.application.extensions["feedstore"].store.history = type(
        client.application.extensions["feedstore"].store.history
    ).parse(["/n=5"])
    client.post("/d/", json={"link": [{"___href": "/n", "___rel": "self"}]})
    client.put("/d/n/1", json={"title": "a", "subtitle": "s"})
    client.put("/d/n/1", json={"title": "b"})
    assert client.put("/d/n/1?_revert=1").status_code == 200
    merged = {"link": [{"___href": "/n/1", "___rel": "self"}], "id": "/n/1,2", "subtitle": "m"}
    assert client.put("/d/n/1?_merge", json=merged).status_code == 200
    assert events(redis_client)[1:] == [
        ("/n/1", 1, "c"),
        ("/n/1", 2, "u"),
        ("/n/1", 3, "u"),
        ("/n/1", 4, "u"),
    ]


def test_changes_off_adds_no_event(redis_client: Any) -> None:
    store = Store(redis_client, changes=False)
    store.write([put("/n")])
    assert events(redis_client) == []


def test_a_watch_error_leaves_no_event(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second client writes between WATCH and EXEC: the first attempt's EXEC fails, and only
    the attempt that committed has its event (redis-py's test_watch_failure)."""
    store = Store(real_redis)
    store.write([put("/n", x=0)])
    other = Store(second_client(real_redis))
    calls = interleave(monkeypatch, lambda: other.write([put("/n", y=1)]) and None)
    store.write([put("/n", x=1)])
    assert len(calls) == 2, "the first EXEC must fail with WatchError"
    assert events(real_redis) == [("/n", 1, "c"), ("/n", 2, "u"), ("/n", 3, "u")]
    other.redis.close()


def test_a_refused_write_adds_no_event(tree: FlaskClient, redis_client: Any) -> None:
    assert tree.put("/d/n/1", json={"id": "/n/1,9", "title": "stale"}).status_code == 409
    assert events(redis_client) == []


# -- reading (ChangeStreams) -----------------------------------------------------------------


def test_read_is_exclusive_filtered_and_paged(redis_client: Any) -> None:
    store = Store(redis_client)
    store.write([put("/n")])
    for i in range(5):
        store.write([put(f"/n/{i}")])
    page = store.changes("/n/1", None, 10)
    assert [c.key for c in page.changes] == ["/n/1"] and not page.more
    first = store.changes("/n", None, 2)
    assert [c.key for c in first.changes] == ["/n", "/n/0"] and first.more
    rest = store.changes("/n", first.seq, 10)
    assert [c.key for c in rest.changes] == ["/n/1", "/n/2", "/n/3", "/n/4"]
    assert store.changes("/n", rest.seq, 10).changes == []
    assert store.last_change("/n") == rest.seq


def test_a_key_above_the_partition_depth_reads_the_whole_store(redis_client: Any) -> None:
    store = Store(redis_client)
    store.write([put("/n")])
    store.write([put("/m")])
    if isinstance(redis_client, redis.RedisCluster):
        with pytest.raises(InvalidOption, match="above the partition depth"):
            store.changes("/", None, 10)
        return
    assert [c.key for c in store.changes("/", None, 10).changes] == ["/n", "/m"]


def test_sequences_parse_strictly() -> None:
    assert changes.parse_sequence("12") == "12-0"
    assert changes.parse_sequence("12-3") == "12-3"
    for bad in ("", "x", "1-2-3", "-1", "１２"):
        with pytest.raises(InvalidOption, match="Sequence is invalid"):
            changes.parse_sequence(bad)


def test_trim_sets_an_exact_horizon(real_redis: redis.Redis) -> None:
    """With a forced clock: events older than the retention go, the horizon is the last one
    trimmed; a read from below it is 410, from it is fine."""
    store = Store(real_redis)
    for i in range(4):
        store.write([put(f"/n{'/' + str(i) if i else ''}")])
        time.sleep(0.002)  # each event in a millisecond of its own, so the cut falls between
    seqs = [entry_id.decode() for entry_id, _ in real_redis.xrange(KEYS.change_stream_key("/n"))]
    cut = int(seqs[2].split("-")[0])  # keep events from the third on (by its millisecond)
    streams = ChangeStreams(real_redis, KEYS, cluster=False)
    kept_from = [s for s in seqs if int(s.split("-")[0]) >= cut]
    trimmed = dict(streams.trim(100, 1000, now=cut / 1000 + 100))
    assert trimmed[KEYS.change_stream_key("/n")] == len(seqs) - len(kept_from)
    horizon = seqs[len(seqs) - len(kept_from) - 1]
    assert streams.horizon("/n") == horizon
    with pytest.raises(ChangesExpired) as caught:
        store.changes("/n", seqs[0] if seqs[0] != horizon else "0-0", 10)
    assert caught.value.oldest == kept_from[0]
    assert [c.seq for c in store.changes("/n", horizon, 10).changes] == kept_from


def test_trim_keeps_at_most_the_newest(real_redis: redis.Redis) -> None:
    store = Store(real_redis)
    for i in range(6):
        store.write([put(f"/n/{i}") if i else put("/n")])
    streams = ChangeStreams(real_redis, KEYS, cluster=False)
    dict(streams.trim(10**6, 2))
    assert [c.key for c in store.changes("/n", streams.horizon("/n"), 10).changes] == [
        "/n/4",
        "/n/5",
    ]


def test_trim_reads_the_events_past_the_most_a_page_at_a_time(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(real_redis)
    for i in range(8):
        store.write([put(f"/n/{i}") if i else put("/n")])
    stream = KEYS.change_stream_key("/n")
    events = [entry_id.decode() for entry_id, _ in real_redis.xrange(stream)]
    monkeypatch.setattr(changes, "TRIM_PAGE", 2)
    sent: list[tuple[Any, ...]] = []
    send = AbstractConnection.send_command

    def recorded(self: AbstractConnection, *args: Any, **options: Any) -> None:
        if args[0] == "XRANGE":  # as text: redis-py's own sends some as bytes
            sent.append(tuple(a.decode() if isinstance(a, bytes) else str(a) for a in args[1:]))
        send(self, *args, **options)

    monkeypatch.setattr(AbstractConnection, "send_command", recorded)
    decoded = []  # the XRANGEs whose events redis-py turns into dicts
    xrange = real_redis.xrange

    def counted(name: str, *args: Any, **options: Any) -> Any:
        found = xrange(name, *args, **options)
        decoded.append(len(found))
        return found

    monkeypatch.setattr(real_redis, "xrange", counted)
    streams = ChangeStreams(real_redis, KEYS, cluster=False)
    trimmed = dict(streams.trim(10**6, 3))
    assert trimmed == {stream: 5, WHOLE_STORE_STREAM: 5}
    # Per stream, the probe for events past the retention (none) is the one XRANGE decoded;
    # the five events past the three kept are read two at a time, only their ids used.
    assert decoded == [1, 1]
    assert [args for args in sent if args[0] == stream] == [
        (stream, "-", "+", "COUNT", "1"),
        (stream, "-", "+", "COUNT", "2"),
        (stream, f"({events[1]}", "+", "COUNT", "2"),
        (stream, f"({events[3]}", "+", "COUNT", "1"),
    ]
    monkeypatch.undo()
    kept = store.changes("/n", streams.horizon("/n"), 10).changes
    assert [c.key for c in kept] == ["/n/5", "/n/6", "/n/7"]


def test_trim_looks_for_the_newest_expired_event_only_when_the_oldest_is_expired(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis 6.2's XREVRANGE from below every event walks the whole stream: the pass must not
    send it for a stream with nothing past the retention, the usual case."""
    store = Store(real_redis)
    for i in range(3):
        store.write([put(f"/n/{i}") if i else put("/n")])
    ends = []
    xrevrange = real_redis.xrevrange

    def recorded(name: str, *args: Any, **options: Any) -> Any:
        ends.append(args[0])
        return xrevrange(name, *args, **options)

    monkeypatch.setattr(real_redis, "xrevrange", recorded)
    streams = ChangeStreams(real_redis, KEYS, cluster=False)
    assert dict(streams.trim(10**6, 1000)) == {
        KEYS.change_stream_key("/n"): 0,
        WHOLE_STORE_STREAM: 0,
    }
    assert ends == []
    # A day later, with a retention of an hour, every event is past it.
    later = time.time() + 86400
    assert dict(streams.trim(3600, 1000, now=later)) == {
        KEYS.change_stream_key("/n"): 3,
        WHOLE_STORE_STREAM: 3,
    }
    assert len(ends) == 2
    monkeypatch.undo()
    assert store.changes("/n", streams.horizon("/n"), 10).changes == []


def test_streams_are_no_entry_keys_for_migrate() -> None:
    """`feedstore migrate` renames what keys.parse reads: never a change stream."""
    for name in ("fs:{/n}:x", "fs:{/n}:xh", "fs:x:/", "fs:xh:/"):
        assert keys.parse(name) is None
    assert keys.parse("fs:{/n}:d:/n") is not None
