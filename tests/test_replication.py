"""WAIT after EXEC (wait_replicas): on a real primary and replica, a write is acknowledged once the
replica has it, and is 503 not_replicated, yet made, when the replica can't confirm in time."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest
import redis
from flask.testing import FlaskClient

from feedstore import create_app
from feedstore.keys import KeyScheme
from feedstore.replication import Replication
from tests.sentinels import Process, SentinelSet, until

document_key = KeyScheme().document_key

HEADERS = {"X-Requested-With": "XMLHttpRequest"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A primary and its replica, no Sentinels."""
    servers = SentinelSet(tmp_path_factory.mktemp("replicated"), sentinel_count=0)
    try:
        yield servers.start()
    finally:
        servers.stop()


@pytest.fixture
def primary(pair: SentinelSet) -> Iterator[redis.Redis]:
    with pair.nodes[0].client() as client:
        client.config_set("min-replicas-to-write", 0)
        client.flushall()
        # The replica may be catching up after a test stalled it.
        assert client.execute_command("WAIT", 1, 5000) == 1
        client.config_resetstat()
        yield client


def app_client(pair: SentinelSet, **config: object) -> FlaskClient:
    url = f"redis://127.0.0.1:{pair.nodes[0].port}"
    settings = {"redis_url": url, "wait_replicas": 1, "wait_timeout_ms": 200, **config}
    client = create_app(settings).test_client()
    client.environ_base.update(
        {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in HEADERS.items()}
    )
    return client


def waits(primary: redis.Redis) -> int:
    """How many WAITs the primary has run."""
    return int(primary.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


class Stalled:
    """A replica stopped with SIGSTOP: connected, but confirming nothing, until resumed."""

    def __init__(self, replica: Process) -> None:
        assert replica.popen is not None
        self.pid = replica.popen.pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


def test_a_write_is_acknowledged_once_the_replica_has_it(
    pair: SentinelSet, primary: redis.Redis
) -> None:
    client = app_client(pair)
    before = waits(primary)
    response = client.post("/d/", json={"link": [{"___href": "/a", "___rel": "self"}]})
    assert response.status_code == 201, response.json
    assert waits(primary) == before + 1
    with pair.nodes[1].client() as replica:
        assert replica.exists(document_key("/a"))


def test_reads_and_refused_writes_wait_for_nothing(pair: SentinelSet, primary: redis.Redis) -> None:
    client = app_client(pair)
    assert (
        client.post("/d/", json={"link": [{"___href": "/a", "___rel": "self"}]}).status_code == 201
    )
    before = waits(primary)
    assert client.get("/d/a?e").status_code == 200
    stale = {"id": "/a,7", "link": [{"___href": "/a", "___rel": "self"}]}
    assert client.put("/d/", json=stale).status_code == 409
    assert waits(primary) == before


def test_without_the_setting_no_write_waits(pair: SentinelSet, primary: redis.Redis) -> None:
    client = app_client(pair, wait_replicas=0)
    before = waits(primary)
    assert (
        client.post("/d/", json={"link": [{"___href": "/a", "___rel": "self"}]}).status_code == 201
    )
    assert waits(primary) == before


def test_a_write_the_replica_cant_confirm_is_503_not_replicated_but_made(
    pair: SentinelSet, primary: redis.Redis
) -> None:
    client = app_client(pair)
    with Stalled(pair.nodes[1]):
        response = client.post("/d/", json={"link": [{"___href": "/a", "___rel": "self"}]})
    assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
    assert response.json is not None
    assert response.json["error"]["code"] == "not_replicated"
    assert response.json["feed"]["title"] == (
        "Not replicated: 0 of 1 replicas confirmed the write in time. It may have been made, "
        "and may be lost if the primary fails: read it before retrying."
    )
    assert client.get("/d/a?e").status_code == 200  # made on the primary


def test_a_connection_lost_during_wait_is_not_replicated_and_not_written_again(
    pair: SentinelSet, primary: redis.Redis
) -> None:
    client = app_client(pair, wait_timeout_ms=10_000)
    killed: list[int] = []

    def kill_the_waiting_connection() -> bool:
        # Blocked ("b") in WAIT: an idle connection shows its last command too.
        waiting = [c for c in primary.client_list() if c["cmd"] == "wait" and "b" in c["flags"]]
        for connection in waiting:
            primary.client_kill_filter(_id=connection["id"])
            killed.append(connection["id"])
        return bool(waiting)

    with Stalled(pair.nodes[1]):
        killer = threading.Thread(target=until, args=(kill_the_waiting_connection, 5, str))
        killer.start()
        response = client.post("/d/", json={"link": [{"___href": "/a", "___rel": "self"}]})
        killer.join()
    assert len(killed) == 1
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["error"]["code"] == "not_replicated"
    assert primary.info("commandstats")["cmdstat_exec"]["calls"] == 1


def test_a_primary_short_of_replicas_refuses_writes_with_503(
    pair: SentinelSet, primary: redis.Redis
) -> None:
    client = app_client(pair, wait_replicas=0)
    primary.config_set("min-replicas-to-write", 1)
    primary.config_set("min-replicas-max-lag", 1)
    with Stalled(pair.nodes[1]):
        # The primary counts a replica out once it hasn't confirmed for over a second.
        until(lambda: primary.info("replication")["min_slaves_good_slaves"] == 0, 10, str)
        response = client.post("/d/", json={"link": [{"___href": "/a", "___rel": "self"}]})
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["error"]["code"] == "service_unavailable"
    assert response.json["feed"]["title"] == "Redis can't take writes now. Please retry."
    assert not primary.exists(document_key("/a"))


def test_a_pagination_index_is_a_read_even_when_the_replica_cant_confirm(
    pair: SentinelSet, primary: redis.Redis
) -> None:
    client = app_client(pair)
    for key in ("/p", "/p/1", "/p/2"):
        assert (
            client.post("/d/", json={"link": [{"___href": key, "___rel": "self"}]}).status_code
            == 201
        )
    with Stalled(pair.nodes[1]):
        assert client.get("/d/p?_pagination=1,2&l=1").status_code == 200


@pytest.mark.parametrize(("replicas", "timeout_ms"), [(0, 10), (1, 0)])
def test_a_replication_asks_for_a_replica_and_a_timeout(replicas: int, timeout_ms: int) -> None:
    with pytest.raises(ValueError):
        Replication(replicas, timeout_ms)


def test_no_replica_wanted_is_no_replication() -> None:
    assert Replication.of(0, 1000) is None
    assert Replication.of(2, 50) == Replication(2, 50)
