"""`feedstore changes trim` and the serve's trim thread (changes_cli.py)."""

from __future__ import annotations

import time

import pytest
import redis

from feedstore.changes import DISCOVERY_LEASE_KEY, KNOWN_STREAMS_KEY
from feedstore.changes_cli import TRIM_LEASE_KEY, Trimmer
from feedstore.cli import main
from feedstore.embedded import EmbeddedRedis
from feedstore.keys import KeyScheme
from feedstore.settings import Settings
from feedstore.store import Store
from tests.conftest import put
from tests.redis_cluster import RedisCluster

KEYS = KeyScheme()


def test_trim_keeps_the_newest_changes_max(
    real_redis: redis.Redis,
    redis_server: EmbeddedRedis,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = Store(real_redis)
    for i in range(5):
        store.write([put(f"/n/{i}") if i else put("/n")])
    monkeypatch.setenv("FEEDSTORE_CHANGES_MAX", "2")
    url = redis_server.url
    assert main(["changes", "trim", "--redis-url", url]) == 0
    assert capsys.readouterr().out == "changes trim: 2 streams, 6 events trimmed\n"
    assert real_redis.xlen(KEYS.change_stream_key("/n")) == 2
    assert real_redis.xlen("fs:x:/") == 2
    assert real_redis.get(KEYS.change_horizon_key("/n")) is not None


def test_trim_on_a_cluster(
    redis_cluster: RedisCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_cluster.flush()
    client = redis_cluster.client()
    store = Store(client)
    for i in range(3):
        store.write([put(f"/n/{i}") if i else put("/n")])
    store.write([put("/m")])
    monkeypatch.setenv("FEEDSTORE_CHANGES_MAX", "1")
    assert main(["changes", "trim", "--redis-url", redis_cluster.url]) == 0
    assert capsys.readouterr().out == "changes trim: 2 streams, 2 events trimmed\n"
    assert [c.key for c in store.changes("/n", store.streams.horizon("/n"), 10).changes] == ["/n/2"]
    client.close()


def two_events_under_n(client: redis.Redis) -> Store:
    """A store of /n and /n/1, written one at a time: two events on /n's stream (and on the
    whole store's, on a single Redis)."""
    store = Store(client)
    store.write([put("/n")])
    store.write([put("/n/1")])
    return store


def test_the_serve_thread_runs_the_same_pass(
    real_redis: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    two_events_under_n(real_redis)
    url = redis_server.url
    trimmer = Trimmer(url, Settings(changes_max=1), report=print)
    assert trimmer.run_once() == 2  # one from /n's stream, one from the whole store's


def test_of_the_serves_sharing_a_redis_one_runs_each_period_s_pass(
    real_redis: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    store = two_events_under_n(real_redis)
    settings = Settings(changes_max=1)
    first, second = (Trimmer(redis_server.url, settings, print, every=60) for _ in range(2))
    assert first.run_if_due() == 2
    store.write([put("/n/2")])
    assert second.run_if_due() is None, "the first's pass holds the period"
    assert real_redis.xlen(KEYS.change_stream_key("/n")) == 2
    # The lease lasts 90% of the period, so the next period's pass is whoever wakes first.
    assert 50_000 < real_redis.pttl(TRIM_LEASE_KEY) <= 54_000
    real_redis.delete(TRIM_LEASE_KEY)  # as it runs out
    assert second.run_if_due() == 2
    assert first.run_if_due() is None


def test_the_serve_thread_scans_for_new_streams_once_per_discovery_period(
    real_redis: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    store = two_events_under_n(real_redis)
    trimmer = Trimmer(redis_server.url, Settings(changes_max=1), print, discover_every=600)
    assert trimmer.run_once() == 2  # the first pass SCANs: /n's stream and the whole store's
    assert real_redis.smembers(KNOWN_STREAMS_KEY) == {
        b"fs:x:/",
        KEYS.change_stream_key("/n").encode(),
    }
    assert 590_000 < real_redis.pttl(DISCOVERY_LEASE_KEY) <= 600_000

    def scans() -> int:
        return int(real_redis.info("commandstats").get("cmdstat_scan", {}).get("calls", 0))

    store.write([put("/m")])  # a new partition: a new stream, of two events
    store.write([put("/m/1")])
    store.write([put("/n/2")])
    before = scans()
    # The known streams are trimmed without a SCAN: /n's loses one, the whole store's three;
    # /m's is not known yet, and keeps both of its events.
    assert trimmer.run_once() == 4
    assert scans() == before
    assert real_redis.xlen(KEYS.change_stream_key("/m")) == 2
    real_redis.delete(DISCOVERY_LEASE_KEY)  # as it runs out
    assert trimmer.run_once() == 1  # found by the SCAN, /m's stream loses one
    assert scans() > before
    assert real_redis.xlen(KEYS.change_stream_key("/m")) == 1


def test_the_serve_thread_keeps_the_streams_it_found_on_a_cluster(
    redis_cluster: RedisCluster,
) -> None:
    redis_cluster.flush()
    client = redis_cluster.client()
    store = Store(client)
    for key in ("/n", "/n/1", "/m"):
        store.write([put(key)])
    trimmer = Trimmer(redis_cluster.url, Settings(changes_max=1), print)
    assert trimmer.run_once() == 1  # /n's stream; a cluster has no whole store's stream
    store.write([put("/n/2")])
    store.write([put("/m/1")])
    assert trimmer.run_once() == 2  # both known, without a SCAN
    assert client.exists(DISCOVERY_LEASE_KEY) == 1
    client.close()


def test_the_serve_thread_runs_its_first_pass_at_start(
    real_redis: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    two_events_under_n(real_redis)
    trimmer = Trimmer(redis_server.url, Settings(changes_max=1), print, every=3600).start()
    try:
        deadline = time.monotonic() + 10
        while real_redis.xlen(KEYS.change_stream_key("/n")) > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert real_redis.xlen(KEYS.change_stream_key("/n")) == 1, "not an hour later: at once"
    finally:
        trimmer.stop()
        trimmer.join(5)
