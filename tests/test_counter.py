"""vte.cx counter requests over HTTP (API.md §8): `_allocids`, `_rangeids`, `GET ?_addids=0`,
as vtecxnext sends them, and atomic under concurrency."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from feedstore.counter import allocate_count, whole_number
from feedstore.counter_range import CounterRange
from feedstore.errors import InvalidOption
from feedstore.store import Store
from tests.conftest import snapshot


def title(response: TestResponse) -> str:
    assert response.status_code == 200, response.data
    return response.json["feed"]["title"]  # type: ignore[index,no-any-return]


def error(response: TestResponse) -> tuple[int, str]:
    return response.status_code, response.json["feed"]["title"]  # type: ignore[index]


@pytest.mark.parametrize("text", ["0", "501", "x", "-1", "", "1.5"])
def test_allocate_count_is_1_to_500(text: str) -> None:
    assert allocate_count("500") == 500
    with pytest.raises(InvalidOption, match=r"_allocids must be a number from 1 to 500"):
        allocate_count(text)


@pytest.mark.parametrize("text", ["1-", "--1", "1e3", " 1", "1234567890123456789"])
def test_counter_amounts_are_whole_numbers_of_at_most_18_digits(text: str) -> None:
    assert whole_number("_addids", "-123456789012345678") == -123456789012345678
    with pytest.raises(InvalidOption, match=r"_addids must be a whole number"):
        whole_number("_addids", text)


# -- over HTTP, as vtecxnext sends them --------------------------------------------------------


def test_allocids_share_the_numbering_of_posted_children(client: FlaskClient) -> None:
    client.put("/d/p", json={"title": "parent"})
    assert title(client.get("/d/p?_allocids=3")) == "1,2,3"  # vtecxnext: GET ?_allocids=<n>
    assert client.post("/d/p", json={"title": "child"}).headers["Location"] == "/d/p/4"
    assert title(client.put("/d/p?_allocids=1")) == "5"
    assert title(client.get("/d/nothing/here?_allocids=2")) == "1,2", "no entry is needed"


def test_rangeids_as_vtecxnext_sends_them(client: FlaskClient) -> None:
    # vtecxnext rangeids(): PUT ?_rangeids with JSON.stringify({feed: {title: range}}), no type.
    body = b'{"feed":{"title":"1-3"}}'
    sniffed = "application/x-www-form-urlencoded"
    assert title(client.put("/d/c?_rangeids", data=body, content_type=sniffed)) == "1-3"
    assert title(client.get("/d/c?_rangeids")) == "1-3"  # vtecxnext getRangeids()
    assert title(client.get("/d/c?_getids")) == "0", "a new range starts below its minimum"
    added = [title(client.put("/d/c?_addids=1")) for _ in range(7)]
    assert added == ["1", "2", "3", "1", "2", "3", "1"]
    assert title(client.get("/d/c?_getids")) == "1"
    assert title(client.get("/d/c?_addids=0")) == "1"


def test_a_stopping_range_refuses_to_pass_its_end_and_changes_nothing(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    client.put("/d/c?_rangeids", json={"feed": {"title": "10-11!"}})
    assert [title(client.put("/d/c?_addids=1")) for _ in range(2)] == ["10", "11"]
    before = snapshot(redis_client)
    assert error(client.put("/d/c?_addids=1")) == (
        400,
        "Counter is out of its range 10-11!: /c would be 12",
    )
    assert (
        error(client.put("/d/c?_setids=9"))[1]
        == "Counter is out of its range 10-11!: /c would be 9"
    )
    assert snapshot(redis_client) == before
    assert title(client.put("/d/c?_setids=10")) == "10"


def test_a_range_in_xml_and_its_removal(client: FlaskClient) -> None:
    xml = b"<feed xmlns='http://www.w3.org/2005/Atom'><title>100-199</title></feed>"
    response = client.put("/d/c?_rangeids", data=xml, content_type="application/atom+xml")
    assert title(response) == "100-199"
    assert title(client.put("/d/c?_addids=5")) == "104"
    assert title(client.put("/d/c?_rangeids")) == "", "no body: the range is removed"
    assert title(client.get("/d/c?_rangeids")) == ""
    assert title(client.put("/d/c?_addids=100")) == "204", "the value stays, unbounded now"
    assert title(client.put("/d/c?_rangeids", json={"feed": {}})) == ""


@pytest.mark.parametrize(
    ("method", "url", "body", "headers", "message"),
    [
        ("GET", "/d/c?_addids=5", None, {}, "_addids on GET reads: it must be 0: _addids=5"),
        ("GET", "/d/c?_allocids=0", None, {}, "_allocids must be a number from 1 to 500"),
        ("PUT", "/d/c?_allocids=x", None, {}, "_allocids must be a number from 1 to 500"),
        ("GET", "/d/c?_getids&_allocids=1", None, {}, "_getids and _allocids can't be combined."),
        ("PUT", "/d/c?_rangeids", {"feed": {"title": "9-1"}}, {}, "Range is invalid: 9-1"),
        ("PUT", "/d/c?_rangeids", {"title": "1-9"}, {}, "Request format is invalid: a message"),
        (
            "PUT",
            "/d/c?_rangeids",
            {"feed": {"title": 5}},
            {},
            "Request format is invalid: a message",
        ),
        (
            "PUT",
            "/d/c?_allocids=1",
            {"title": "x"},
            {},
            "A counter request takes no body: _allocids",
        ),
        ("GET", "/d/c?_getids", None, {"If-None-Match": '"1"'}, "If-Match and If-None-Match don't"),
        ("GET", "/d/c?_rangeids", None, {"If-Match": "*"}, "If-Match and If-None-Match don't"),
    ],
)
def test_counter_requests_refuse_what_they_cannot_use(
    client: FlaskClient,
    redis_client: redis.Redis,
    method: str,
    url: str,
    body: Any,
    headers: dict[str, str],
    message: str,
) -> None:
    client.put("/d/c?_rangeids", json={"feed": {"title": "1-5"}})
    before = snapshot(redis_client)
    status, text = error(client.open(url, method=method, json=body, headers=headers))
    assert (status, text[: len(message)]) == (400, message)
    assert snapshot(redis_client) == before


def test_get_addids_needs_no_write_and_reads_like_getids(app: Any) -> None:
    bare = app.test_client()  # no X-Requested-With: a GET is no write
    assert title(bare.get("/d/c?_addids")) == "0"
    assert title(bare.get("/d/c?_addids=0")) == "0"


# -- atomic under concurrency --------------------------------------------------------------------


def test_concurrent_increments_of_a_ranged_counter_lose_nothing(real_redis: redis.Redis) -> None:
    Store(real_redis).set_counter_range("/c", CounterRange(1, 1000))
    seen: list[int] = []

    def add() -> None:
        store = Store(redis.Redis(connection_pool=real_redis.connection_pool))
        for _ in range(25):
            seen.append(store.add_ids("/c", 1))

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(seen) == list(range(1, 101))


def test_a_range_set_between_watch_and_exec_is_seen(real_redis: redis.Redis) -> None:
    """A second client sets a stopping range while add_ids waits between its read and EXEC:
    the WATCH fails, add_ids reads again, and the new range refuses the add."""
    store, other = Store(real_redis), Store(redis.Redis(connection_pool=real_redis.connection_pool))
    original = real_redis.pipeline
    interleaved: list[bool] = []

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = original(*args, **kwargs)
        multi = pipe.multi

        def multi_after_a_concurrent_write() -> None:
            if not interleaved:
                interleaved.append(True)
                other.set_counter_range("/c", CounterRange(1, 5, stop=True))
                other.set_ids("/c", 5)
            multi()

        pipe.multi = multi_after_a_concurrent_write
        return pipe

    real_redis.pipeline = pipeline  # type: ignore[method-assign]
    with pytest.raises(InvalidOption, match="out of its range 1-5!"):
        store.add_ids("/c", 1)
    assert interleaved == [True]
    assert store.get_ids("/c") == 5, "the add wrote nothing"
