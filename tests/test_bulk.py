"""Bulk writes (bulk.py): chunks of one transaction each, in parallel or in order."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
import redis

from feedstore import bulk
from feedstore.errors import (
    BulkErrors,
    DuplicatedKeys,
    InvalidOption,
    NotFound,
    RevisionConflict,
)
from feedstore.principal import ANONYMOUS, Principal
from feedstore.store import Store, Write, Written
from tests.conftest import put, snapshot, stored

CHUNK = 10


class SpyStore(Store):
    """A Store that records each chunk it is asked to write, and how many ran at once."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.chunks: list[list[str]] = []
        self.running = self.most_running = 0
        self.lock = threading.Lock()

    def write(self, writes: Sequence[Write], principal: Principal = ANONYMOUS) -> list[Written]:
        with self.lock:
            self.chunks.append([w.key for w in writes])
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            return super().write(writes, principal)
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def spy(redis_client: redis.Redis) -> SpyStore:
    store = SpyStore(redis_client)
    store.write([put("/p")])
    store.chunks.clear()
    return store


def keys(count: int) -> list[str]:
    return [f"/p/{number}" for number in range(count)]


def puts(count: int) -> list[Write]:
    return [put(key, n=number) for number, key in enumerate(keys(count))]


def present(store: Store, candidates: list[str]) -> list[str]:
    return [key for key in candidates if store.get(key) is not None]


@pytest.mark.parametrize("mode", list(bulk.Mode))
def test_every_entry_is_written_in_chunks_of_the_chunk_size(spy: SpyStore, mode: bulk.Mode) -> None:
    written = bulk.write(spy, puts(25), mode, CHUNK, workers=4)
    assert [w.key for w in written] == keys(25), "in request order, whatever order chunks ran in"
    assert sorted(map(len, spy.chunks)) == [5, 10, 10]
    assert sorted(key for chunk in spy.chunks for key in chunk) == sorted(keys(25))
    assert present(spy, keys(25)) == keys(25)
    assert stored(spy, "/p/24")["n"] == 24


def test_serial_chunks_run_in_request_order(spy: SpyStore) -> None:
    bulk.write(spy, puts(25), bulk.Mode.SERIAL, CHUNK, workers=4)
    assert spy.chunks == [keys(25)[0:10], keys(25)[10:20], keys(25)[20:25]]
    assert spy.most_running == 1


def test_serial_stops_at_the_failing_chunk_and_says_what_was_written(spy: SpyStore) -> None:
    writes = puts(25)
    writes[15].revision = 7  # /p/15 doesn't exist: its chunk is refused whole
    with pytest.raises(BulkErrors) as caught:
        bulk.write(spy, writes, bulk.Mode.SERIAL, CHUNK, workers=4)
    error = caught.value
    assert (error.status, error.code, error.key) == (404, "not_found", "/p/15")
    assert error.written == keys(10)
    assert len(spy.chunks) == 2, "the chunk after the failing one is never tried"
    assert present(spy, keys(25)) == keys(10)


def test_parallel_writes_every_other_chunk_and_leaves_the_failing_one_untouched(
    spy: SpyStore, redis_client: redis.Redis
) -> None:
    bulk.write(spy, puts(25), bulk.Mode.PARALLEL, CHUNK, workers=4)
    before = {key: stored(spy, key) for key in keys(25)[10:20]}
    writes = [put(key, 1, n=-number) for number, key in enumerate(keys(25))]
    writes[13] = put("/p/13", 5, n=-13)  # stale: its revision is 1
    with pytest.raises(BulkErrors) as caught:
        bulk.write(spy, writes, bulk.Mode.PARALLEL, CHUNK, workers=4)
    error = caught.value
    assert (error.status, error.code, error.key) == (409, "revision_conflict", "/p/13")
    assert error.written == keys(10) + keys(25)[20:]
    assert {key: stored(spy, key) for key in keys(25)[10:20]} == before
    assert [stored(spy, key)["id"] for key in error.written] == [f"{k},2" for k in error.written]


def test_parallel_reports_every_failing_chunk_under_the_first(spy: SpyStore) -> None:
    writes = puts(25)
    writes[22].revision = 3
    writes[4].revision = 2
    with pytest.raises(BulkErrors) as caught:
        bulk.write(spy, writes, bulk.Mode.PARALLEL, CHUNK, workers=4)
    body = caught.value.to_dict()
    assert (body["status"], body["key"]) == (404, "/p/4"), "the first failing chunk's, in order"
    assert [entry["key"] for entry in body["entries"]] == ["/p/4", "/p/22"]
    assert body["written"] == keys(20)[10:]
    assert present(spy, keys(25)) == keys(20)[10:]


def test_a_key_twice_across_chunks_is_refused_before_anything_is_written(
    spy: SpyStore, redis_client: redis.Redis
) -> None:
    before = snapshot(redis_client)
    writes = [*puts(25), put("/p/3", n=0)]
    for mode in bulk.Mode:
        with pytest.raises(DuplicatedKeys) as caught:
            bulk.write(spy, writes, mode, CHUNK, workers=4)
        assert caught.value.message == "Keys are duplicated. /p/3"
    assert spy.chunks == [] and snapshot(redis_client) == before


def test_the_pool_bounds_concurrency_and_leaves_no_thread_behind(spy: SpyStore) -> None:
    threads = set(threading.enumerate())
    written = bulk.write(spy, puts(95), bulk.Mode.PARALLEL, CHUNK, workers=3)
    assert len(written) == 95 and len(spy.chunks) == 10
    assert 1 <= spy.most_running <= 3
    assert set(threading.enumerate()) == threads


def test_a_setting_of_no_workers_still_writes_one_chunk_at_a_time(spy: SpyStore) -> None:
    assert len(bulk.write(spy, puts(25), bulk.Mode.PARALLEL, CHUNK, workers=0)) == 25
    assert spy.most_running == 1


def test_a_failing_bulk_leaves_no_thread_behind_either(spy: SpyStore) -> None:
    threads = set(threading.enumerate())
    writes = puts(45)
    writes[0].revision = 9
    with pytest.raises(BulkErrors):
        bulk.write(spy, writes, bulk.Mode.PARALLEL, CHUNK, workers=4)
    assert set(threading.enumerate()) == threads


def test_one_chunk_fails_with_its_own_error_and_nothing_written(spy: SpyStore) -> None:
    writes = puts(3)
    writes[1].revision = 4
    writes[2].revision = 4
    with pytest.raises(BulkErrors) as caught:
        bulk.write(spy, writes, bulk.Mode.PARALLEL, CHUNK, workers=4)
    body = caught.value.to_dict()
    assert (body["code"], body["written"]) == ("not_found", [])
    assert [entry["key"] for entry in body["entries"]] == ["/p/1", "/p/2"]
    assert present(spy, keys(3)) == []


def test_bulk_errors_keep_the_first_errors_shape_and_add_what_was_written() -> None:
    error = BulkErrors([RevisionConflict("/a", 3, None), NotFound("/b")], ["/c", "/d"])
    assert (error.status, error.code, error.message) == (
        409,
        "revision_conflict",
        "Optimistic locking failed. Key = /a",
    )
    assert error.to_dict() == {
        "status": 409,
        "code": "revision_conflict",
        "key": "/a",
        "revision": 3,
        "entries": [
            {"key": "/a", "code": "revision_conflict", "message": error.message},
            {"key": "/b", "code": "not_found", "message": "No entry. Key = /b"},
        ],
        "written": ["/c", "/d"],
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, None),
        ({"_bulk": ""}, bulk.Mode.PARALLEL),
        ({"_bulkserial": ""}, bulk.Mode.SERIAL),
        ({"e": "", "_bulkserial": "1"}, bulk.Mode.SERIAL),
    ],
)
def test_the_mode_comes_from_the_options(options: dict[str, str], expected: bulk.Mode) -> None:
    assert bulk.mode(options) is expected


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("PUT", {"_bulk", "_bulkserial"}, "_bulk and _bulkserial can't be combined."),
        ("PUT", {"_bulk", "_async"}, bulk.ASYNC_REFUSED),
        ("DELETE", {"_rf", "_async"}, bulk.ASYNC_REFUSED),
        ("GET", {"_async"}, bulk.ASYNC_REFUSED),
    ],
)
def test_what_a_bulk_cant_do_is_refused(method: str, options: set[str], message: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        bulk.check_options(options)
        bulk.mode(options)
    assert caught.value.message == message
