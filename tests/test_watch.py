"""watch.py's WATCH-and-read in one round trip, on a real Redis and a real cluster node."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import MovedError

from feedstore import watch
from tests.redis_cluster import RedisCluster


def test_watch_and_read_reads_and_guards_what_it_watched(real_redis: redis.Redis) -> None:
    real_redis.mset({"w:a": b"1", "w:b": b"2"})
    with real_redis.pipeline(transaction=True) as pipe:
        assert watch.watch_and_read(pipe, ["w:a"], "MGET", "w:a", "w:b") == [b"1", b"2"]
        assert pipe.watching
        real_redis.set("w:a", b"changed")
        pipe.multi()
        pipe.set("w:b", b"3")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert real_redis.get("w:b") == b"2", "the EXEC was refused"


def test_watch_and_read_raises_moved_and_leaves_the_connection_in_step(
    redis_cluster: RedisCluster,
) -> None:
    """Both replies are read before the MOVED of the first is raised: the next command on that
    connection gets its own reply."""
    with redis_cluster.client() as cluster:
        slot = cluster.keyslot("{w}x")
    elsewhere = (redis_cluster.owner(slot) + 1) % len(redis_cluster.nodes)
    with redis_cluster.node_client(elsewhere) as node, node.pipeline(transaction=True) as pipe:
        with pytest.raises(MovedError):
            watch.watch_and_read(pipe, ["{w}x"], "MGET", "{w}x")
        assert pipe.connection is not None
        assert pipe.connection.send_command("PING") is None
        assert pipe.connection.read_response() == b"PONG"
