"""On a real Redis Cluster: one request writes one partition, and parents above the partition
depth keep their children outside the child's transaction (partitions.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from feedstore import create_app, transaction
from feedstore.keys import DEPTH_KEY, KeyScheme, parse
from feedstore.store import Store
from tests.conftest import put, snapshot, stored
from tests.redis_cluster import RedisCluster

JSON = "application/json"
HEADERS = {"X-Requested-With": "XMLHttpRequest"}


@pytest.fixture
def cluster_client(redis_cluster: RedisCluster) -> Iterator[redis.RedisCluster]:
    redis_cluster.flush()
    client = redis_cluster.client()
    yield client
    client.close()


def http(client: redis.RedisCluster, depth: int = 1) -> FlaskClient:
    app: Flask = create_app({"partition_depth": depth}, client)
    test_client = app.test_client()
    test_client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    return test_client


def entry(key: str, **fields: Any) -> dict[str, Any]:
    return {"link": [{"___href": key, "___rel": "self"}], **fields}


def keys_of(response: Any) -> list[str]:
    return [e["link"][0]["___href"] for e in response.json["feed"].get("entry", [])]


def test_a_request_over_two_trees_is_400_and_writes_nothing(
    cluster_client: redis.RedisCluster,
) -> None:
    client = http(cluster_client)
    assert client.post("/d/", json=[entry("/11")]).status_code == 201
    assert client.post("/d/", json=[entry("/12")]).status_code == 201
    before = snapshot(cluster_client)
    response = client.put("/d/", json=[entry("/11", x=1), entry("/11/1"), entry("/12", x=2)])
    assert response.status_code == 400
    assert response.json["error"]["code"] == "cross_tree_write"  # type: ignore[index]
    assert response.json["feed"]["title"] == (  # type: ignore[index]
        "Entries of one request must be in one tree on Redis Cluster. /11, /12"
    )
    assert snapshot(cluster_client) == before


def test_a_one_tree_request_with_a_bad_entry_writes_nothing(
    cluster_client: redis.RedisCluster,
) -> None:
    client = http(cluster_client)
    assert client.post("/d/", json=[entry("/11"), entry("/11/1")]).status_code == 201
    before = snapshot(cluster_client)
    body = [entry("/11/2", x=1), entry("/11/1", id="/11/1,7"), entry("/11/3")]
    response = client.put("/d/", json=body)
    assert response.status_code == 409
    assert snapshot(cluster_client) == before


def test_every_key_of_a_partition_is_in_one_slot(
    cluster_client: redis.RedisCluster, redis_cluster: RedisCluster
) -> None:
    client = http(cluster_client)
    schema = {"type": "object", "properties": {"n": {"type": "integer", "x-index": True}}}
    Store(cluster_client).set_schema(schema)
    assert client.post("/d/", json=[entry("/t"), entry("/t/a", n=1)]).status_code == 201
    alias = {"___href": "/t/b", "___rel": "alternate"}
    body = [{"link": [{"___href": "/t/a/x", "___rel": "self"}, alias], "n": 2}]
    assert client.post("/d/", json=body).status_code == 201
    assert client.post("/d/t/a", json=[{"n": 3}]).status_code == 201, "a numbered POST"
    assert client.put("/d/t/a?_addids=5").status_code == 200
    assert client.put("/d/t/a?_rangeids", json={"feed": {"title": "1-100"}}).status_code == 200
    slots: dict[str, set[int]] = {}
    with redis_cluster.node_client(0) as node:
        for name in redis_cluster.keys("fs:{*"):
            parsed = parse(name.decode())
            if parsed is None:
                continue
            slot = int(node.execute_command("CLUSTER KEYSLOT", name))
            slots.setdefault(KeyScheme().partition(parsed.key), set()).add(slot)
    assert set(slots) == {"/", "/t"}
    assert all(len(found) == 1 for found in slots.values()), slots
    parsed_names = [parse(n.decode()) for n in redis_cluster.keys("fs:{/t}*")]
    kinds = {p.kind for p in parsed_names if p is not None}
    assert kinds == {"d", "r", "c", "a", "n", "ids", "idr", "i"}
    with redis_cluster.node_client(0) as node:  # the change stream shares the partition's slot
        assert slots["/t"] == {int(node.execute_command("CLUSTER KEYSLOT", "fs:{/t}:x"))}
    assert redis_cluster.keys("fs:{/t}:x")


def test_the_root_lists_and_counts_exactly_as_trees_come_and_go(
    cluster_client: redis.RedisCluster,
) -> None:
    client = http(cluster_client)
    for name in ("/a", "/b", "/c", "/d"):
        assert client.put("/d/", json=[entry(name, n=1)]).status_code == 200
    assert client.delete("/d/b").status_code == 200
    assert client.delete("/d/d").status_code == 200
    assert keys_of(client.get("/d/?f")) == ["/a", "/c"]
    assert client.get("/d/?c").json["feed"]["title"] == "2"  # type: ignore[index]
    assert cluster_client.zcard("fs:{/}:c:/") == 4, "the root's set is never pruned on a request"
    assert client.put("/d/", json=[entry("/b")]).status_code == 200
    assert keys_of(client.get("/d/?f")) == ["/a", "/b", "/c"]
    assert keys_of(client.get("/d/?f&n-eq-1")) == ["/a", "/c"], "a filter scans the root"


def test_at_depth_two_a_folders_children_spread_over_slots(
    cluster_client: redis.RedisCluster, redis_cluster: RedisCluster
) -> None:
    client = http(cluster_client, depth=2)
    assert cluster_client.get(DEPTH_KEY) == b"2"
    assert client.post("/d/", json=[entry("/u")]).status_code == 201
    for _ in range(6):
        assert client.post("/d/u", json=[{"title": "user"}]).status_code == 201
    two = client.post("/d/u", json=[{"title": "a"}, {"title": "b"}])
    assert two.json["feed"]["title"] == (  # type: ignore[index]
        "Entries of one request must be in one tree on Redis Cluster. "
        "a new entry under /u, a new entry under /u"
    )
    users = [f"/u/{n}" for n in range(1, 7)]
    assert keys_of(client.get("/d/u?f")) == sorted(users)
    with redis_cluster.node_client(0) as node:
        slots = {int(node.execute_command("CLUSTER KEYSLOT", f"fs:{{{u}}}:d:{u}")) for u in users}
    assert len(slots) == 6
    assert client.put("/d/", json=[entry("/u/1/posts", x=1)]).status_code == 200
    assert client.delete("/d/u").json["error"]["code"] == "has_children"  # type: ignore[index]
    assert client.delete("/d/u?_rf").json["error"]["code"] == "cross_tree_write"  # type: ignore[index]
    assert client.delete("/d/u/1?_rf").status_code == 200, "one partition: one transaction"
    for user in users[1:]:
        assert client.delete(f"/d{user}").status_code == 200
    assert client.get("/d/u?c").json["feed"]["title"] == "0"  # type: ignore[index]
    assert client.delete("/d/u").status_code == 200
    assert client.post("/d/u", json=[{"title": "orphan"}]).status_code == 400


def test_an_alias_stays_in_its_entrys_tree(cluster_client: redis.RedisCluster) -> None:
    client = http(cluster_client)
    assert client.post("/d/", json=[entry("/a"), entry("/a/1")]).status_code == 201
    assert client.post("/d/", json=[entry("/b")]).status_code == 201
    same = {
        "link": [{"___href": "/a/1", "___rel": "self"}, {"___href": "/a/x", "___rel": "alternate"}]
    }
    assert client.put("/d/?_addalias", json=[same]).status_code == 200
    assert client.get("/d/a/x?e").json["feed"]["entry"][0]["id"] == "/a/1,2"  # type: ignore[index]
    other = {
        "link": [{"___href": "/a/1", "___rel": "self"}, {"___href": "/b/x", "___rel": "alternate"}]
    }
    before = snapshot(cluster_client)
    response = client.put("/d/?_addalias", json=[other])
    assert response.json["error"]["code"] == "cross_tree_write"  # type: ignore[index]
    assert response.json["feed"]["title"].endswith("/a, /b")  # type: ignore[index]
    assert snapshot(cluster_client) == before


def test_a_server_of_another_depth_is_refused(cluster_client: redis.RedisCluster) -> None:
    http(cluster_client, depth=1)
    with pytest.raises(Exception, match="partitioned at depth 1, not 2"):
        http(cluster_client, depth=2)


def test_the_schema_and_its_indexes_work_across_slots(cluster_client: redis.RedisCluster) -> None:
    client = http(cluster_client)
    for name, n in (("/a", 3), ("/b", 1), ("/c", 2)):
        assert (
            client.put("/d/", json=[entry(name, n=n), entry(f"{name}/1", n=n)]).status_code == 200
        )
    schema = {"type": "object", "properties": {"n": {"type": "integer", "x-index": True}}}
    Store(cluster_client).set_schema(schema)
    assert keys_of(client.get("/d/?f&s=n")) == ["/b", "/c", "/a"], "sorted in memory"
    assert keys_of(client.get("/d/a?f&n-eq-3")) == ["/a/1"], "the index of /a"
    assert cluster_client.exists("fs:{/a}:i:n:/a") == 1
    assert cluster_client.exists("fs:{/}:i:n:/") == 0, "the root's children are in no index"
    assert Store(cluster_client).schema_document() == schema


def test_a_bulk_over_many_trees_is_cut_into_one_tree_chunks(
    cluster_client: redis.RedisCluster,
) -> None:
    app = create_app({"max_entries": 2}, cluster_client)
    client = app.test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    entries = [entry(f"/t{n % 3}", n=n) for n in range(3)]
    entries += [entry(f"/t{n % 3}/{n}", n=n) for n in range(9)]
    response = client.put(
        "/d/?_bulkserial", headers={"Prefer": "return=representation"}, json=entries
    )
    assert response.status_code == 200, response.json
    assert keys_of(response) == [e["link"][0]["___href"] for e in entries], "in request order"
    assert client.get("/d/t1?c").json["feed"]["title"] == "3"  # type: ignore[index]
    assert client.get("/d/?c").json["feed"]["title"] == "3"  # type: ignore[index]


def test_a_slot_moving_while_a_write_watches_restarts_it_and_loses_nothing(
    cluster_client: redis.RedisCluster,
    redis_cluster: RedisCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, other = Store(cluster_client), Store(redis_cluster.client())
    store.write([put("/m", x=0, y=0)])
    slot = cluster_client.keyslot(store.keys.document_key("/m"))
    original_timestamp = transaction.timestamp
    events: list[str] = []

    def then_the_slot_moves_and_another_writer(*args: Any) -> Any:
        # The store has WATCHed and read /m, and not yet sent MULTI/EXEC.
        if not events:
            events.append("moved")
            redis_cluster.move_slot(slot, (redis_cluster.owner(slot) + 1) % 3)
            events.append("written")
            other.write([put("/m", y=1)])
        return original_timestamp(*args)

    monkeypatch.setattr(transaction, "timestamp", then_the_slot_moves_and_another_writer)
    store.write([put("/m", x=1)])
    document = stored(store, "/m")
    assert events == ["moved", "written"]
    assert (document["x"], document["y"], document["id"]) == (1, 1, "/m,3"), "no write lost"
    other.redis.close()


def test_a_write_to_a_slot_moved_unseen_goes_to_its_new_owner_and_teaches_the_client(
    cluster_client: redis.RedisCluster, redis_cluster: RedisCluster
) -> None:
    """The transaction runs on the partition node's own pipeline (partitions.PartitionRoute):
    after a move the client hasn't seen, that node answers MOVED, and the write commits on
    the new owner, which the cluster client then knows."""
    store = Store(cluster_client)
    store.write([put("/n", x=0)])
    name = store.keys.document_key("/n")
    slot = cluster_client.keyslot(name)
    before = cluster_client.get_node_from_key(name).port
    redis_cluster.move_slot(slot, (redis_cluster.owner(slot) + 1) % 3)
    assert cluster_client.get_node_from_key(name).port == before, "the client has not seen it"
    store.write([put("/n", x=1)])
    document = stored(store, "/n")
    assert (document["x"], document["id"]) == (1, "/n,2")
    owner = redis_cluster.node_of_slot(slot)
    assert cluster_client.get_node_from_key(name).port == owner.port != before
