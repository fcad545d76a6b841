"""feedstore backup and restore: a snapshot taken while writers run comes back whole and exact."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import redis

from feedstore import cli
from feedstore.backup import BackupError, backup, restore
from feedstore.embedded import EmbeddedRedis
from tests.conftest import snapshot
from tests.serving import WRITE_HEADERS, running_serve


def entry(key: str, **fields: object) -> dict[str, object]:
    return {"feed": {"entry": [{"link": [{"___href": key, "___rel": "self"}], **fields}]}}


def test_a_backup_restores_to_the_same_keys_and_values(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "live") as live:
        client = redis.Redis.from_url(live.url)
        client.mset({f"fs:{{/a}}:d:/a/{n}": f'{{"n":{n}}}' for n in range(500)})
        client.zadd("fs:{/a}:c:/a", {f"/a/{n}": 0 for n in range(500)})
        before = snapshot(client)
        seen: list[tuple[int, int]] = []
        manifest = backup(
            client, tmp_path / "backup", "test", lambda done, total: seen.append((done, total))
        )
        client.close()
    assert manifest.bytes == (tmp_path / "backup" / "dump.rdb").stat().st_size > 0
    assert seen and seen[-1][0] == manifest.bytes
    assert (
        json.loads((tmp_path / "backup" / "backup.json").read_text())["sha256"] == manifest.sha256
    )
    restore(tmp_path / "backup", tmp_path / "restored")
    assert not (tmp_path / "restored" / "dump.rdb").exists()
    # The restored directory is an ordinary data directory: its Redis starts from the AOF.
    with EmbeddedRedis(tmp_path / "restored") as restored:
        client = redis.Redis.from_url(restored.url)
        assert snapshot(client) == before
        client.close()


def test_a_backup_under_writers_is_one_instant_and_serves_again(tmp_path: Path) -> None:
    """Writers keep writing through a real serve while the backup is taken; the restored store
    serves every entry it holds, each entry's document and revision from the same instant."""
    with running_serve(data_dir=tmp_path / "data", log_path=tmp_path / "serve.log") as server:
        assert server.request("PUT", "/d/", entry("/w"), WRITE_HEADERS).status == 200
        stop = threading.Event()
        first = threading.Barrier(5)  # the four writers have each written once, and the test

        def write(n: int) -> None:
            revision = 0
            while not stop.is_set():
                revision += 1
                server.request("PUT", "/d/", entry(f"/w/{n}", title=str(revision)), WRITE_HEADERS)
                if revision == 1:
                    first.wait(30)

        writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for writer in writers:
            writer.start()
        first.wait(30)  # the backup is taken while they go on writing
        try:
            status = cli.main(
                ["backup", str(tmp_path / "backup"), "--data", str(tmp_path / "data")]
            )
        finally:
            stop.set()
            for writer in writers:
                writer.join()
        assert status == 0
    assert cli.main(["restore", str(tmp_path / "backup"), "--data", str(tmp_path / "copy")]) == 0
    with running_serve(data_dir=tmp_path / "copy", log_path=tmp_path / "copy.log") as copy:
        listed = copy.request("GET", "/d/w?f").json()["feed"]["entry"]
        assert len(listed) == 4
        stored = redis.Redis.from_url(f"unix://{tmp_path / 'copy' / 'redis.sock'}")
        for document in listed:
            key, _, revision = document["id"].rpartition(",")
            # The PUTs without id overwrite: revision n carries the title of the n-th write,
            # and the revision key, written in the same MULTI, is of the same instant.
            assert document["title"] == revision, key
            assert stored.get(f"fs:{{/w}}:r:{key}") == revision.encode(), key
        stored.close()


def test_restore_refuses_a_changed_snapshot_or_a_used_directory(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "live", persistent=False) as live:
        client = redis.Redis.from_url(live.url)
        client.set("k", "v")
        backup(client, tmp_path / "backup", "test")
        client.close()
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        restore(tmp_path / "backup", used)
    with (tmp_path / "backup" / "dump.rdb").open("ab") as rdb:
        rdb.write(b"\0")
    with pytest.raises(BackupError, match="is not the snapshot"):
        restore(tmp_path / "backup", tmp_path / "new")
    with pytest.raises(BackupError, match="holds no backup"):
        restore(tmp_path / "nothing", tmp_path / "new2")
