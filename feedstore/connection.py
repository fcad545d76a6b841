"""The Redis clients feedstore makes (the app's, the CLI's), each with explicit timeouts.

Without them a client waits as long as the Redis library's defaults say, which have changed from
"forever" to five seconds between redis-py releases: a Redis that stops answering (stopped, a
network partition) would hang a request thread, then the whole pool. With them a request that
can't reach Redis in time is a 503 (store.py), and the CLI says so and exits 1.

A connection error (Redis restarting: feedstore serve restarts its embedded Redis) is retried
twice after a short pause, which also replaces the pooled connections Redis closed; a timeout is
not retried, so a request waits `timeout` seconds at most per command, not a multiple of it.

A `redis+sentinel://` URL is a client of the primary its Sentinels name (sentinel.py), with the
same options. `replication` makes every transaction wait for replicas (replication.py).
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from feedstore import sentinel
from feedstore.replication import ReplicatedRedis, Replication

# Seconds to wait for Redis to accept a connection, and for any one reply.
DEFAULT_TIMEOUT = 10
# Pooled connections idle this long are checked with a PING before use.
HEALTH_CHECK_INTERVAL = 30


def connect(
    url: str, timeout: float = DEFAULT_TIMEOUT, *, replication: Replication | None = None
) -> redis.Redis | redis.RedisCluster:
    """A client of the Redis at `url` (redis://, rediss://, unix://, redis+sentinel://);
    ValueError for a bad URL.

    A redis:// or rediss:// URL naming any node of a Redis Cluster (`INFO cluster` says
    cluster_enabled:1) gives a cluster client instead. A Redis that can't be
    asked now gets a plain client, which answers 503 until it can be reached.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": _retry(),
    }
    # redis-py 5 only honours `retry` when errors to retry on are named.
    plain = {**options, "retry_on_error": [redis.ConnectionError]}
    redis_class = redis.Redis if replication is None else ReplicatedRedis
    if sentinel.is_sentinel_url(url):
        client = sentinel.client(sentinel.parse(url), redis_class, **plain)
    else:
        client = redis_class.from_url(url, **plain)
        if _is_cluster(client, url):
            client.close()
            if replication is not None:
                raise ValueError(
                    "--wait-replicas is not available on a Redis Cluster (WAIT is per node)"
                )
            return redis.RedisCluster.from_url(url, **options)
    if isinstance(client, ReplicatedRedis):
        client.replication = replication
    return client


def _is_cluster(client: redis.Redis, url: str) -> bool:
    """Whether a redis:// or rediss:// URL names a node of a Redis Cluster. The cluster client
    follows MOVED and ASK itself, and its transactional pipelines (redis-py 6.1 and later) keep
    feedstore's one WATCH/MULTI/EXEC per request (keys.py keeps it in one slot)."""
    if not url.startswith(("redis://", "rediss://")):
        return False
    try:
        return int(client.info("cluster").get("cluster_enabled", 0)) == 1
    except redis.RedisError:
        return False


def _retry() -> Retry:
    return Retry(
        ExponentialBackoff(cap=0.5, base=0.05), 2, supported_errors=(redis.ConnectionError,)
    )
