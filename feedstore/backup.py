"""A consistent physical copy of a store's Redis, taken while it serves, and the way back.

`feedstore backup DIR` asks the store's Redis for a snapshot over an ordinary connection, as a
replica does (`SYNC`): Redis forks and writes an RDB of one instant while it goes on serving,
and sends it. It lands in `DIR/dump.rdb` (written under a temporary name, fsynced, renamed, so a
crash never leaves a half file under that name) with `DIR/backup.json` saying when, from which
Redis, its size and SHA-256. Nothing reads Redis's own disk, so a remote Redis is backed up the
same way as the embedded one (a Redis Cluster is not: each primary holds only its slots).

`feedstore restore DIR --data NEW` makes a data directory `serve` can start on: an embedded Redis
loads `DIR/dump.rdb` without AOF, then AOF is turned on, which writes the whole data set into a
new AOF; once it is written, that Redis stops. For a Redis of your own, give it `dump.rdb` as
its documentation says.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import redis
from redis.connection import AbstractConnection

from feedstore.embedded import EmbeddedRedis

RDB_FILE = "dump.rdb"
MANIFEST_FILE = "backup.json"
CHUNK = 1 << 20
Progress = Callable[[int, int], None]  # bytes so far, bytes in all


class BackupError(Exception):
    """A backup or restore that could not be made; the message says why."""


@dataclass(frozen=True)
class Manifest:
    """What backup.json says of a backup."""

    created: str
    source: str
    bytes: int
    sha256: str
    redis_version: str


def backup(
    client: redis.Redis, target: Path, source: str, progress: Progress | None = None
) -> Manifest:
    """Take a snapshot of `client`'s Redis into `target` (created if missing); return its
    manifest. `progress` is told the bytes received as they come."""
    if client.info("cluster").get("cluster_enabled"):
        raise BackupError(
            "a Redis Cluster can't be backed up as one snapshot: back up each primary"
        )
    version = str(client.info("server").get("redis_version", ""))
    target.mkdir(parents=True, exist_ok=True)
    partial = target / f".{RDB_FILE}.partial"
    digest = hashlib.sha256()
    connection = cast(AbstractConnection, client.connection_pool.make_connection())
    try:
        connection.connect()
        connection.send_command("SYNC")
        size, end_mark = _rdb_header(connection)
        received = 0
        with partial.open("wb") as out:
            for chunk in _rdb_body(connection, size, end_mark):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(received, size or received)
            out.flush()
            os.fsync(out.fileno())
    except (OSError, redis.RedisError) as e:
        partial.unlink(missing_ok=True)
        raise BackupError(f"the snapshot could not be read: {e}") from e
    finally:
        connection.disconnect()
    _check_rdb(partial)
    partial.replace(target / RDB_FILE)
    manifest = Manifest(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        source=source,
        bytes=received,
        sha256=digest.hexdigest(),
        redis_version=version,
    )
    (target / MANIFEST_FILE).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return manifest


def restore(source: Path, data_dir: Path, timeout: float = 600.0) -> Manifest:
    """Make `data_dir` (new or empty) a data directory holding the backup in `source`."""
    manifest = read_manifest(source)
    rdb = source / RDB_FILE
    digest = hashlib.sha256()
    with rdb.open("rb") as snapshot:
        for chunk in iter(lambda: snapshot.read(CHUNK), b""):
            digest.update(chunk)
    if digest.hexdigest() != manifest.sha256:
        raise BackupError(f"{rdb} is not the snapshot {source / MANIFEST_FILE} describes")
    data_dir.mkdir(parents=True, exist_ok=True)
    if any(data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty: restore into a new data directory")
    shutil.copyfile(rdb, data_dir / RDB_FILE)
    with EmbeddedRedis(data_dir, persistent=False) as loaded:
        client = redis.Redis.from_url(loaded.url)
        try:
            # The data set as loaded, rewritten into the AOF (Redis's default name, the one the
            # store's Redis is configured with) that serve's Redis reads at start.
            client.config_set("appendonly", "yes")
            _wait_for_rewrite(client, timeout)
        finally:
            client.close()
    (data_dir / RDB_FILE).unlink()
    return manifest


def read_manifest(source: Path) -> Manifest:
    try:
        fields = json.loads((source / MANIFEST_FILE).read_text(encoding="utf-8"))
        return Manifest(**fields)
    except (OSError, ValueError, TypeError) as e:
        raise BackupError(f"{source} holds no backup ({MANIFEST_FILE}: {e})") from e


def _rdb_header(connection: AbstractConnection) -> tuple[int, bytes | None]:
    """Read past the newlines Redis sends while it writes the snapshot, to `$<size>` (or
    `$EOF:<mark>`, when it streams it without a file); return the size or the end mark."""
    while True:
        line = _read_line(connection)
        if not line:
            continue  # a keep-alive newline
        if line.startswith(b"-"):
            raise BackupError(f"Redis refused the snapshot: {line[1:].decode(errors='replace')}")
        if line.startswith(b"$EOF:"):
            return 0, line[5:]
        if line.startswith(b"$") and line[1:].isdigit():
            return int(line[1:]), None
        raise BackupError(f"unexpected answer to SYNC: {line[:80]!r}")


def _read_line(connection: AbstractConnection) -> bytes:
    sock = _socket(connection)
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = sock.recv(1)
        if not byte:
            raise BackupError("Redis closed the connection during the snapshot")
        line += byte
    return bytes(line).rstrip(b"\r\n")


def _rdb_body(connection: AbstractConnection, size: int, end_mark: bytes | None) -> Iterator[bytes]:
    sock = _socket(connection)
    if end_mark is None:
        left = size
        while left:
            chunk = sock.recv(min(CHUNK, left))
            if not chunk:
                raise BackupError("Redis closed the connection during the snapshot")
            left -= len(chunk)
            yield chunk
        return
    tail = b""
    while True:
        chunk = sock.recv(CHUNK)
        if not chunk:
            raise BackupError("Redis closed the connection during the snapshot")
        data = tail + chunk
        if data.endswith(end_mark):
            yield data[: -len(end_mark)]
            return
        keep = len(end_mark)
        tail = data[-keep:]
        yield data[:-keep]


def _socket(connection: AbstractConnection) -> socket.socket:
    sock: socket.socket | None = connection._sock  # redis-py keeps the connected socket here
    if sock is None:
        raise BackupError("not connected")
    return sock


def _check_rdb(path: Path) -> None:
    with path.open("rb") as snapshot:
        if snapshot.read(5) != b"REDIS":
            path.unlink(missing_ok=True)
            raise BackupError("what Redis sent is not an RDB snapshot")


def _wait_for_rewrite(client: redis.Redis, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if (
            info.get("aof_enabled") == 1
            and not info.get("aof_rewrite_in_progress")
            and not info.get("aof_rewrite_scheduled")
        ):
            if info.get("aof_last_bgrewrite_status") != "ok":
                raise BackupError("Redis could not write the AOF of the restored data")
            return
        time.sleep(0.05)
    raise BackupError(f"the AOF of the restored data was not written within {timeout:.0f} s")
