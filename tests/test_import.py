"""feedstore import: the round trip of restore, the modes, batches and their failures, dry runs,
truncated files, other formats, and a resume after kill -9 that applies no batch twice."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tqdm import tqdm

from feedstore import cli
from feedstore.credentials import Credentials, parse_token
from feedstore.embedded import EmbeddedRedis
from feedstore.export import Exporter, export_jsonl
from feedstore.fields import Limits
from feedstore.import_file import ImportRefused, open_source
from feedstore.importer import Importer, ImportFailed, Mode, Options
from feedstore.keys import KeyScheme
from feedstore.store import Action, Store, Write
from tests.conftest import add_user, all_keys, make_token

FEEDSTORE = str(Path(sys.executable).with_name("feedstore"))
SCHEMA = Path(__file__).resolve().parent.parent / "examples" / "schema.json"


def put(key: str, **fields: Any) -> Write:
    return Write(Action.PUT, key, dict(fields))


def contents(client: Any) -> dict[bytes, Any]:
    """Every key of the store (its change feed aside) with its value, by type."""
    found: dict[bytes, Any] = {}
    for name in all_keys(client):
        if name.endswith(b":x") or name == b"fs:x:/" or b":idem:" in name:
            continue  # each store's change feed is its own history
        kind = client.type(name).decode()
        if kind == "string":
            found[name] = client.get(name)
        elif kind == "zset":
            found[name] = client.zrange(name, 0, -1, withscores=True)
        elif kind == "set":
            found[name] = sorted(client.smembers(name))
        elif kind == "hash":
            found[name] = client.hgetall(name)
        else:
            found[name] = kind
    return found


def exported(client: Any, root: str = "/") -> bytes:
    out = io.BytesIO()
    export_jsonl(Exporter(client, KeyScheme()), root, out)
    return out.getvalue()


def load(client: Any, path: Path, mode: Mode = Mode.RESTORE, **options: Any) -> Any:
    importer = Importer(Store(client), Limits(), Options(mode=mode, **options))
    return importer.run(open_source(path), None)


def jsonl(*items: Any, end: bool = True) -> bytes:
    """An export file of `items` (dicts, or bytes as they are), with its end line."""
    header = {"feedstore": "export", "version": 1, "root": "/", "seq": None, "schema": None}
    lines = [orjson.dumps(header) + b"\n"]
    lines += [(i if isinstance(i, bytes) else orjson.dumps(i)) + b"\n" for i in items]
    entries = sum(1 for i in items if isinstance(i, dict) and "link" in i)
    digest = hashlib.sha256(b"".join(lines)).hexdigest()
    trailer = {"feedstore": "end", "entries": entries, "seq": None, "sha256": digest}
    return b"".join(lines) + (orjson.dumps(trailer) + b"\n" if end else b"")


def entry(key: str, **fields: Any) -> dict[str, Any]:
    return {"link": [{"___href": key, "___rel": "self"}], **fields}


# -- the round trip ---------------------------------------------------------------------------

SEGMENT = st.sampled_from(["a", "b", "c", "1", "2", "x_y"])
TREES = st.lists(st.lists(SEGMENT, min_size=1, max_size=3), min_size=1, max_size=12)


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    paths=TREES,
    rewrites=st.lists(st.integers(0, 11), max_size=6),
    counters=st.dictionaries(SEGMENT, st.integers(-5, 99), max_size=3),
    aliased=st.booleans(),
)
def test_a_restore_into_an_empty_store_reproduces_the_store(
    redis_client: redis.Redis,
    tmp_path: Path,
    paths: list[list[str]],
    rewrites: list[int],
    counters: dict[str, int],
    aliased: bool,
) -> None:
    redis_client.flushall()
    store = Store(redis_client)
    keys = sorted({"/" + "/".join(p[: n + 1]) for p in paths for n in range(len(p))})
    for n, key in enumerate(keys):  # parents first: a key sorts after its parent
        store.write([put(key, title=f"t{n}", score=n)])
    for n in rewrites:
        store.write([put(keys[n % len(keys)], title=f"again {n}")])
    if aliased:
        link = [
            {"___href": keys[0], "___rel": "self"},
            {"___href": f"{keys[0]}/z9", "___rel": "alternate"},
        ]
        store.write([put(keys[0], link=link)])
    for name, value in counters.items():
        store.add_ids(f"/{name}", value)
        store.allocate_ids(f"/{name}", abs(value) + 1)
    before = contents(redis_client)
    path = tmp_path / "export.jsonl"
    path.write_bytes(exported(redis_client))
    redis_client.flushall()
    load(redis_client, path, batch=3)
    assert contents(redis_client) == before


# -- modes --------------------------------------------------------------------------------------


def test_create_refuses_each_existing_key_with_its_line(
    real_redis: redis.Redis, tmp_path: Path
) -> None:
    Store(real_redis).write([put("/p"), put("/p/1")])
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(entry("/p"), entry("/p/1"), entry("/p/2")))
    before = contents(real_redis)
    with pytest.raises(ImportFailed) as failed:
        load(real_redis, path, Mode.CREATE)
    assert str(failed.value) == "line 2: /p: Duplicated key. /p\nline 3: /p/1: Duplicated key. /p/1"
    assert contents(real_redis) == before  # the batch is all or nothing


def test_upsert_writes_new_revisions(real_redis: redis.Redis, tmp_path: Path) -> None:
    store = Store(real_redis)
    store.write([put("/p", title="old")])
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(entry("/p", title="new"), entry("/p/1")))
    load(real_redis, path, Mode.UPSERT)
    assert store.get("/p") is not None and store.get("/p")[0] == 2  # type: ignore[index]
    assert orjson.loads(store.get("/p")[1])["title"] == "new"  # type: ignore[index]


def test_restore_skips_the_same_entry_and_refuses_another_unless_forced(
    real_redis: redis.Redis, tmp_path: Path
) -> None:
    store = Store(real_redis)
    store.write([put("/p", title="one")])
    path = tmp_path / "p.jsonl"
    path.write_bytes(exported(real_redis))
    load(real_redis, path)  # the same: nothing changes
    assert store.get("/p")[0] == 1  # type: ignore[index]
    store.write([put("/p", title="two")])
    store.write([put("/p", title="three")])
    with pytest.raises(ImportFailed, match=r"line 2: /p: Duplicated key. /p"):
        load(real_redis, path)
    load(real_redis, path, force=True)
    revision, raw = store.get("/p")  # type: ignore[misc]
    assert revision == 4 and orjson.loads(raw)["title"] == "one"  # above the 3 it had


def test_a_restored_revision_is_never_one_a_deleted_key_had(
    real_redis: redis.Redis, tmp_path: Path
) -> None:
    store = Store(real_redis)
    store.write([put("/p")])
    path = tmp_path / "p.jsonl"
    path.write_bytes(exported(real_redis))
    store.write(
        [
            put("/p"),
        ]
    )
    store.write([put("/p")])
    store.write([Write(Action.DELETE, "/p")])  # fs:r:/p stays at 3
    load(real_redis, path)
    revision, raw = store.get("/p")  # type: ignore[misc]
    assert revision == 4 and orjson.loads(raw)["id"] == "/p,4"


def test_a_restore_line_needs_its_exported_id_and_times(
    real_redis: redis.Redis, tmp_path: Path
) -> None:
    moment = "2026-01-01T00:00:00.000+00:00"
    times = {"published": moment, "updated": moment}
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        jsonl(
            entry("/a", **times),
            {"id": "/b,2", **entry("/c"), **times},
            {"id": "/d", **entry("/d"), **times},
            {"id": "/e,1", **entry("/e"), "published": times["published"]},
            {"id": "/f,1", **entry("/f"), "bad name": 1, **times},
            {"id": "/g,1", "link": {"___href": "/g", "___rel": "self"}, **times},
            {"id": "/h,03", **entry("/h"), **times},
        )
    )
    problems = [str(p) for p in load(real_redis, path, dry_run=True).problems]
    assert problems == [
        "line 2: ID format is invalid. id must be a string: None",
        "line 3: /c: a restore needs the exported id <key>,<revision>: /b,2",
        "line 4: /d: ID format is invalid. /d has no revision.",
        "line 5: /e: a restore needs the exported updated",
        "line 6: /f: Field name is invalid: bad name",
    ]
    rejects = io.BytesIO()
    assert load(real_redis, path, rejects=rejects).written == 2
    assert orjson.loads(Store(real_redis).get("/h")[1])["id"] == "/h,3"  # type: ignore[index]
    assert Store(real_redis).get("/g")[0] == 1  # type: ignore[index]


# -- failing batches, rejects, dry runs, truncation -----------------------------------------------


def test_with_rejects_the_failing_lines_go_to_the_file_and_the_rest_is_written(
    real_redis: redis.Redis, tmp_path: Path
) -> None:
    Store(real_redis).write([put("/p")])
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(entry("/p"), entry("/q"), entry("/q/1"), entry("/r/1")))
    rejects = io.BytesIO()
    report = load(real_redis, path, Mode.CREATE, rejects=rejects)
    assert (
        rejects.getvalue()
        == orjson.dumps(entry("/p")) + b"\n" + orjson.dumps(entry("/r/1")) + b"\n"
    )
    assert report.rejected == 2 and report.written == 2
    assert Store(real_redis).get("/q/1") is not None


def test_a_batch_fails_before_the_lines_read_while_it_was_written(
    real_redis: redis.Redis, tmp_path: Path
) -> None:
    """Batches are written by a thread of their own while the next lines are read: a batch's
    failure is still reported before a later line's, and nothing after it is written."""
    Store(real_redis).write([put("/p")])
    path = tmp_path / "in.jsonl"
    lines = (entry("/p"), entry("/q"), entry("/q/1"), {"title": "no self link"}, entry("/r"))
    path.write_bytes(jsonl(*lines))
    state = tmp_path / "in.jsonl.import-state"
    importer = Importer(Store(real_redis), Limits(), Options(mode=Mode.CREATE, batch=2))
    with pytest.raises(ImportFailed) as failed:
        importer.run(open_source(path), state)
    assert str(failed.value) == "line 2: /p: Duplicated key. /p"
    assert Store(real_redis).get("/q") is None and Store(real_redis).get("/r") is None
    assert orjson.loads(state.read_bytes())["line"] == 2  # past the header: no batch written
    state.unlink()

    rejects = io.BytesIO()
    options = Options(mode=Mode.CREATE, batch=2, rejects=rejects)
    report = Importer(Store(real_redis), Limits(), options).run(open_source(path), state)
    assert rejects.getvalue().splitlines() == [orjson.dumps(lines[0]), orjson.dumps(lines[3])]
    assert (report.written, report.rejected) == (3, 2)
    assert all(Store(real_redis).get(key) is not None for key in ("/q", "/q/1", "/r"))
    assert orjson.loads(state.read_bytes())["line"] == 8  # past the end line


def test_a_dry_run_lists_every_problem_by_line_and_writes_nothing(
    redis_server: EmbeddedRedis, real_redis: redis.Redis, tmp_path: Path, capsys: Any
) -> None:
    Store(real_redis).set_schema(json.loads(SCHEMA.read_text()))
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        jsonl(
            entry("/p", score=1),
            entry("/p/1", favorite={"color": "red"}),
            b"{not json",
            entry("/q/1"),
            entry("/p/2", score="high"),
            {"counter": "/c"},
        )
    )
    before = contents(real_redis)
    status = cli.main(["import", str(path), "--dry-run", "--redis-url", redis_server.url])
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert out[0] == "line 3: /p/1: Unknown field: favorite.color"
    assert out[1].startswith("line 4: not JSON")
    assert out[2] == "line 5: /q/1: Parent path is required. /q (it must come before its children)"
    assert out[3].startswith("line 6: /p/2: ")
    assert out[4] == "line 7: /c: a counter line needs a key and an integer value"
    assert out[5] == "import --dry-run: 4 entries, 5 problems"
    assert contents(real_redis) == before


def test_a_file_cut_short_is_refused_unless_partial(
    real_redis: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_bytes(jsonl(entry("/p"), entry("/p/1"), end=False))
    with pytest.raises(ImportRefused, match="no end line: it was cut short"):
        load(real_redis, path)
    whole = jsonl(entry("/p"), entry("/p/1"))
    path.write_bytes(whole.replace(b'"/p/1"', b'"/p/2"'))
    with pytest.raises(ImportRefused, match="line 4: the checksum doesn't match"):
        load(real_redis, path)
    assert contents(real_redis) == {}
    load(real_redis, path, Mode.CREATE, partial=True)
    assert Store(real_redis).get("/p/2") is not None


# -- other formats ------------------------------------------------------------------------------


def test_an_atom_feed_and_vtecx_bodies_are_read_through_the_codecs(
    real_redis: redis.Redis, tmp_path: Path
) -> None:
    atom = tmp_path / "feed.xml"
    atom.write_bytes(
        b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><link href="/a" rel="self"/>'
        b"<title>A</title></entry></feed>"
    )
    load(real_redis, atom, Mode.CREATE)
    array = tmp_path / "array.json"
    array.write_bytes(orjson.dumps([entry("/a/1", title="one"), entry("/a/2")]))
    load(real_redis, array, Mode.CREATE)
    feed = tmp_path / "folderacls.json"
    feed.write_bytes(orjson.dumps({"feed": {"entry": [entry("/b", title="B")]}}))
    load(real_redis, feed, Mode.CREATE)
    store = Store(real_redis)
    titles = [orjson.loads(store.get(k)[1]).get("title") for k in ("/a", "/a/1", "/b")]  # type: ignore[index]
    assert titles == ["A", "one", "B"]


# -- on Redis Cluster, batches keep to one partition --------------------------------------------


def test_on_a_cluster_batches_keep_to_one_partition(redis_cluster: Any, tmp_path: Path) -> None:
    redis_cluster.flush()
    client = redis_cluster.client()
    try:
        path = tmp_path / "in.jsonl"
        items = [entry("/a"), entry("/a/1"), entry("/b"), entry("/b/1"), entry("/a/2")]
        path.write_bytes(jsonl(*items))
        report = load(client, path, Mode.CREATE, batch=500)
        assert report.written == 5
        assert [k for k, _ in Exporter(client, KeyScheme()).entries("/")] == [
            "/a", "/a/1", "/a/2", "/b", "/b/1",
        ]  # fmt: skip
    finally:
        client.close()


# -- resume after kill -9 -----------------------------------------------------------------------


def test_a_resume_after_kill_9_applies_no_batch_twice(
    redis_server: EmbeddedRedis, real_redis: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(jsonl(entry("/k"), *(entry(f"/k/{n}", n=n) for n in range(4000))))
    state = Path(f"{path}.import-state")
    command = [FEEDSTORE, "import", str(path), "--mode", "upsert", "--batch", "10"]
    command += ["--redis-url", redis_server.url]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as process:
        while not (state.exists() and orjson.loads(state.read_bytes())["line"] > 100):
            assert process.poll() is None, process.communicate()
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert real_redis.exists("fs:{/k}:d:/k/50")  # some batches are in
    # As if the state's write had been lost after each EXEC: back to the first batch.
    saved = orjson.loads(state.read_bytes())
    first = len(path.read_bytes().split(b"\n", 1)[0]) + 1
    state.write_bytes(orjson.dumps({**saved, "offset": first, "line": 2}))
    done = subprocess.run([*command, "--resume"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert b"batches done before" in done.stdout
    store = Store(real_redis)
    revisions = {store.get(f"/k/{n}")[0] for n in range(4000)}  # type: ignore[index]
    assert revisions == {1}  # an upsert applied twice would be at 2
    assert store.count("/k") == 4000
    assert not state.exists() and real_redis.keys("*:idem:*") == []  # nothing left behind


# -- users and tokens ---------------------------------------------------------------------------


def test_users_and_tokens_travel_with_users_as_hashes_never_secrets(
    redis_server: EmbeddedRedis, real_redis: redis.Redis, tmp_path: Path
) -> None:
    token = make_token(real_redis, "alice", groups=("sales",))
    add_user(real_redis, "bob", password="correct horse")
    Store(real_redis).write([put("/p")])
    before = contents(real_redis)
    url = ["--redis-url", redis_server.url]
    plain, path = tmp_path / "plain.jsonl", tmp_path / "users.jsonl"
    assert cli.main(["export", "-o", str(plain), *url]) == 0
    assert b'"user"' not in plain.read_bytes()
    assert cli.main(["export", "--users", "-o", str(path), *url]) == 0
    data = path.read_bytes()
    assert b'"user":"alice"' in data and b"$argon2id$" in data
    parsed = parse_token(token)
    assert parsed is not None  # the secret is all after fst_<id>_, "_" may be in it
    assert parsed[1].encode() not in data and b"correct horse" not in data
    real_redis.flushall()
    assert cli.main(["import", str(path), "--mode", "restore", "--users", *url]) == 0
    assert contents(real_redis) == before
    assert Credentials(real_redis).principal_of_token(token).account == "alice"


# -- the command, as a person meets it ----------------------------------------------------------


def test_in_a_pipe_import_draws_no_bar_and_says_what_it_did(
    redis_server: EmbeddedRedis, real_redis: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        jsonl(
            entry("/p"), *(entry(f"/p/{n}") for n in range(1200)), {"sequence": "/p", "value": 1200}
        )
    )
    done = subprocess.run(
        [FEEDSTORE, "import", str(path), "--redis-url", redis_server.url],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout == b"import: 1201 entries written, 1 counters, 0 rejected\n"
    assert not Path(f"{path}.import-state").exists()


def test_in_a_terminal_import_draws_its_bar_on_stderr(
    redis_server: EmbeddedRedis, real_redis: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(entry("/p"), *(entry(f"/p/{n}") for n in range(1200))))
    leader, follower = pty.openpty()
    # A terminal of 24 rows of 80 columns, as a person's (a new pseudo-terminal has none).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(
        [FEEDSTORE, "import", str(path), "--redis-url", redis_server.url],
        stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(follower)
    out, _ = process.communicate(timeout=60)
    screen = b""
    with contextlib.suppress(OSError):  # EIO once the terminal's last writer is gone
        while chunk := os.read(leader, 65536):
            screen += chunk
    os.close(leader)
    assert process.returncode == 0
    assert out == b"import: 1201 entries written, 0 counters, 0 rejected\n"
    size = tqdm.format_sizeof(path.stat().st_size)  # the bar's total: the file's bytes
    assert b"import: 100%|" in screen and f"| {size}/{size} [".encode() in screen
