"""feedstore.bench.cluster_memory: bytes per child of one tree, on the primary that holds it."""

from __future__ import annotations

import pytest

from feedstore.bench import cluster_memory
from tests.redis_cluster import RedisCluster


def test_a_trees_children_are_weighed_on_the_one_primary_that_holds_them(
    redis_cluster: RedisCluster,
) -> None:
    redis_cluster.flush()
    weighed = cluster_memory.weigh(redis_cluster.url, 1500)
    holding = []
    for node in redis_cluster.nodes:
        with node.client() as direct:
            if any(b"/memory/" in name for name in direct.scan_iter(count=1000)):
                holding.append(node.port)
    assert len(holding) == 1
    # A child is its JSON, a revision, a children-set member and two index members: more than
    # its JSON alone, and far less than ten times it.
    assert 300 < weighed.document_bytes < weighed.bytes_per_child < 10 * weighed.document_bytes


def test_the_command_prints_the_figure(
    redis_cluster: RedisCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_cluster.flush()
    assert cluster_memory.main(["--children", "50", "--redis-url", redis_cluster.url]) == 0
    assert "B per child on the primary holding the tree (50 children of" in capsys.readouterr().out
