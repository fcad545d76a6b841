"""Acknowledged writes survive kill -9 of everything, and concurrent writers lose no update."""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.serving import WRITE_HEADERS, Response, Server, running_serve

WRITERS = 4
KEYS_PER_WRITER = 20
ACKS_BEFORE_KILL = 400
INCREMENTERS = 8
INCREMENTS_EACH = 25


def feed(key: str, entry_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A one-entry feed for PUT /d/, its target named by the self link."""
    entry: dict[str, Any] = {"link": [{"___href": key, "___rel": "self"}], **fields}
    if entry_id is not None:
        entry["id"] = entry_id
    return {"feed": {"entry": [entry]}}


def put(server: Server, key: str, entry_id: str | None = None, **fields: Any) -> Response:
    return server.request("PUT", "/d/", feed(key, entry_id, **fields), WRITE_HEADERS)


def read_entry(server: Server, key: str) -> tuple[int, dict[str, Any]]:
    """GET ?e of an entry that must exist: its revision (from the ETag) and the entry."""
    answer = server.request("GET", f"/d{key}?e")
    assert answer.status == 200, answer.body
    entry: dict[str, Any] = answer.json()["feed"]["entry"][0]
    return int(answer.headers["etag"].strip('"')), entry


def create_parent(server: Server) -> None:
    body = {"link": [{"___href": "/t", "___rel": "self"}]}
    assert server.request("POST", "/d/", body, WRITE_HEADERS).status == 201


# Under everysec, Redis may answer writes it has not yet handed to the kernel: while an fsync is
# still running on a slow disk it holds its AOF write() back for up to 2 s. So a SIGKILL of Redis
# itself can lose them; only always survives that (docs/api.md, "Durability"). A crash of
# feedstore can't: its Redis is sent SIGTERM, and writes and fsyncs the AOF before it exits.
@pytest.mark.parametrize(
    ("fsync", "killed"), [("everysec", "server and workers"), ("always", "everything")]
)
def test_acknowledged_writes_survive_kill_9(tmp_path: Path, fsync: str, killed: str) -> None:
    data = tmp_path / "data"
    acked: dict[str, tuple[int, str]] = {}  # key -> (revision, title) of its last 200
    in_flight: dict[int, tuple[str, str]] = {}  # writer -> the write not yet answered
    failures: list[str] = []
    lock = threading.Lock()
    with running_serve("--fsync", fsync, data_dir=data, log_path=tmp_path / "1.log") as server:
        create_parent(server)

        def write_until_killed(writer: int) -> None:
            for count in range(100_000):
                key, title = f"/t/w{writer}-{count % KEYS_PER_WRITER}", f"{writer}-{count}"
                in_flight[writer] = (key, title)
                try:
                    answer = put(server, key, title=title)
                except (OSError, http.client.HTTPException):
                    return  # the server is gone; this write may or may not have landed
                if answer.status != 200:
                    failures.append(f"{key}: {answer.status} {answer.body!r}")
                    return
                with lock:
                    acked[key] = (int(answer.headers["etag"].strip('"')), title)

        threads = [threading.Thread(target=write_until_killed, args=(n,)) for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while True:
            with lock:
                # A key's revision is the number of writes acknowledged on it.
                if sum(revision for revision, _ in acked.values()) >= ACKS_BEFORE_KILL:
                    break
            assert time.monotonic() < deadline and not failures, failures
            time.sleep(0.01)
        # Every process at once, mid-write.
        server.kill() if killed == "everything" else server.crash()
        for thread in threads:
            thread.join(30)
    assert not failures
    with running_serve(data_dir=data, log_path=tmp_path / "2.log") as server:
        for key, (revision, title) in acked.items():
            stored_revision, entry = read_entry(server, key)
            assert entry["id"] == f"{key},{stored_revision}"
            if (stored_revision, entry["title"]) != (revision, title):
                # Only the one unanswered write of the key's writer may have landed after it.
                writer = int(key.split("-")[0].removeprefix("/t/w"))
                assert in_flight[writer] == (key, entry["title"])
                assert stored_revision == revision + 1
        # The change feed committed with the data: every acknowledged write has its event, and
        # no event is ahead of the stored revision.
        events = change_events(server, "/t")
        for key, (revision, _) in acked.items():
            assert set(range(1, revision + 1)) <= events.get(key, set()), key
        for key, revisions in events.items():
            stored_revision, _ = read_entry(server, key)
            assert max(revisions) <= stored_revision, key


def change_events(server: Server, key: str) -> dict[str, set[int]]:
    """The revisions each key's change-feed events name, read to the end."""
    found: dict[str, set[int]] = {}
    since = "0"
    while True:
        answer = server.request("GET", f"/d{key}?_changes&l=1000&_since={since}")
        if answer.status == 204:
            return found
        assert answer.status == 200, answer.body
        for item in answer.json()["feed"]["entry"]:
            changed, _, revision = item["id"].rpartition(",")
            found.setdefault(changed, set()).add(int(revision))
        since = answer.headers["x-feedstore-seq"]


def test_concurrent_read_modify_write_increments_lose_nothing(tmp_path: Path) -> None:
    conflicts: list[int] = []
    with running_serve(data_dir=tmp_path / "data", log_path=tmp_path / "serve.log") as server:
        create_parent(server)
        assert put(server, "/t/counter", count=0).status == 200

        def increment(times: int) -> None:
            for _ in range(times):
                for _attempt in range(1000):
                    _, entry = read_entry(server, "/t/counter")
                    answer = put(server, "/t/counter", entry["id"], count=entry["count"] + 1)
                    if answer.status == 200:
                        break
                    assert answer.status == 409, answer.body
                    conflicts.append(1)
                else:
                    raise AssertionError("1000 conflicts in a row")

        with ThreadPoolExecutor(INCREMENTERS) as pool:
            runs = [pool.submit(increment, INCREMENTS_EACH) for _ in range(INCREMENTERS)]
            for run in runs:
                run.result(timeout=120)
        revision, entry = read_entry(server, "/t/counter")
    total = INCREMENTERS * INCREMENTS_EACH
    assert entry["count"] == total
    assert (revision, entry["id"]) == (1 + total, f"/t/counter,{1 + total}")
    assert conflicts, "the writers never overlapped, so the 409 path went untested"


FORCED_WRITERS = 16
FORCED_WRITES_EACH = 10


def test_sixteen_forced_writers_on_one_key_are_never_refused(tmp_path: Path) -> None:
    """A write without a revision check is never 409, and the retry bound outlasts 16 writers."""
    with running_serve(data_dir=tmp_path / "data", log_path=tmp_path / "serve.log") as server:
        create_parent(server)
        assert put(server, "/t/hot").status == 200
        statuses: list[int] = []

        def overwrite(writer: int) -> None:
            for count in range(FORCED_WRITES_EACH):
                statuses.append(put(server, "/t/hot", **{f"w{writer}": count}).status)

        threads = [threading.Thread(target=overwrite, args=(n,)) for n in range(FORCED_WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert statuses == [200] * FORCED_WRITERS * FORCED_WRITES_EACH
        revision, entry = read_entry(server, "/t/hot")
        assert revision == 1 + FORCED_WRITERS * FORCED_WRITES_EACH
        assert all(entry[f"w{n}"] == FORCED_WRITES_EACH - 1 for n in range(FORCED_WRITERS))
