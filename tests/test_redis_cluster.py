"""The test cluster itself (tests/redis_cluster.py): what the cluster tests rely on."""

from __future__ import annotations

import pytest
from redis.exceptions import MovedError

from tests.redis_cluster import SLOTS, RedisCluster


def test_the_cluster_has_three_primaries_sharing_every_slot(redis_cluster: RedisCluster) -> None:
    with redis_cluster.node_client(0) as node:
        slots = node.execute_command("CLUSTER SLOTS")
        assert node.cluster("info")["cluster_state"] == "ok"
    owners = {int(row[2][1]) for row in slots}
    assert owners == {node.port for node in redis_cluster.nodes}
    assert sum(int(row[1]) - int(row[0]) + 1 for row in slots) == SLOTS


def test_a_cluster_client_follows_keys_to_their_nodes_and_flush_empties_all(
    redis_cluster: RedisCluster,
) -> None:
    redis_cluster.flush()
    with redis_cluster.client() as client:
        names = [f"{{tree{n}}}:x" for n in range(20)]
        for name in names:
            client.set(name, name)
        assert [client.get(name) for name in names] == [name.encode() for name in names]
    assert redis_cluster.keys() == sorted(name.encode() for name in names)
    redis_cluster.flush()
    assert redis_cluster.keys() == []


def test_a_node_answers_moved_for_another_nodes_slot(redis_cluster: RedisCluster) -> None:
    with redis_cluster.client() as client:
        owner = client.get_node_from_key("{elsewhere}")
    other = next(n for n in range(3) if redis_cluster.nodes[n].port != owner.port)
    with redis_cluster.node_client(other) as node, pytest.raises(MovedError) as caught:
        node.get("{elsewhere}")
    assert str(caught.value).endswith(f":{owner.port}")
