"""Idempotency keys (API.md §19): a write retried with its key is made once and answered again."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from feedstore import create_app, idempotency, partitions
from feedstore.errors import IdempotencyKeyReused
from feedstore.keys import KeyScheme
from feedstore.principal import ANONYMOUS
from feedstore.store import Action, Store, Write
from tests.conftest import OPEN_ACL, all_keys, bearer, make_token, open_client, snapshot
from tests.redis_cluster import RedisCluster

PARENT = {"link": [{"___href": "/t", "___rel": "self"}]}
KEY = {"Idempotency-Key": '"8e03978e-40d5-43e8-bc93-6894a57f9324"'}


@pytest.fixture
def parent(client: FlaskClient) -> FlaskClient:
    assert client.post("/d/", json=PARENT).status_code == 201
    return client


def same_answer(first: TestResponse, again: TestResponse) -> None:
    """`again` is `first` replayed: status, headers and body, plus the replay marker."""
    assert again.status_code == first.status_code
    assert again.get_data() == first.get_data()
    for name in ("Location", "ETag", "Content-Type", "x-feedstore-merged"):
        assert again.headers.get(name) == first.headers.get(name)
    assert "Idempotency-Replayed" not in first.headers
    assert again.headers["Idempotency-Replayed"] == "true"


def children(client: FlaskClient, key: str = "/t") -> int:
    return int(client.get(f"/d{key}?c").get_json()["feed"]["title"])


def records(redis_client: Any) -> list[bytes]:
    return all_keys(redis_client, "*:idem:*")


def test_a_post_retried_ten_times_makes_one_child(parent: FlaskClient) -> None:
    first = parent.post("/d/t", json={"title": "once"}, headers=KEY)
    assert first.status_code == 201 and first.headers["Location"] == "/d/t/1"
    for _ in range(9):
        same_answer(first, parent.post("/d/t", json={"title": "once"}, headers=KEY))
    assert children(parent) == 1
    assert parent.get("/d/t/1").headers["ETag"] == '"1"'


def test_a_quoted_key_and_its_bare_token_are_one_key(parent: FlaskClient) -> None:
    first = parent.post("/d/t", json={}, headers={"Idempotency-Key": '"abc"'})
    same_answer(first, parent.post("/d/t", json={}, headers={"Idempotency-Key": "abc"}))
    assert children(parent) == 1


@pytest.mark.parametrize(
    ("second", "why"),
    [
        ({"json": {"title": "other"}}, "another body"),
        ({"json": {"title": "once"}, "query_string": "x"}, "?x: another answer format"),
        ({"json": {"title": "once"}, "path": "/d/t/1"}, "another URL in the tree"),
        ({"json": {"title": "once"}, "method": "PUT"}, "another method"),
        ({"json": {"title": "once"}, "headers": {"Prefer": "return=minimal"}}, "a header"),
    ],
)
def test_a_key_used_with_another_request_is_422(
    parent: FlaskClient, redis_client: Any, second: dict[str, Any], why: str
) -> None:
    first = parent.post("/d/t", json={"title": "once"}, headers=KEY)
    before, second = snapshot(redis_client), dict(second)
    method, path = second.pop("method", "POST"), second.pop("path", "/d/t")
    headers = {**KEY, **second.pop("headers", {})}
    response = parent.open(path, method=method, headers=headers, **second)
    assert response.status_code == 422, why
    assert b"idempotency_key_reused" in response.get_data()
    assert b"Idempotency-Key was used with another request." in response.get_data()
    assert snapshot(redis_client) == before
    same_answer(first, parent.post("/d/t", json={"title": "once"}, headers=KEY))


def test_a_key_belongs_to_one_tree(parent: FlaskClient) -> None:
    """The record lives in the partition of the request's first key (its slot on a cluster):
    the same key sent to another top-level tree is another record."""
    assert parent.post("/d/", json={"link": [{"___href": "/u", "___rel": "self"}]}).status_code
    assert parent.post("/d/t", json={}, headers=KEY).headers["Location"] == "/d/t/1"
    assert parent.post("/d/u", json={}, headers=KEY).headers["Location"] == "/d/u/1"


@pytest.mark.parametrize(
    "value",
    ["", '""', "a b", "a" * 256, f'"{"a" * 256}"', '"abc', '"a"b"', '"abc";p=1', "ключ", "\x7f"],
)
def test_an_invalid_key_is_400_and_writes_nothing(
    parent: FlaskClient, redis_client: Any, value: str
) -> None:
    before = snapshot(redis_client)
    response = parent.post("/d/t", json={}, headers={"Idempotency-Key": value})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_idempotency_key"
    assert response.get_json()["feed"]["title"] == "Idempotency-Key is invalid."
    assert snapshot(redis_client) == before


@pytest.mark.parametrize(
    "value", ["a" * 255, '"a\\"b"', "!#$%&'*+-.^_`|~:/=", '"' + "z" * 255 + '"']
)
def test_valid_keys(value: str) -> None:
    assert idempotency.parse_key(value)


@pytest.mark.parametrize("config", [{"require_idempotency": ["/orders"]}])
def test_a_required_key_missing_is_400_naming_the_key(client: FlaskClient) -> None:
    assert client.post("/d/", json=PARENT).status_code == 201  # not under /orders
    response = client.post("/d/orders", json={})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "idempotency_key_required"
    assert response.get_json()["feed"]["title"] == "Idempotency-Key is required. Key = /orders"
    assert client.put("/d/orders/1?_addids=1").status_code == 400
    orders = {"link": [{"___href": "/orders", "___rel": "self"}]}
    assert client.post("/d/", json=orders, headers=KEY).status_code == 201


# Every write kind, once with its key then again: the second answer is the first's, and Redis
# is exactly as the first left it (nothing written twice, no revision bumped).
def links(*keys: str, rel: str = "self") -> dict[str, Any]:
    return {"link": [{"___href": key, "___rel": rel} for key in keys]}


MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
WRITE_KINDS: list[tuple[str, str, str, Any, dict[str, str]]] = [
    ("post with self link", "POST", "/d/", {"link": [{"___href": "/t/a", "___rel": "self"}]}, {}),
    ("post of two", "POST", "/d/t", [{"title": "1"}, {"title": "2"}], {}),
    ("put", "PUT", "/d/t/1", {"title": "new"}, {}),
    ("put representation", "PUT", "/d/t/1", {"t": 1}, {"Prefer": "return=representation"}),
    ("put of a feed", "PUT", "/d/", [links("/t/1"), links("/t/2")], {}),
    ("put ?_merge", "PUT", "/d/t/1?_merge", {"id": "/t/1,1", "score": 1}, {}),
    ("put ?_addalias", "PUT", "/d/t/1?_addalias", links("/t/al", rel="alternate"), {}),
    ("put ?_revert", "PUT", "/d/t/1?_revert=1", None, {}),
    ("put ?_bulk", "PUT", "/d/?_bulk", [{"link": [{"___href": "/t/b", "___rel": "self"}]}], {}),
    ("patch", "PATCH", "/d/t/1", {"score": 5}, {}),
    ("patch merge-patch", "PATCH", "/d/t/1", {"score": 6}, MERGE_PATCH),
    ("patch minimal", "PATCH", "/d/t/1", {"score": 7}, {"Prefer": "return=minimal"}),
    ("delete", "DELETE", "/d/t/2", None, {}),
    ("delete ?_rf", "DELETE", "/d/t?_rf", None, {}),
    ("delete ?_clearfolder", "DELETE", "/d/t?_clearfolder", None, {}),
    ("delete of a feed", "DELETE", "/d/", [{"link": [{"___href": "/t/2", "___rel": "self"}]}], {}),
    ("put ?_addids", "PUT", "/d/t?_addids=3", None, {}),
    ("put ?_setids", "PUT", "/d/t?_setids=9", None, {}),
    ("put ?_allocids", "PUT", "/d/t?_allocids=2", None, {}),
    ("put ?_rangeids", "PUT", "/d/t?_rangeids", {"feed": {"title": "5-9"}}, {}),
]  # fmt: skip


@pytest.mark.parametrize("config", [{"history": ["/t=5"]}])
@pytest.mark.parametrize(
    ("kind", "method", "url", "body", "headers"), WRITE_KINDS, ids=[k[0] for k in WRITE_KINDS]
)
def test_every_write_kind_is_made_once(
    parent: FlaskClient,
    redis_client: Any,
    kind: str,
    method: str,
    url: str,
    body: Any,
    headers: dict[str, str],
) -> None:  # fmt: skip
    for n in (1, 2):
        assert parent.put(f"/d/t/{n}", json={"title": str(n)}).status_code == 200
    assert parent.put("/d/t/1", json={"title": "second"}).status_code == 200
    sent = {"json": body} if body is not None else {}
    first = parent.open(url, method=method, headers={**KEY, **headers}, **sent)
    assert first.status_code < 300, first.get_data()
    assert len(records(redis_client)) == 1
    before = snapshot(redis_client)
    same_answer(first, parent.open(url, method=method, headers={**KEY, **headers}, **sent))
    assert snapshot(redis_client) == before


def test_a_counter_added_to_with_a_key_counts_once(parent: FlaskClient) -> None:
    for _ in range(3):
        assert parent.put("/d/t?_addids=1", headers=KEY).get_json()["feed"]["title"] == "1"
    assert parent.put("/d/t?_addids=1").get_json()["feed"]["title"] == "2"
    assert parent.get("/d/t?_getids").get_json()["feed"]["title"] == "2"


def test_a_failed_write_records_nothing_and_its_retry_is_fresh(
    parent: FlaskClient, redis_client: Any
) -> None:
    taken = {"link": [{"___href": "/t/a", "___rel": "self"}], "title": "mine"}
    assert parent.post("/d/", json={**taken, "title": "theirs"}).status_code == 201
    conflict = parent.post("/d/", json=taken, headers=KEY)
    assert conflict.status_code == 409 and records(redis_client) == []
    assert parent.delete("/d/t/a").status_code == 200  # the conflict resolved
    created = parent.post("/d/", json=taken, headers=KEY)
    assert created.status_code == 201
    assert parent.get("/d/t/a").get_json()["feed"]["entry"][0]["title"] == "mine"
    same_answer(created, parent.post("/d/", json=taken, headers=KEY))


def test_a_get_ignores_the_key(parent: FlaskClient) -> None:
    numbers = [parent.get("/d/t?_allocids=1", headers=KEY).get_json()["feed"]["title"]]
    numbers.append(parent.get("/d/t?_allocids=1", headers=KEY).get_json()["feed"]["title"])
    assert numbers == ["1", "2"]


@pytest.mark.parametrize("config", [{"max_entries": 2}])
def test_a_bulk_of_several_chunks_refuses_a_key(parent: FlaskClient, redis_client: Any) -> None:
    feed = [{"link": [{"___href": f"/t/{n}", "___rel": "self"}]} for n in range(3)]
    before = snapshot(redis_client)
    response = parent.put("/d/?_bulk", json=feed, headers=KEY)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "idempotency_key_not_accepted"
    assert (
        "_bulk of 3 entries takes more than one transaction" in response.get_json()["feed"]["title"]
    )
    assert snapshot(redis_client) == before
    first = parent.put("/d/?_bulkserial", json=feed[:2], headers=KEY)
    assert first.status_code == 200
    same_answer(first, parent.put("/d/?_bulkserial", json=feed[:2], headers=KEY))


@pytest.mark.parametrize("config", [{"idempotency_ttl": 1}])
def test_a_key_is_reusable_once_its_answer_expires(parent: FlaskClient, redis_client: Any) -> None:
    assert parent.post("/d/t", json={}, headers=KEY).headers["Location"] == "/d/t/1"
    [record] = records(redis_client)
    assert 0 < redis_client.ttl(record) <= 1
    wait_until(lambda: not redis_client.exists(record))
    again = parent.post("/d/t", json={}, headers=KEY)
    assert again.headers["Location"] == "/d/t/2" and "Idempotency-Replayed" not in again.headers


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll `condition` (a key's expiry): correctness, not timing, is what the test asserts."""
    done = threading.Event()
    for _ in range(1000):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("the condition never held")


# -- concurrency and crashes, on the real servers ------------------------------------------


@pytest.fixture(params=["redis-server", "cluster"])
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A real redis-server or a real Redis Cluster: what fakeredis can't show (threads, WATCH)."""
    client = open_client(request, request.param)
    yield client
    client.close()


@pytest.fixture
def real_app(server: Any) -> Flask:
    return create_app({}, server)


def new_client(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    return client


@pytest.fixture
def first(real_app: Flask) -> FlaskClient:
    client = new_client(real_app)
    assert client.post("/d/", json=PARENT).status_code == 201
    return client


class Held:
    """Runs a request on a thread of its own and stops it at `hold` until released."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.reached, self.go = threading.Event(), threading.Event()
        self.response: TestResponse | None = None

    def hold(self) -> None:
        if not self.reached.is_set():
            self.reached.set()
            assert self.go.wait(30)

    def start(self, **request: Any) -> threading.Thread:
        def run() -> None:
            self.response = new_client(self.app).post("/d/t", **request)

        thread = threading.Thread(target=run)
        thread.start()
        assert self.reached.wait(30)
        return thread


def test_a_retry_while_the_first_runs_is_409_with_retry_after(
    real_app: Flask, first: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    held, queue = Held(real_app), idempotency.Lease.queue

    def holding(self: idempotency.Lease, pipe: Any, result: Any) -> None:
        held.hold()  # the lease is taken, the transaction not yet committed
        queue(self, pipe, result)

    monkeypatch.setattr(idempotency.Lease, "queue", holding)
    thread = held.start(json={"title": "a"}, headers=KEY)
    retry = first.post("/d/t", json={"title": "a"}, headers=KEY)
    assert retry.status_code == 409 and retry.headers["Retry-After"] == "1"
    assert retry.get_json()["error"]["code"] == "idempotency_in_progress"
    assert (
        retry.get_json()["feed"]["title"] == "A request with this Idempotency-Key is in progress."
    )
    held.go.set()
    thread.join()
    assert held.response is not None and held.response.status_code == 201
    same_answer(held.response, first.post("/d/t", json={"title": "a"}, headers=KEY))
    assert children(first) == 1


def test_a_worker_dying_after_exec_leaves_a_replayable_answer(
    first: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = Store.write

    def crashing(self: Store, *args: Any, **kwargs: Any) -> Any:
        write(self, *args, **kwargs)
        raise RuntimeError("the worker died between EXEC and the reply")

    monkeypatch.setattr(Store, "write", crashing)
    assert first.post("/d/t", json={"title": "a"}, headers=KEY).status_code == 500
    monkeypatch.setattr(Store, "write", write)
    retry = first.post("/d/t", json={"title": "a"}, headers=KEY)
    assert retry.status_code == 201 and retry.headers["Idempotency-Replayed"] == "true"
    assert retry.headers["Location"] == "/d/t/1" and children(first) == 1


def test_a_lease_taken_over_never_writes_twice(
    real_app: Flask, first: FlaskClient, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    held, queue = Held(real_app), idempotency.Lease.queue

    def stalling(self: idempotency.Lease, pipe: Any, result: Any) -> None:
        held.hold()  # inside A's transaction, after its WATCH, before its EXEC
        queue(self, pipe, result)

    monkeypatch.setattr(idempotency.Lease, "queue", stalling)
    thread = held.start(json={"title": "a"}, headers=KEY)
    [record] = records(server)
    server.pexpire(record, 1)  # A stalls past its lease
    wait_until(lambda: not server.exists(record))
    taker = first.post("/d/t", json={"title": "a"}, headers=KEY)  # B takes the record over
    assert taker.status_code == 201 and taker.headers["Location"] == "/d/t/1"
    held.go.set()
    thread.join()
    assert held.response is not None
    same_answer(taker, held.response)  # A's EXEC failed: it answers B's result
    assert children(first) == 1
    assert first.get("/d/t/1").headers["ETag"] == '"1"'


def test_keys_are_scoped_per_principal(server: Any) -> None:
    app = create_app({"auth": "on", "default_acl": OPEN_ACL}, server)
    client = new_client(app)
    alice, bob = make_token(server, "alice"), make_token(server, "bob")
    assert client.post("/d/", json=PARENT, headers=bearer(alice)).status_code == 201
    mine = client.post("/d/t", json={}, headers={**KEY, **bearer(alice)})
    theirs = client.post("/d/t", json={}, headers={**KEY, **bearer(bob)})
    assert (mine.headers["Location"], theirs.headers["Location"]) == ("/d/t/1", "/d/t/2")
    assert "Idempotency-Replayed" not in theirs.headers
    same_answer(mine, client.post("/d/t", json={}, headers={**KEY, **bearer(alice)}))
    assert len(records(server)) == 2


# -- the store's API, without HTTP (an import's batches) -----------------------------------


def test_the_store_writes_a_batch_once() -> None:
    store = Store(fakeredis.FakeRedis())
    batch = [Write(Action.PUT, "/i"), Write(Action.PUT, "/i/1", {"n": 1})]
    request = idempotency.Request("dump.jsonl:0", fingerprint="sha256-of-the-batch")
    done = store.write_once(batch, ANONYMOUS, request)
    assert not done.replayed and [w.key for w in done.result or []] == ["/i", "/i/1"]
    again = store.write_once(batch, ANONYMOUS, request)
    assert again.replayed and again.result is None and again.answer == done.answer
    assert store.get("/i/1") is not None and store.get("/i/1")[0] == 1  # type: ignore[index]
    with pytest.raises(IdempotencyKeyReused):
        store.write_once(batch, ANONYMOUS, idempotency.Request("dump.jsonl:0", "another"))


def test_on_the_cluster_pipeline_a_key_still_writes_once(
    redis_cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a slot moves, a write runs on redis-py's cluster pipeline, which can't send the
    lease's SET before its WATCH: the SET that takes the lease costs that attempt, never the
    write."""
    redis_cluster.flush()
    server = redis_cluster.client()
    monkeypatch.setattr(
        partitions.PartitionRoute,
        "pipeline",
        lambda self: partitions.unretried(self.client.pipeline(transaction=True)),
    )
    retries: list[int] = []
    back_off = Store._back_off
    monkeypatch.setattr(
        Store, "_back_off", lambda self, attempt: retries.append(attempt) or back_off(self, attempt)
    )
    client = new_client(create_app({}, server))
    assert client.post("/d/", json=PARENT).status_code == 201
    for key in ("/d/t", "/d/t/a"):
        method = client.post if key == "/d/t" else client.put
        headers = {"Idempotency-Key": f"on the pipeline {key}".replace(" ", "-")}
        first = method(key, json={"title": "a"}, headers=headers)
        assert first.status_code in (200, 201), first.get_data()
        same_answer(first, method(key, json={"title": "a"}, headers=headers))
    assert children(client) == 2
    assert retries == [0, 0]  # each first request's lease taken after its WATCH: one retry
    server.close()


def test_a_replay_adds_no_change_event(parent: FlaskClient, redis_client: Any) -> None:
    """The change feed (API.md §18) has one event per write: a replay writes nothing."""
    stream = KeyScheme().change_stream_key("/t")
    before = redis_client.xlen(stream)
    for _ in range(3):
        assert parent.post("/d/t", json={}, headers=KEY).status_code == 201
    assert redis_client.xlen(stream) == before + 1
