"""The key scheme a Redis holds: checked at start, changed by `feedstore migrate`."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from feedstore import cli, create_app, migration
from feedstore.keys import DEPTH_KEY, KeyScheme, parse
from feedstore.store import Action, Store, Write
from tests.conftest import all_keys, put, stored

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "x-index": True}}}


def write_data_set(client: Any) -> None:
    """Entries in three trees and two levels, an index, aliases, counters, a numbered POST."""
    store = Store(client)
    store.set_schema(SCHEMA)
    store.write([put("/a", n=1), put("/a/1", n=5), put("/a/1/x", n=2)])
    store.write([put("/b", n=2), Write(Action.CREATE, "", {"n": 9}, numbered_under="/b")])
    alias = {"___href": "/a/al", "___rel": "alternate"}
    store.write([put("/a/2", n=3, link=[{"___href": "/a/2", "___rel": "self"}, alias])])
    store.write([put("/c")])
    store.add_ids("/a/1", 7)


def to_old_scheme(client: Any) -> None:
    """Rename every key as feedstore named it before partition tags (fs:d:/a/1, fs:schema)."""
    for name in all_keys(client, "fs:*"):
        text = name.decode()
        parsed = parse(text)
        if parsed is not None:
            old = (
                f"fs:i:{parsed.field}:{parsed.key}"
                if parsed.kind == "i"
                else (f"fs:{parsed.kind}:{parsed.key}")
            )
        elif text.startswith("fs:{schema}"):
            old = text.replace("fs:{schema}", "fs:schema")
        else:
            old = "" if text == DEPTH_KEY else text
        if old != text:
            value = client.dump(name)
            client.delete(name)
            if old:
                client.restore(old, 0, value)


def check_data_set(client: Any, depth: int = 1) -> None:
    store = Store(client, keys=KeyScheme(depth))
    assert [stored(store, k)["n"] for k in ("/a", "/a/1", "/a/1/x", "/b", "/b/1")] == [
        1,
        5,
        2,
        2,
        9,
    ]
    assert stored(store, "/a/al")["id"] == "/a/2,1", "the alias leads to its entry"
    assert store.child_keys("/a", None, 10) == ["/a/1", "/a/2", "/a/al"]
    assert store.count("/") == 3 and store.get_ids("/a/1") == 7
    assert store.schema_document() == SCHEMA
    assert client.get(store.keys.sequence_key("/b")) == b"1", "the numbering counter moved too"
    name = store.keys.index_key("/a", "n")
    assert len(store.index_range(name, b"-", b"+", 10)) == 3


def test_old_keys_are_refused_until_migrated_and_then_all_there(redis_client: Any) -> None:
    write_data_set(redis_client)
    to_old_scheme(redis_client)
    assert redis_client.exists("fs:d:/a/1", "fs:schema") == 2
    with pytest.raises(migration.OldScheme, match="feedstore migrate --partition-depth 1"):
        create_app({}, redis_client)
    lines: list[str] = []
    moved = migration.migrate(redis_client, KeyScheme(1), lines.append)
    # Every entry's key moved; the change streams the writes made stay their partitions'.
    streams = (b":x", b":xh")
    assert moved == len([k for k in all_keys(redis_client, "fs:{*") if not k.endswith(streams)])
    assert lines[-1].startswith("migrate: done, ") and lines[-1].endswith(f", {moved} moved")
    assert not [k for k in all_keys(redis_client, "fs:*") if parse(k.decode()) and b"{" not in k]
    check_data_set(redis_client)
    create_app({}, redis_client)
    assert migration.migrate(redis_client, KeyScheme(1)) == 0, "a second run moves nothing"
    check_data_set(redis_client)


def test_another_depth_is_refused_and_migrate_moves_there_and_back(redis_client: Any) -> None:
    write_data_set(redis_client)
    create_app({}, redis_client)
    with pytest.raises(migration.OtherDepth, match="partitioned at depth 1, not 2"):
        create_app({"partition_depth": 2}, redis_client)
    assert migration.migrate(redis_client, KeyScheme(2)) > 0
    check_data_set(redis_client, depth=2)
    create_app({"partition_depth": 2}, redis_client)
    migration.migrate(redis_client, KeyScheme(1))
    check_data_set(redis_client, depth=1)


def test_an_interrupted_migration_is_refused_and_a_rerun_finishes_it(redis_client: Any) -> None:
    write_data_set(redis_client)
    to_old_scheme(redis_client)
    old = sorted(k.decode() for k in all_keys(redis_client, "fs:*") if parse(k.decode()))
    # What a crash halfway leaves: the marker, half the keys moved, one copied but not deleted.
    redis_client.set(DEPTH_KEY, migration.MIGRATING)
    for name in old[: len(old) // 2]:
        target = parse(name).name(KeyScheme(1))  # type: ignore[union-attr]
        redis_client.restore(target, 0, redis_client.dump(name), replace=True)
        if name != old[0]:
            redis_client.delete(name)
    with pytest.raises(migration.Interrupted, match="Run it again"):
        create_app({}, redis_client)
    migration.migrate(redis_client, KeyScheme(1))
    check_data_set(redis_client)
    assert redis_client.get(DEPTH_KEY) == b"1"


def test_cli_migrate_reports_progress_on_stderr(
    redis_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    write_data_set(client)
    to_old_scheme(client)
    assert cli.main(["migrate", "--redis-url", redis_server.url]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("migrated: ") and out.endswith(" keys moved to partition depth 1\n")
    assert err.startswith("feedstore: migrate: to partition depth 1, ")
    assert "feedstore: migrate: done, " in err
    check_data_set(client)
    client.close()


def test_serve_migrates_its_own_redis_and_tells_others_to_migrate(redis_server: Any) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    write_data_set(client)
    to_old_scheme(client)
    with pytest.raises(cli.CliError, match="run: feedstore migrate"):
        cli.check_key_scheme(redis_server.url, KeyScheme(1), owned=False)
    cli.check_key_scheme(redis_server.url, KeyScheme(1), owned=True)
    check_data_set(client)
    with pytest.raises(cli.CliError, match="Start with --partition-depth 1"):
        cli.check_key_scheme(redis_server.url, KeyScheme(2), owned=True)
    client.close()
