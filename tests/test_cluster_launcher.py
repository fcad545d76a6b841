"""feedstore.cluster_launcher beyond what test_redis_cluster.py checks: slots, resharding."""

from __future__ import annotations

from feedstore.cluster_launcher import SLOTS, slot_ranges
from tests.redis_cluster import RedisCluster


def test_slot_ranges_cover_every_slot_once_evenly() -> None:
    ranges = slot_ranges(3)
    assert [slot for span in ranges for slot in span] == list(range(SLOTS))
    assert {len(span) for span in ranges} == {5461, 5462}


def test_move_slot_moves_every_key_of_the_slot_and_tells_every_node(
    redis_cluster: RedisCluster,
) -> None:
    redis_cluster.flush()
    with redis_cluster.client() as client:
        names = [f"{{moved}}:{n}" for n in range(250)]
        for name in names:
            client.set(name, name)
        slot = client.keyslot("{moved}")
        source = redis_cluster.node_of_slot(slot)
        target = next(node for node in redis_cluster.nodes if node is not source)
        assert redis_cluster.move_slot(slot, target, batch=100) == 250
        for node in redis_cluster.nodes:
            with node.client() as direct:
                owners = [row for row in direct.execute_command("CLUSTER SLOTS")]
            assert any(
                low <= slot <= high and int(owner[1]) == target.port
                for low, high, owner, *_ in owners
            )
        with source.client() as direct:
            assert direct.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0
        assert [client.get(name) for name in names] == [name.encode() for name in names]


def test_a_slot_moves_to_a_node_given_by_position_and_owner_follows(
    redis_cluster: RedisCluster,
) -> None:
    redis_cluster.flush()
    with redis_cluster.client() as client:
        client.set("{by-position}", "kept")
        slot = client.keyslot("{by-position}")
        to = (redis_cluster.owner(slot) + 1) % len(redis_cluster.nodes)
        assert redis_cluster.move_slot(slot, to) == 1
        assert redis_cluster.owner(slot) == to
        assert redis_cluster.move_slot(slot, to) == 0
        assert client.get("{by-position}") == b"kept"
