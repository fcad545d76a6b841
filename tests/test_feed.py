"""Feed reads over HTTP (API.md §2, §6): filters, sort, count, indexes, the fetch limit, cursors."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import snapshot
from tests.serving import WRITE_HEADERS, running_serve

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "x-index": True},
        "name": {"type": "string", "x-index": True},
        "level": {"type": "integer"},
        "user": {"type": "object", "properties": {"email": {"type": "string"}}},
        "weight": {"type": "number"},
        "active": {"type": "boolean"},
    },
}


def keys(response: TestResponse) -> list[str]:
    if response.status_code == 204:
        return []
    return [e["link"][0]["___href"] for e in response.json["feed"]["entry"]]  # type: ignore[index]


def all_pages(client: FlaskClient, url: str) -> tuple[list[str], list[int]]:
    """Follow x-vtecx-nextpage to the end: every key, and every status seen."""
    found: list[str] = []
    statuses: list[int] = []
    while True:
        response = client.get(url)
        statuses.append(response.status_code)
        found += keys(response)
        cursor = response.headers.get("x-vtecx-nextpage")
        if cursor is None:
            return found, statuses
        url = f"{url.split('&p=')[0]}&p={cursor}"
        assert len(statuses) < 100


@pytest.fixture
def app(app: Flask) -> Flask:
    app.extensions["feedstore"].store.set_schema(SCHEMA)
    return app


@pytest.fixture
def people(client: FlaskClient) -> FlaskClient:
    """/p with 12 children /p/01../p/12: score 12..1 (descending), names cycling a, b, c."""
    client.post("/d/", json={"link": [{"___href": "/p", "___rel": "self"}]})
    entries = [
        {
            "link": [{"___href": f"/p/{n:02}", "___rel": "self"}],
            "title": f"Person {n}",
            "score": 13 - n,
            "name": "abc"[n % 3],
            "level": n * 10,
            "user": {"email": f"u{n}@{'foo' if n % 2 else 'bar'}.com"},
        }
        for n in range(1, 13)
    ]
    assert client.post("/d/", json=entries).status_code == 201
    return client


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("score-gt-10", ["/p/01", "/p/02"]),
        ("level-ge-100", ["/p/10", "/p/11", "/p/12"]),  # as numbers: "100" > "90" only so
        ("level-lt-30", ["/p/01", "/p/02"]),
        ("name=a&score-le-6", ["/p/09", "/p/12"]),
        ("user.email-bm-@bar.com&level-le-40", ["/p/02", "/p/04"]),
        ("user.email-rg-u1[0-9]@.*", ["/p/10", "/p/11", "/p/12"]),
        ("title-fm-Person 1", ["/p/01", "/p/10", "/p/11", "/p/12"]),
        ("score-ne-1&score-ne-2&level-gt-90", ["/p/10"]),
        ("title-ft-PERSON 1", ["/p/01", "/p/10", "/p/11", "/p/12"]),
        ("user.email-ft-u1,foo", ["/p/01", "/p/11"]),
        ("|title-ft-son 2&|name-ft-C", ["/p/02", "/p/05", "/p/08", "/p/11"]),
        ("|score-eq-12&|name-eq-c", ["/p/01", "/p/02", "/p/05", "/p/08", "/p/11"]),
        (
            "level-gt-20&|name=a&|name=b",
            ["/p/03", "/p/04", "/p/06", "/p/07", "/p/09", "/p/10", "/p/12"],
        ),
    ],
)
def test_filters(people: FlaskClient, query: str, expected: list[str]) -> None:
    assert keys(people.get(f"/d/p?f&{query}")) == expected
    count = people.get(f"/d/p?c&{query}")
    assert count.json["feed"]["title"] == str(len(expected))  # type: ignore[index]


def test_a_full_width_digit_in_a_filter_is_no_number(people: FlaskClient) -> None:
    # Declared numbers: a value that can never be one is refused (§4.5), not read as digits.
    for url in ("/d/p?f&score-gt-\uff11\uff11", "/d/p?f&score=\uff11\uff12&s=score"):
        response = people.get(url)
        assert response.status_code == 400
        assert response.json["feed"]["title"].startswith("Filter value is not a valid integer")  # type: ignore[index]


def test_percent_encoded_bar_is_the_same_as_a_bar(people: FlaskClient) -> None:
    assert keys(people.get("/d/p?f&%7Cscore-eq-12&%7Cscore-eq-1")) == ["/p/01", "/p/12"]


@pytest.mark.parametrize("field", ["score", "level"])  # with and without an index
def test_sort_both_ways_and_page_through_it(people: FlaskClient, field: str) -> None:
    ascending, _ = all_pages(people, f"/d/p?f&l=5&s={field}")
    descending, _ = all_pages(people, f"/d/p?f&l=5&s={field}-desc")
    by_level = [f"/p/{n:02}" for n in range(1, 13)]
    expected = by_level if field == "level" else by_level[::-1]
    assert (ascending, descending) == (expected, expected[::-1])


def test_sorted_and_filtered_through_the_index(people: FlaskClient) -> None:
    response = people.get("/d/p?f&s=score&score-ge-3&score-lt-10&name=b")
    assert keys(response) == ["/p/10", "/p/07", "/p/04"]


def test_text_filters_on_the_sorted_field_leave_the_index_walk_whole(people: FlaskClient) -> None:
    assert keys(people.get("/d/p?f&s=score&score-ft-1,2")) == ["/p/01"]
    assert keys(people.get("/d/p?f&s=score-desc&score-rg-1.*")) == [
        "/p/01",
        "/p/02",
        "/p/03",
        "/p/12",
    ]


def test_nometa_and_xml(people: FlaskClient) -> None:
    document = people.get("/d/p?f&l=1&_nometa").json["feed"]["entry"][0]  # type: ignore[index]
    assert not {"id", "author", "published", "updated"} & set(document)
    assert "id" not in people.get("/d/p/01?e&_nometa").json["feed"]["entry"][0]  # type: ignore[index]
    assert people.get("/d/p?f&l=1&x&score-gt-1").data.count(b"<entry>") == 1


@pytest.mark.parametrize(
    ("query", "parameter", "reason"),
    [
        ("score-lt-abc", "score-lt-abc", "is not a valid integer"),  # the issue's: it was a 204
        ("score=1.5", "score=1.5", "is not a valid integer"),
        ("level-ge-1.25e1", "level-ge-1.25e1", "is not a valid integer"),
        ("level-ge-1e30", "level-ge-1e30", "is wider than 64 bits"),
        (f"score-eq-{2**64}", f"score-eq-{2**64}", "is wider than 64 bits"),
        ("weight-gt-heavy", "weight-gt-heavy", "is not a valid number"),
        ("weight-le-nan", "weight-le-nan", "is not a valid number"),
        ("active-ne-yes", "active-ne-yes", "is not a valid boolean"),
        ("name=a&|score-eq-x&|score=1", "score-eq-x", "is not a valid integer"),
    ],
)
def test_a_filter_value_that_cant_be_of_the_declared_type_is_400(
    people: FlaskClient, query: str, parameter: str, reason: str
) -> None:
    for mode in ("f", "c"):
        response = people.get(f"/d/p?{mode}&{query}")
        assert response.status_code == 400
        assert response.json == {
            "feed": {"title": f"Filter value {reason}: {parameter}"},
            "error": {
                "status": 400,
                "code": "invalid_option",
                "field": parameter.partition("-")[0].partition("=")[0],
                "entries": [],
            },
        }


def test_typed_filter_values_that_fit_and_text_operators_stay_free(people: FlaskClient) -> None:
    assert keys(people.get("/d/p?f&score-eq- 12 ")) == ["/p/01"]
    assert keys(people.get(f"/d/p?f&level-gt-{2**64 - 1}")) == []
    assert keys(people.get("/d/p?f&level-ge-1.1e2")) == ["/p/11", "/p/12"], "a value, as numbers"
    assert people.get("/d/p?f&weight-gt--1.5e3&active=true").status_code == 204
    assert keys(people.get("/d/p?f&score-fm-1")) == ["/p/01", "/p/02", "/p/03", "/p/12"]
    assert people.get("/d/p?f&score-rg-[a-z]+").status_code == 204


def test_unknown_filter_field_is_400_with_a_schema(people: FlaskClient) -> None:
    response = people.get("/d/p?f&favorite.color=red")
    assert (response.status_code, response.json["feed"]["title"]) == (
        400,
        "Unknown field: favorite.color",
    )  # type: ignore[index]


@pytest.mark.parametrize("config", [{"fetch_limit": 5}])
def test_fetch_limit_gives_206_with_a_cursor_to_go_on(people: FlaskClient) -> None:
    found, statuses = all_pages(people, "/d/p?f&level-ge-110")
    assert found == ["/p/11", "/p/12"]
    assert statuses[0] == 206 and statuses[-1] == 200
    count = people.get("/d/p?c&level-ge-110")
    assert (count.status_code, count.json["feed"]["title"]) == (206, "0")  # type: ignore[index]
    assert "x-vtecx-nextpage" in count.headers


@pytest.mark.parametrize("config", [{"fetch_limit": 5}])
def test_full_text_search_is_bound_by_the_fetch_limit(people: FlaskClient) -> None:
    found, statuses = all_pages(people, "/d/p?f&title-ft-person 1")
    assert found == ["/p/01", "/p/10", "/p/11", "/p/12"]
    assert statuses == [206, 206, 200]


@pytest.mark.parametrize("config", [{"fetch_limit": 5}])
def test_an_indexed_filter_is_not_bound_by_the_scan(people: FlaskClient) -> None:
    response = people.get("/d/p?f&name=a")
    assert (response.status_code, keys(response)) == (200, ["/p/03", "/p/06", "/p/09", "/p/12"])
    too_many = people.get("/d/p?f&s=level")
    assert too_many.status_code == 400 and "needs an index" in too_many.json["feed"]["title"]  # type: ignore[index]


def test_indexes_follow_updates_deletes_and_subtree_deletes(people: FlaskClient) -> None:
    people.patch("/d/p/03", json={"name": "z"})
    people.delete("/d/p/06")
    assert keys(people.get("/d/p?f&name=a")) == ["/p/09", "/p/12"]
    assert keys(people.get("/d/p?f&name=z")) == ["/p/03"]
    people.delete("/d/p?_rf")
    people.post("/d/", json={"link": [{"___href": "/p", "___rel": "self"}]})
    assert people.get("/d/p?f&name=z").status_code == 204


def test_an_index_declared_later_covers_what_was_stored(app: Flask, people: FlaskClient) -> None:
    schema = {
        **SCHEMA,
        "properties": {**SCHEMA["properties"], "level": {"type": "integer", "x-index": True}},
    }
    app.extensions["feedstore"].store.set_schema(schema)
    assert keys(people.get("/d/p?f&s=level-desc&l=2")) == ["/p/12", "/p/11"]


def test_cursors_are_bound_to_their_query(people: FlaskClient) -> None:
    cursor = people.get("/d/p?f&l=2&name=a").headers["x-vtecx-nextpage"]
    assert people.get(f"/d/p?f&l=2&name=a&p={cursor}").status_code == 200
    assert people.get(f"/d/p?f&l=2&name=b&p={cursor}").status_code == 400
    assert people.get(f"/d/p?f&l=2&p={cursor}x").status_code == 400


@pytest.mark.parametrize("sort", ["", "&s=score", "&name-fm-"])
def test_paging_is_stable_while_entries_come_and_go(people: FlaskClient, sort: str) -> None:
    """Every entry that exists throughout is returned once; none twice."""
    url = f"/d/p?f&l=3{sort}"
    first = people.get(url)
    seen = keys(first)
    cursor = first.headers["x-vtecx-nextpage"]
    people.delete(f"/d{seen[0]}")  # already returned
    people.post("/d/p", json=[{"score": 100, "name": "a"}, {"score": -1, "name": "b"}])
    people.post("/d/", json={"link": [{"___href": "/p/00", "___rel": "self"}], "score": 50})
    rest, _ = all_pages(people, f"{url}&p={cursor}")
    assert len(seen + rest) == len(set(seen + rest)), "no entry twice"
    throughout = {f"/p/{n:02}" for n in range(1, 13)}
    assert throughout <= set(seen + rest)


def test_counters(client: FlaskClient) -> None:
    assert client.get("/d/n?_getids").json["feed"]["title"] == "0"  # type: ignore[index]
    assert client.put("/d/n?_addids=5").json["feed"]["title"] == "5"  # type: ignore[index]
    assert client.put("/d/n?_addids=-2").json["feed"]["title"] == "3"  # type: ignore[index]
    assert client.put("/d/n?_setids=10").json["feed"]["title"] == "10"  # type: ignore[index]
    assert client.get("/d/n?_getids").json["feed"]["title"] == "10"  # type: ignore[index]
    assert client.put("/d/n?_addids=x").status_code == 400
    assert client.get("/d/n?e").status_code == 204, "a counter needs no entry"


@pytest.mark.parametrize("step", ["999999999999999999", "-999999999999999999"])
def test_a_counter_that_would_overflow_is_400_and_keeps_its_value(
    client: FlaskClient, redis_client: redis.Redis, step: str
) -> None:
    for times in range(1, 10):  # Redis counters are signed 64-bit: the tenth step passes 2^63
        assert client.put(f"/d/n?_addids={step}").json["feed"]["title"] == str(int(step) * times)  # type: ignore[index]
    before = snapshot(redis_client)
    response = client.put(f"/d/n?_addids={step}")
    assert response.status_code == 400
    assert response.json == {
        "feed": {"title": f"The counter of /n would overflow: _addids={step}"},
        "error": {"status": 400, "code": "invalid_option", "entries": []},
    }
    assert snapshot(redis_client) == before
    assert client.get("/d/n?_getids").json["feed"]["title"] == str(int(step) * 9)  # type: ignore[index]


def test_concurrent_counter_increments_are_never_lost(tmp_path: Path) -> None:
    with running_serve(data_dir=tmp_path / "data", log_path=tmp_path / "serve.log") as server:

        def add(times: int) -> None:
            for _ in range(times):
                assert server.request("PUT", "/d/hits?_addids=1", None, WRITE_HEADERS).status == 200

        threads = [threading.Thread(target=add, args=(25,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert server.request("GET", "/d/hits?_getids").json()["feed"]["title"] == "200"
