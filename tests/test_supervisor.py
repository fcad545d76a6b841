"""The embedded Redis is restarted when it dies, keeping its data, and given up on when it can't
start: with a Supervisor of a real redis-server, and through a real `feedstore serve`."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from feedstore.embedded import AOF_FILE, EmbeddedRedis
from feedstore.supervisor import Supervisor, describe_exit
from tests.serving import (
    WRITE_HEADERS,
    Server,
    running_serve,
    start_serve,
    wait_until_gone,
)


class Reports:
    """What a Supervisor reports, and a way to wait for a line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()

    def __call__(self, line: str) -> None:
        with self.changed:
            self.lines.append(line)
            self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        with self.changed:
            found = self.changed.wait_for(lambda: any(text in line for line in self.lines), timeout)
            assert found, f"no report with {text!r}: {self.lines}"
            return next(line for line in self.lines if text in line)


def corrupt_aof(data_dir: Path) -> None:
    """Make the AOF unreadable, so that redis-server refuses to start on it."""
    (data_dir / AOF_FILE).write_bytes(b"this is not a Redis command\r\n")


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    # fsync always: under everysec a Redis killed while a slow disk holds an fsync may lose the
    # last writes it answered (docs/api.md §12.1, Durability); these tests are about the restart.
    server = EmbeddedRedis(tmp_path / "data", fsync="always").start()
    yield server
    server.stop()


def test_a_killed_redis_is_restarted_with_its_data(embedded: EmbeddedRedis) -> None:
    reports = Reports()
    supervisor = Supervisor(embedded, reports, lambda: None, first_delay=0.05).start()
    client = redis.Redis.from_url(embedded.url)
    try:
        client.set("acknowledged", "yes")
        killed = embedded.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        line = reports.wait_for("exited")
        assert line == (
            f"redis-server (pid {killed}) exited with signal 9 (SIGKILL); restarting it in 0.05 s"
        )
        assert reports.wait_for("restarted") == (
            f"redis-server restarted (pid {embedded.pid}); its AOF was replayed"
        )
        assert embedded.pid != killed
        assert client.get("acknowledged") == b"yes"
    finally:
        client.close()
        supervisor.stop()
        embedded.stop()
        supervisor.join(10)


def test_a_redis_that_cannot_start_is_given_up(embedded: EmbeddedRedis) -> None:
    reports = Reports()
    given_up = threading.Event()
    supervisor = Supervisor(
        embedded, reports, given_up.set, first_delay=0.05, max_failures=2
    ).start()
    corrupt_aof(embedded.data_dir)
    pid = embedded.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert given_up.wait(30)
    assert supervisor.gave_up
    failures = [line for line in reports.lines if line.startswith("can't restart redis-server")]
    assert [line.split(":")[0] for line in failures] == [
        "can't restart redis-server (try 1)",
        "can't restart redis-server (try 2)",
    ]
    assert "redis-server exited with 1" in failures[0], "with the tail of its log"
    assert reports.lines[-1] == "giving up on redis-server; stopping"
    supervisor.join(10)


def test_stop_ends_supervision_without_a_restart(embedded: EmbeddedRedis) -> None:
    reports = Reports()
    supervisor = Supervisor(embedded, reports, lambda: None).start()
    supervisor.stop()
    embedded.stop()
    supervisor.join(10)
    assert reports.lines == []


@pytest.mark.parametrize(
    ("status", "shown"),
    [(-9, "signal 9 (SIGKILL)"), (-15, "signal 15 (SIGTERM)"), (1, "status 1"), (0, "status 0")],
)
def test_exit_statuses_read_as_people_read_them(status: int, shown: str) -> None:
    assert describe_exit(status) == shown


# -- through feedstore serve ----------------------------------------------------------------------


def redis_pid(server: Server) -> int:
    for pid in server.processes():
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if b"redis-server" in cmdline.read():
                return pid
    raise AssertionError("no redis-server")


def test_serve_restarts_a_killed_redis_and_keeps_acknowledged_writes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "serve.log"
    with running_serve("--fsync", "always", data_dir=data, log_path=log) as server:
        for n in range(20):
            assert server.request("PUT", f"/d/k{n}", {"n": n}, WRITE_HEADERS).status == 200
        killed = redis_pid(server)
        os.kill(killed, signal.SIGKILL)
        server.wait_healthy()  # 503 while it is down, 200 once it is back
        assert redis_pid(server) != killed
        assert server.request("GET", "/d/?c").json() == {"feed": {"title": "20"}}
        assert server.request("GET", "/d/k19?e").json()["feed"]["entry"][0]["n"] == 19
        assert server.request("PUT", "/d/after", {"n": 1}, WRITE_HEADERS).status == 200
        output = server.output()
        assert f"feedstore: redis-server (pid {killed}) exited with signal 9 (SIGKILL)" in output
        assert "feedstore: redis-server restarted (pid " in output


def test_serve_exits_1_when_redis_cannot_be_restarted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_serve(data_dir=data, log_path=tmp_path / "serve.log")
    try:
        server.wait_healthy()
        corrupt_aof(data)
        os.kill(redis_pid(server), signal.SIGKILL)
        # Five tries, 0.5 s apart and doubling up to 4 s: about 12 s, then the workers stop.
        assert server.process.wait(90) == 1
        output = server.output()
        assert output.count("feedstore: can't restart redis-server (try") == 5
        assert "feedstore: giving up on redis-server; stopping" in output
        assert wait_until_gone(marked=server.marker, mentioning=str(data)) == [], "workers too"
    finally:
        server.close()
