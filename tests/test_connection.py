"""Every Redis client feedstore makes has explicit timeouts: a Redis that stops answering is a 503
(or, for the CLI, exit status 1) within them, never a hang."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedstore import cli, connection, create_app
from feedstore.embedded import EmbeddedRedis


@pytest.fixture
def silent_redis(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts connections and never answers, as a stopped Redis would."""
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(64)
        yield f"unix://{path}"


def test_connect_sets_both_timeouts() -> None:
    client = connection.connect("redis://127.0.0.1:6379/0", timeout=3)
    options = client.connection_pool.connection_kwargs
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (3, 3)
    assert options["health_check_interval"] == connection.HEALTH_CHECK_INTERVAL


def test_the_app_client_takes_the_redis_timeout_setting() -> None:
    app = create_app({"redis_url": "redis://127.0.0.1:6379/0", "redis_timeout": 4})
    options = app.extensions["feedstore"].store.redis.connection_pool.connection_kwargs
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (4, 4)


def test_a_redis_that_stops_answering_is_503_within_the_timeout(silent_redis: str) -> None:
    client = create_app({"redis_url": silent_redis, "redis_timeout": 1}).test_client()
    for url in ("/_health", "/d/a?e"):
        started = time.monotonic()
        response = client.get(url)
        assert time.monotonic() - started < 5, "a timeout is not retried"
        assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
        assert response.json["feed"]["title"] == "Redis is unavailable. Please retry."  # type: ignore[index]


def test_the_cli_gives_up_on_a_silent_redis(
    silent_redis: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEEDSTORE_REDIS_TIMEOUT", "1")
    started = time.monotonic()
    assert cli.main(["schema", "show", "--redis-url", silent_redis]) == 1
    assert time.monotonic() - started < 5
    assert capsys.readouterr().err == "feedstore: Redis is unavailable. Please retry.\n"


def test_a_client_rides_over_a_redis_restart(tmp_path: Path) -> None:
    """The pooled connection Redis closed on its way down is replaced on the next command."""
    with EmbeddedRedis(tmp_path / "data") as embedded:
        client = connection.connect(embedded.url)
        client.set("k", "v")
        embedded.stop()
        embedded.start()
        assert client.get("k") == b"v"
        client.close()
