"""The real 3-primary Redis Cluster the cluster tests run against (design notes §5).

It is feedstore.cluster_launcher's LocalCluster, which the bench starts too, so the tests and the
bench measure and check the same kind of cluster:

    with RedisCluster(tmp_path).start() as cluster:
        cluster.url            # redis://127.0.0.1:<port of the first node>, what serve is given
        cluster.nodes          # [ClusterNode(host, port, directory, ...)], one per primary
        cluster.client()       # a redis.RedisCluster (the caller closes it)
        cluster.node_client(1) # a plain redis.Redis of one node (the caller closes it)
        cluster.flush()        # FLUSHALL on every primary
        cluster.move_slot(s, 2)  # move slot s and its keys to node 2, live
        cluster.owner(s)         # the position in nodes of the primary serving slot s
"""

from __future__ import annotations

from feedstore.cluster_launcher import SLOTS, ClusterError, ClusterNode
from feedstore.cluster_launcher import LocalCluster as RedisCluster

__all__ = ["SLOTS", "ClusterError", "ClusterNode", "RedisCluster"]
