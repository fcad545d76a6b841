"""Paging by number (API.md §4.10): `?_pagination=<from>,<to>` builds the index, `?n=<k>` reads."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from lxml import etree
from werkzeug.test import TestResponse

from feedstore.codec_xml import ATOM
from feedstore.errors import InvalidOption
from feedstore.pagination import PageRange, page_number
from tests.conftest import all_keys


def keys(response: TestResponse) -> list[str]:
    if response.status_code == 204:
        return []
    return [e["link"][0]["___href"] for e in response.json["feed"]["entry"]]  # type: ignore[index]


def summary(response: TestResponse) -> tuple[int, dict[str, Any]]:
    return response.status_code, response.json["feed"]  # type: ignore[index]


def refusal(response: TestResponse) -> tuple[int, str]:
    return response.status_code, response.json["feed"]["title"]  # type: ignore[index]


@pytest.fixture
def folder(client: FlaskClient) -> FlaskClient:
    """/p with 12 children /p/01../p/12, `n` 1..12, `odd` true for odd n."""
    client.post("/d/", json={"link": [{"___href": "/p", "___rel": "self"}]})
    children = [
        {"link": [{"___href": f"/p/{n:02}", "___rel": "self"}], "n": n, "odd": n % 2 == 1}
        for n in range(1, 13)
    ]
    assert client.post("/d/", json=children).status_code == 201
    return client


ALL = [f"/p/{n:02}" for n in range(1, 13)]


def test_vtecx_adminpanel_counts_builds_the_index_then_reads_pages_by_number(
    folder: FlaskClient,
) -> None:
    # DataBrowser.tsx: ?f&c&l=*, then ?f&l=<size>&_pagination=1,<size>, then ?f&n=<page>&l=<size>
    assert folder.get("/d/p?f&c&l=*").json["feed"]["title"] == "12"  # type: ignore[index]
    assert summary(folder.get("/d/p?f&l=5&_pagination=1,5")) == (
        200,
        {"title": "3", "subtitle": "12"},
    )
    pages = [keys(folder.get(f"/d/p?f&n={n}&l=5")) for n in (1, 2, 3)]
    assert pages == [ALL[:5], ALL[5:10], ALL[10:]]
    assert refusal(folder.get("/d/p?f&n=4&l=5")) == (400, "There is no designated page.")


def test_a_page_number_needs_the_index_of_the_same_query(folder: FlaskClient) -> None:
    # vtecx-adminpanel's fetcher retries on exactly this message.
    message = "Please make a pagination index in advance."
    assert refusal(folder.get("/d/p?f&n=1&l=5")) == (400, message)
    folder.get("/d/p?_pagination=2&l=5")
    assert keys(folder.get("/d/p?n=2&l=5")) == ALL[5:10], "f, x, j and _nometa don't matter"
    assert refusal(folder.get("/d/p?n=3&l=5")) == (400, message), "page 3 isn't indexed yet"
    assert refusal(folder.get("/d/p?n=1&l=4")) == (400, message), "another page size"
    assert refusal(folder.get("/d/p?n=1&l=5&odd=true")) == (400, message), "another filter"


def test_pages_follow_the_filters_and_sort_and_carry_the_cursor_headers(
    folder: FlaskClient,
) -> None:
    query = "l=2&odd=true&s=n-desc"
    assert summary(folder.get(f"/d/p?f&{query}&_pagination=1,2")) == (
        200,
        {"title": "2", "subtitle": "4", "link": [{"___rel": "next"}]},
    )
    response = folder.get(f"/d/p?f&n=2&{query}")
    assert keys(response) == ["/p/07", "/p/05"]
    cursor = response.headers["x-vtecx-nextpage"]
    assert response.headers["Link"] == f'</d/p?f&l=2&odd=true&s=n-desc&p={cursor}>; rel="next"'
    assert keys(folder.get(f"/d/p?f&{query}&p={cursor}")) == ["/p/03", "/p/01"]
    assert keys(folder.get(f"/d/p?f&n=1&{query}&p={cursor}")) == ["/p/11", "/p/09"], "n wins"


def test_an_index_grows_from_where_it_ends_and_a_rebuild_drops_later_pages(
    folder: FlaskClient,
) -> None:
    assert refusal(folder.get("/d/p?_pagination=2,3&l=5")) == (
        400,
        "Please make a previous pagination index in advance. Specified page number = 2",
    )
    assert summary(folder.get("/d/p?_pagination=1&l=5"))[1]["title"] == "1"
    assert summary(folder.get("/d/p?_pagination=2,9&l=5")) == (
        200,
        {"title": "3", "subtitle": "7"},
    )
    assert refusal(folder.get("/d/p?_pagination=5,6&l=5")) == (
        400,
        "The entry of the specified page does not exist. Specified page number = 5",
    )
    folder.get("/d/p?_pagination=1&l=5")
    assert refusal(folder.get("/d/p?n=2&l=5"))[1] == "Please make a pagination index in advance."


def test_nothing_to_page_is_page_zero(folder: FlaskClient) -> None:
    assert summary(folder.get("/d/p/01?_pagination=1,3")) == (200, {"title": "0", "subtitle": "0"})
    assert folder.get("/d/p/01?n=1").status_code == 204
    assert refusal(folder.get("/d/p/01?n=2")) == (400, "There is no designated page.")


@pytest.mark.parametrize("config", [{"fetch_limit": 5}])
def test_a_build_stops_at_the_fetch_limit_with_206_and_goes_on_from_there(
    folder: FlaskClient,
) -> None:
    query = "l=2&n-ge-1"  # a filter: every child is examined
    assert summary(folder.get(f"/d/p?{query}&_pagination=1,6")) == (
        206,
        {"title": "3", "subtitle": "6", "link": [{"___rel": "next"}]},
    )
    assert summary(folder.get(f"/d/p?{query}&_pagination=4,6")) == (
        200,
        {"title": "6", "subtitle": "6"},
    )
    assert keys(folder.get(f"/d/p?n=6&{query}")) == ALL[10:]


@pytest.mark.parametrize("config", [{"pagination_ttl": 60}])
def test_an_index_lives_pagination_ttl_seconds_after_its_last_use(
    folder: FlaskClient, redis_client: redis.Redis
) -> None:
    folder.get("/d/p?_pagination=1,2&l=5")
    [name] = all_keys(redis_client, "fs:pg:*")
    assert 0 < redis_client.ttl(name) <= 60
    redis_client.expire(name, 5)
    folder.get("/d/p?n=1&l=5")
    assert redis_client.ttl(name) > 5, "a read renews it"
    redis_client.delete(name)  # as when it expires
    message = "Please make a pagination index in advance."
    assert refusal(folder.get("/d/p?n=1&l=5")) == (400, message)


def test_the_summary_in_atom(folder: FlaskClient) -> None:
    response = folder.get("/d/p?_pagination=1&l=5&x")
    feed = etree.fromstring(response.data)
    assert feed.findtext(f"{{{ATOM}}}title") == "1"
    assert feed.findtext(f"{{{ATOM}}}subtitle") == "5"
    assert feed.find(f"{{{ATOM}}}link").get("rel") == "next"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/d/p?_pagination=0", "Pagination must be <to> or <from>,<to>"),
        ("/d/p?_pagination=3,2", "Pagination must not end before it starts: _pagination=3,2"),
        ("/d/p?e&_pagination=0,2", "Pagination must be <to> or <from>,<to>"),
        ("/d/p?_pagination=a", "Pagination must be <to> or <from>,<to>"),
        ("/d/p?_pagination=1,100001", "Pagination must be <to> or <from>,<to>"),
        ("/d/p?e&n=0", "Page number must be a number from 1 to 100000: n=0"),
        ("/d/p?f&n=x", "Page number must be a number from 1 to 100000: n=x"),
    ],
)
def test_bad_numbers_are_400(folder: FlaskClient, url: str, message: str) -> None:
    status, title = refusal(folder.get(url))
    assert (status, title[: len(message)]) == (400, message)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", PageRange(1, 3)), ("2,5", PageRange(2, 5)), ("007,007", PageRange(7, 7))],
)
def test_page_ranges_read_as_vtecx_writes_them(text: str, expected: PageRange) -> None:
    assert PageRange.parse(text) == expected


@pytest.mark.parametrize("text", ["", ",", "1,", ",2", "1,2,3", "-1", "1.5", "100001", " 1", "2,1"])
def test_bad_page_ranges_and_numbers(text: str) -> None:
    with pytest.raises(InvalidOption):
        PageRange.parse(text)
    with pytest.raises(InvalidOption):
        page_number(text)
