"""feedstore export: the file's lines, their order, the checksum, Atom, resume, and the CLI as a
person meets it (a terminal for the bar, a pipe for the data)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pty
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import redis

from feedstore import codec_json, codec_xml
from feedstore.embedded import EmbeddedRedis
from feedstore.errors import FeedstoreError
from feedstore.export import Exporter, export_atom, export_jsonl, resume_point
from feedstore.fields import Limits
from feedstore.import_file import open_source
from feedstore.importer import Importer, Mode, Options
from feedstore.keys import KeyScheme
from feedstore.store import Action, Store, Write

FEEDSTORE = str(Path(sys.executable).with_name("feedstore"))


def put(key: str, **fields: Any) -> Write:
    return Write(Action.PUT, key, dict(fields))


def seed(client: Any) -> Store:
    """/a (twice written), /a/1 with an alias /a/one, /a/1/x, /a/2, /b; a counter, a sequence."""
    store = Store(client)
    store.write([put("/a")])
    store.write([put("/b", title="b")])
    store.write([put("/a", title="a")])
    link = [{"___href": "/a/1", "___rel": "self"}, {"___href": "/a/one", "___rel": "alternate"}]
    store.write([put("/a/1", link=link), put("/a/2"), put("/a/1/x")])
    store.add_ids("/hits", 12)
    store.allocate_ids("/a", 40)
    return store


def export_lines(client: Any, root: str = "/") -> list[bytes]:
    out = io.BytesIO()
    export_jsonl(Exporter(client, KeyScheme()), root, out)
    return out.getvalue().splitlines(keepends=True)


def test_an_export_is_header_entries_parents_first_counters_and_a_checksummed_end(
    redis_client: redis.Redis,
) -> None:
    store = seed(redis_client)
    lines = export_lines(redis_client)
    header, *body, end = map(orjson.loads, lines)
    assert header["feedstore"] == "export" and header["version"] == 1 and header["root"] == "/"
    ids = [item.get("id") for item in body if "id" in item]
    assert ids == ["/a,2", "/a/1,1", "/a/1/x,1", "/a/2,1", "/b,1"]  # no alias, parents first
    found = store.get("/a/1")
    assert found is not None and lines[2] == found[1] + b"\n"  # as stored, as ?e answers
    assert body[5:] == [{"counter": "/hits", "value": 12}, {"sequence": "/a", "value": 40}]
    assert end["feedstore"] == "end" and end["entries"] == 5
    assert end["sha256"] == hashlib.sha256(b"".join(lines[:-1])).hexdigest()


def test_an_export_of_a_tree_has_only_that_tree(redis_client: redis.Redis) -> None:
    seed(redis_client)
    header, *body, end = map(orjson.loads, export_lines(redis_client, "/a/1"))
    assert header["root"] == "/a/1"
    assert [item["id"] for item in body] == ["/a/1,1", "/a/1/x,1"]
    assert end["entries"] == 2


def test_the_schema_travels_in_the_header(real_redis: redis.Redis) -> None:
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    Store(real_redis).set_schema(schema)
    header = orjson.loads(export_lines(real_redis)[0])
    assert header["schema"] == schema


def test_a_resumed_export_carries_on_after_its_last_whole_entry(
    real_redis: redis.Redis, tmp_path: Path
) -> None:
    store = Store(real_redis)
    for n in range(3):
        store.write([put(f"/t{n}")])
    store.write([put(f"/t1/{n}") for n in range(30)])
    store.write([put(f"/t1/5/{n}") for n in range(5)])
    whole = export_lines(real_redis)
    for cut in (1, 10, 12, len(whole) - 3):  # after the header, inside /t1/5's children, ...
        path = tmp_path / f"cut{cut}.jsonl"
        path.write_bytes(b"".join(whole[:cut]) + whole[cut][:7])  # and half a line
        resumed, keep = resume_point(path, "/")
        with path.open("r+b") as out:
            out.truncate(keep)
            out.seek(keep)
            export_jsonl(Exporter(real_redis, KeyScheme()), "/", out, resumed=resumed)
        assert path.read_bytes().splitlines(keepends=True) == [whole[0], *whole[1:]][: len(whole)]


def test_atom_is_one_feed_of_the_entries(redis_client: redis.Redis) -> None:
    store = seed(redis_client)
    out = io.BytesIO()
    assert export_atom(Exporter(redis_client, KeyScheme()), "/a", out) == 4
    documents = codec_xml.loads_documents(out.getvalue(), Limits())
    assert [d["id"] for d in documents] == ["/a,2", "/a/1,1", "/a/1/x,1", "/a/2,1"]
    found = store.get("/a/1")
    assert found is not None and documents[1] == orjson.loads(found[1])


def whole(data: bytes) -> list[bytes]:
    """The entry and counter lines of an export, whose end line must check."""
    lines = data.splitlines(keepends=True)
    end = orjson.loads(lines[-1])
    assert end["sha256"] == hashlib.sha256(b"".join(lines[:-1])).hexdigest()
    return [line for line in lines if not line.startswith(b'{"feedstore":')]


def export_through_a_terminal(url: str) -> tuple[bytes, bytes]:
    """`feedstore export -o -` with stderr on a pseudo-terminal and stdout on a pipe, as
    `feedstore export > file` in a terminal: what stdout and the terminal got."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [FEEDSTORE, "export", "--redis-url", url],
        stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(follower)
    data, _ = process.communicate(timeout=60)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    assert process.returncode == 0
    return data, screen


def test_in_a_terminal_the_bar_draws_on_stderr_and_stdout_is_the_file(
    redis_server: EmbeddedRedis, real_redis: redis.Redis
) -> None:
    Store(real_redis).write([put(f"/k{n}") for n in range(1500)])
    data, screen = export_through_a_terminal(redis_server.url)
    assert whole(data) == export_lines(real_redis)[1:-1]
    assert b"1500 entries" in screen and b"export:" in screen  # the bar, then the summary
    assert b"\r" in screen


def test_in_a_pipe_there_is_no_bar(redis_server: EmbeddedRedis, real_redis: redis.Redis) -> None:
    Store(real_redis).write([put(f"/k{n}") for n in range(1500)])
    done = subprocess.run(
        [FEEDSTORE, "export", "--redis-url", redis_server.url], capture_output=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stderr.startswith(b"export: 1500 entries of /, at seq ")
    assert whole(done.stdout) == export_lines(real_redis)[1:-1]


def test_a_reader_that_stops_early_ends_the_export_without_a_traceback(
    redis_server: EmbeddedRedis, real_redis: redis.Redis, tmp_path: Path
) -> None:
    Store(real_redis).write([put(f"/k{n}") for n in range(1500)])  # more than a pipe holds
    errors = tmp_path / "stderr"
    done = subprocess.run(
        f"{FEEDSTORE} export --redis-url {redis_server.url} 2>{errors} | head -1",
        shell=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert orjson.loads(done.stdout)["feedstore"] == "export"
    assert errors.read_text() == "export: stopped, its reader closed the pipe\n"


class SlowExporter(Exporter):
    """An exporter that pauses before each page of children, so writers write during its walk."""

    def _page(self, children: list[str]) -> tuple[list[bytes | None], list[int]]:
        time.sleep(0.01)
        return super()._page(children)


def write_at_random(url: str, seed: int, stop: threading.Event) -> None:
    store, pick = Store(redis.Redis.from_url(url)), random.Random(seed)
    while not stop.is_set():
        key, roll = f"/w/{pick.randrange(2400)}", pick.random()
        with contextlib.suppress(FeedstoreError):  # a child without its parent, a key gone
            if roll < 0.6:
                store.write([put(key, title=str(roll))])
            elif roll < 0.8:
                store.write([Write(Action.DELETE, key, recursive=True)])
            else:
                store.write([put(f"{key}/c")])
    store.redis.close()


def test_an_export_under_four_writers_is_the_store_at_its_end_seq(
    redis_server: EmbeddedRedis, real_redis: redis.Redis, tmp_path: Path
) -> None:
    store = Store(real_redis)
    store.write([put("/w")])
    store.write([put(f"/w/{n}") for n in range(2000)])
    stop = threading.Event()
    writers = [
        threading.Thread(target=write_at_random, args=(redis_server.url, seed, stop))
        for seed in range(4)
    ]
    for writer in writers:
        writer.start()
    out = io.BytesIO()
    try:
        time.sleep(0.1)
        exporter = SlowExporter(real_redis, KeyScheme(), page=100)
        export_jsonl(exporter, "/", out, streams=store.streams)
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    header, *body, end = map(orjson.loads, out.getvalue().splitlines())
    in_file: dict[str, int] = {}  # each key's last line
    for item in body:
        if "id" in item:
            key, _, revision = item["id"].rpartition(",")
            in_file[key] = int(revision)
        elif "deleted" in item:
            in_file.pop(item["deleted"], None)
    at_seq: dict[str, int] = {}  # each key as the change feed says it was at the end's seq
    for _, event in real_redis.xrange("fs:x:/", "-", end["seq"]):
        key, revision = event[b"k"].decode(), int(event[b"r"])
        if event[b"o"] == b"d":
            at_seq.pop(key, None)
        else:
            at_seq[key] = revision
    during = real_redis.xrange("fs:x:/", "(" + header["seq"], end["seq"])
    assert len(during) > 100  # the writers wrote while the export walked
    assert in_file == at_seq
    # Restored, the file is that store too: its catch-up lines are written over the walk's.
    path = tmp_path / "export.jsonl"
    path.write_bytes(out.getvalue())
    real_redis.flushall()
    Importer(Store(real_redis), Limits(), Options(mode=Mode.RESTORE)).run(open_source(path), None)
    restored = Exporter(real_redis, KeyScheme()).entries("/")
    assert {key: codec_json.stored_revision(raw, key) for key, raw in restored} == at_seq
