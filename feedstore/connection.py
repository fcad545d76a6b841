"""The Redis clients feedstore makes (the app's, the CLI's), each with explicit timeouts.

Without them a client waits as long as the Redis library's defaults say, which have changed from
"forever" to five seconds between redis-py releases: a Redis that stops answering (stopped, a
network partition) would hang a request thread, then the whole pool. With them a request that
can't reach Redis in time is a 503 (store.py), and the CLI says so and exits 1.

A connection error (Redis restarting: feedstore serve restarts its embedded Redis) is retried
twice after a short pause, which also replaces the pooled connections Redis closed; a timeout is
not retried, so a request waits `timeout` seconds at most per command, not a multiple of it.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

# Seconds to wait for Redis to accept a connection, and for any one reply.
DEFAULT_TIMEOUT = 10
# Pooled connections idle this long are checked with a PING before use.
HEALTH_CHECK_INTERVAL = 30


def connect(url: str, timeout: float = DEFAULT_TIMEOUT) -> redis.Redis | redis.RedisCluster:
    """A client of the Redis at `url` (redis://, rediss://, unix://); ValueError for a bad URL.

    A redis:// or rediss:// URL naming any node of a Redis Cluster (`INFO cluster` says
    cluster_enabled:1) gives a cluster client instead (_cluster_client). A Redis that can't be
    asked now gets a plain client, which answers 503 until it can be reached.
    """
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        retry=_retry(),
        # redis-py 5 only honours `retry` when errors to retry on are named.
        retry_on_error=[redis.ConnectionError],
    )
    if not url.startswith(("redis://", "rediss://")):
        return client
    try:
        enabled = int(client.info("cluster").get("cluster_enabled", 0)) == 1
    except redis.RedisError:
        return client
    if not enabled:
        return client
    client.close()
    return _cluster_client(url, timeout)


def _cluster_client(url: str, timeout: float) -> redis.RedisCluster:
    """A Redis Cluster client found from one node's URL, with the same timeouts and retry: it
    follows MOVED and ASK itself, and its transactional pipelines (redis-py 6.1 and later)
    keep feedstore's one WATCH/MULTI/EXEC per request (keys.py keeps it in one slot)."""
    return redis.RedisCluster.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        retry=_retry(),
    )


def _retry() -> Retry:
    return Retry(
        ExponentialBackoff(cap=0.5, base=0.05), 2, supported_errors=(redis.ConnectionError,)
    )
