"""PUT `?_bulk` and `?_bulkserial` over HTTP (API.md §5.6), and `_async`, which is refused."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis
from flask.testing import FlaskClient
from lxml import etree

from feedstore import bulk
from feedstore.codec_xml import ATOM, FIELDS
from tests.conftest import snapshot

# Chunks of 10, so 25 entries are 2.5 chunks; a bulk takes at most 60.
CONFIG = {"max_entries": 10, "max_bulk_entries": 60}


@pytest.fixture
def config() -> dict[str, object]:
    return dict(CONFIG)


def entry(number: int, **fields: Any) -> dict[str, Any]:
    return {"link": [{"___href": f"/p/{number}", "___rel": "self"}], "n": number, **fields}


def keys(numbers: range) -> list[str]:
    return [f"/p/{number}" for number in numbers]


@pytest.fixture
def parent(client: FlaskClient) -> FlaskClient:
    """/p, made by POST, which creates it whatever `require_revision` says (API.md §7)."""
    response = client.post("/d/", json={"link": [{"___href": "/p", "___rel": "self"}]})
    assert response.status_code == 201
    return client


def revisions(client: FlaskClient, count: int) -> list[int | None]:
    """Each /p/<n>'s revision, None where it has no entry."""
    tags = [client.get(f"/d/p/{number}?e").headers.get("ETag") for number in range(count)]
    return [int(tag.strip('"')) if tag else None for tag in tags]


@pytest.mark.parametrize("option", ["_bulk", "_bulkserial"])
def test_a_bulk_past_max_entries_writes_every_entry(parent: FlaskClient, option: str) -> None:
    response = parent.put(f"/d/?{option}", json=[entry(n) for n in range(25)])
    assert (response.status_code, response.json) == (200, {"feed": {"title": "Updated."}})
    assert "ETag" not in response.headers
    assert parent.get("/d/p?c").json == {"feed": {"title": "25"}}
    assert parent.get("/d/p/24?e").json["feed"]["entry"][0]["n"] == 24  # type: ignore[index]


def test_without_an_option_past_max_entries_is_still_refused(
    parent: FlaskClient, redis_client: redis.Redis
) -> None:
    before = snapshot(redis_client)
    response = parent.put("/d/", json=[entry(n) for n in range(25)])
    assert response.status_code == 400
    assert response.json["feed"]["title"] == "Too many entries. Please keep less than 10 entries."  # type: ignore[index]
    assert snapshot(redis_client) == before


def test_a_bulk_past_max_bulk_entries_is_refused_whole(
    parent: FlaskClient, redis_client: redis.Redis
) -> None:
    before = snapshot(redis_client)
    response = parent.put("/d/?_bulk", json=[entry(n) for n in range(61)])
    assert response.status_code == 400
    error = response.json["error"]  # type: ignore[index]
    assert response.json["feed"]["title"] == "Too many entries. Please keep less than 60 entries."  # type: ignore[index]
    assert error["code"] == "too_many_entries" and "written" not in error
    assert snapshot(redis_client) == before


def test_bulkserial_stops_at_the_failing_chunk_and_names_what_it_wrote(
    parent: FlaskClient,
) -> None:
    entries = [entry(n) for n in range(25)]
    entries[15]["id"] = "/p/15,2"  # /p/15 doesn't exist yet: 404, and its chunk is refused
    response = parent.put("/d/?_bulkserial", json=entries)
    assert response.status_code == 404
    assert response.json["feed"]["title"] == "No entry. Key = /p/15"  # type: ignore[index]
    error = response.json["error"]  # type: ignore[index]
    assert (error["code"], error["key"]) == ("not_found", "/p/15")
    assert error["written"] == keys(range(10))
    assert revisions(parent, 25) == [1] * 10 + [None] * 15


def test_bulk_writes_every_other_chunk_and_names_them(parent: FlaskClient) -> None:
    assert parent.put("/d/?_bulk", json=[entry(n) for n in range(25)]).status_code == 200
    updates = [entry(n, id=f"/p/{n},1", title="second") for n in range(25)]
    updates[12]["id"] = "/p/12,9"
    response = parent.put("/d/?_bulk", json=updates)
    assert response.status_code == 409
    error = response.json["error"]  # type: ignore[index]
    assert (error["code"], error["key"], error["revision"]) == ("revision_conflict", "/p/12", 9)
    assert error["current"]["id"] == "/p/12,1"
    assert [(each["key"], each["code"]) for each in error["entries"]] == [
        ("/p/12", "revision_conflict")
    ]
    assert error["written"] == keys(range(10)) + keys(range(20, 25))
    assert revisions(parent, 25) == [2] * 10 + [1] * 10 + [2] * 5
    assert parent.get("/d/p/15?e").json["feed"]["entry"][0].get("title") is None  # type: ignore[index]


def test_a_key_twice_across_chunks_is_400_and_writes_nothing(
    parent: FlaskClient, redis_client: redis.Redis
) -> None:
    before = snapshot(redis_client)
    for option in ("_bulk", "_bulkserial"):
        response = parent.put(f"/d/?{option}", json=[entry(n % 20) for n in range(25)])
        assert response.status_code == 400
        assert response.json["feed"]["title"] == "Keys are duplicated. /p/0"  # type: ignore[index]
        assert response.json["error"]["code"] == "duplicated_keys"  # type: ignore[index]
    assert snapshot(redis_client) == before


def test_a_bad_entry_anywhere_refuses_the_whole_bulk_before_any_chunk(
    parent: FlaskClient, redis_client: redis.Redis
) -> None:
    before = snapshot(redis_client)
    entries = [entry(n) for n in range(25)]
    entries[22]["a.b"] = 1
    response = parent.put("/d/?_bulk", json=entries)
    assert response.status_code == 400
    error = response.json["error"]  # type: ignore[index]
    assert (error["code"], error["key"], error["field"]) == ("invalid_field", "/p/22", "a.b")
    assert "written" not in error
    assert snapshot(redis_client) == before


def test_a_bulk_takes_ids_deletes_and_xml_as_a_put_does(parent: FlaskClient) -> None:
    parent.put("/d/?_bulk", json=[entry(n) for n in range(25)])
    body = "".join(
        f'<entry><id>/p/{n},1{"?_delete" if n % 2 else ""}</id><link href="/p/{n}" rel="self"/>'
        f"<title>t{n}</title></entry>"
        for n in range(25)
    )
    response = parent.put(
        "/d/?_bulkserial", data=f"<feed>{body}</feed>", content_type="application/atom+xml"
    )
    assert response.status_code == 200
    assert revisions(parent, 25) == [2 if n % 2 == 0 else None for n in range(25)]


def test_prefer_representation_answers_every_written_entry_in_request_order(
    parent: FlaskClient,
) -> None:
    order = [*range(20, 25), *range(20)]
    response = parent.put(
        "/d/?_bulk",
        json=[entry(n) for n in order],
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 200
    ids = [document["id"] for document in response.json["feed"]["entry"]]  # type: ignore[index]
    assert ids == [f"/p/{n},1" for n in order]


def test_a_bulk_of_one_entry_at_the_urls_key_is_a_put(parent: FlaskClient) -> None:
    response = parent.put("/d/p/1?_bulkserial", json={"title": "one"})
    assert (response.status_code, response.headers["ETag"]) == (200, '"1"')
    assert parent.get("/d/p/1?e").json["feed"]["entry"][0]["title"] == "one"  # type: ignore[index]


def test_the_written_keys_come_in_xml_too(parent: FlaskClient) -> None:
    entries = [entry(n) for n in range(25)]
    entries[5]["id"] = "/p/5,3"
    response = parent.put("/d/?_bulk&x", json=entries)
    assert response.status_code == 404
    error = etree.fromstring(response.data).find(f"{{{FIELDS}}}error")
    assert (error.get("code"), error.get("key")) == ("not_found", "/p/5")
    written = [item.get("key") for item in error.iterfind(f"{{{FIELDS}}}written")]
    assert written == keys(range(10, 25))
    assert etree.fromstring(response.data).findtext(f"{{{ATOM}}}title") == "No entry. Key = /p/5"


@pytest.mark.parametrize("config", [{**CONFIG, "require_revision": ["/p"]}])
def test_require_revision_refuses_the_bulk_before_any_chunk(
    parent: FlaskClient, redis_client: redis.Redis
) -> None:
    before = snapshot(redis_client)
    entries = [entry(n, id=f"/p/{n},0") for n in range(25)]
    del entries[24]["id"]
    response = parent.put("/d/?_bulk", json=entries)
    assert response.status_code == 428
    assert response.json["error"]["key"] == "/p/24"  # type: ignore[index]
    assert snapshot(redis_client) == before
    entries[24]["id"] = "/p/24,0"
    assert parent.put("/d/?_bulk", json=entries).status_code == 200


# Refused, and nothing changes: (method, url, headers, body, message)
REFUSED: list[tuple[str, str, dict[str, str], Any, str]] = [
    ("PUT", "/d/?_bulk&_async", {}, [entry(1)], bulk.ASYNC_REFUSED),
    ("PUT", "/d/?_bulkserial&_async", {}, [entry(1)], bulk.ASYNC_REFUSED),
    ("PUT", "/d/p/1?_async", {}, {"title": "x"}, bulk.ASYNC_REFUSED),
    ("DELETE", "/d/p?_rf&_async", {}, None, bulk.ASYNC_REFUSED),
    ("POST", "/d/p?_async", {}, {"title": "x"}, bulk.ASYNC_REFUSED),
    ("GET", "/d/p?f&_async", {}, None, bulk.ASYNC_REFUSED),
    ("POST", "/d/?_bulk", {}, [entry(1)], "Option does not apply to POST: _bulk"),
    (
        "PATCH",
        "/d/p?_bulkserial",
        {},
        {"title": "x"},
        "Option does not apply to PATCH: _bulkserial",
    ),
    ("DELETE", "/d/p?_bulk", {}, None, "Option does not apply to DELETE: _bulk"),
    ("GET", "/d/p?e&_bulk", {}, None, "Option does not apply to GET: _bulk"),
    ("PUT", "/d/?_bulk&_bulkserial", {}, [entry(1)], "_bulk and _bulkserial can't be combined."),
    (
        "PUT",
        "/d/?_bulk",
        {"If-Match": "*"},
        [entry(1)],
        "If-Match and If-None-Match apply to one entry: use the ids.",
    ),
    (
        "PUT",
        "/d/p/1?_bulkserial",
        {"If-None-Match": "*"},
        {"title": "x"},
        "If-Match and If-None-Match apply to one entry: use the ids.",
    ),
    ("PUT", "/d/p?_addids=1&_bulk", {}, None, "_bulk doesn't apply to counters: _addids"),
]


@pytest.mark.parametrize(
    ("method", "url", "headers", "body", "message"), REFUSED, ids=[row[1] for row in REFUSED]
)
def test_what_a_bulk_cant_do_is_400_and_changes_nothing(
    parent: FlaskClient,
    redis_client: redis.Redis,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any,
    message: str,
) -> None:
    parent.put("/d/p/1", json={"title": "first"})
    before = snapshot(redis_client)
    data = orjson.dumps(body) if body is not None else None
    response = parent.open(url, method=method, data=data, headers=headers)
    assert response.status_code == 400
    assert response.json == {
        "feed": {"title": message},
        "error": {"status": 400, "code": "invalid_option", "entries": []},
    }
    assert snapshot(redis_client) == before
