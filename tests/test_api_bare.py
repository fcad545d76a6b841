"""The bare JSON style (API.md §2.3): entries as vte.cx answers them, messages as before."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from lxml import etree
from openapi_spec_validator import validate

from feedstore import openapi
from feedstore.codec_xml import ATOM
from feedstore.settings import Settings


@pytest.fixture
def config() -> dict[str, object]:
    return {"json_style": "bare"}


def entry(key: str, **fields: Any) -> dict[str, Any]:
    return {"link": [{"___href": key, "___rel": "self"}], **fields}


@pytest.fixture
def tree(client: FlaskClient) -> FlaskClient:
    assert (
        client.post("/d/", json=[entry("/p"), entry("/p/1", n=1), entry("/p/2", n=2)]).status_code
        == 201
    )
    return client


def test_an_entry_read_is_the_entry_and_a_feed_an_array(tree: FlaskClient) -> None:
    response = tree.get("/d/p/1?e")
    assert (response.status_code, response.headers["ETag"]) == (200, '"1"')
    document = response.json
    assert isinstance(document, dict) and document["id"] == "/p/1,1" and document["n"] == 1
    entries = tree.get("/d/p?f").json
    assert isinstance(entries, list) and [e["n"] for e in entries] == [1, 2]
    # vtecx-adminpanel: Array.isArray(res.data) ? res.data : [res.data]
    assert tree.get("/d/p/1?e&_nometa").json == entry("/p/1", n=1)
    assert tree.get("/d/p?f&l=1&_nometa").json == [entry("/p/1", n=1)]
    assert tree.get("/d/p/9?e").status_code == 204
    assert tree.get("/d/p/1?f").status_code == 204


def test_messages_counts_counters_and_errors_stay_message_feeds(tree: FlaskClient) -> None:
    assert tree.get("/d/p?c").json == {"feed": {"title": "2"}}
    assert tree.get("/d/p?_getids").json == {"feed": {"title": "0"}}
    assert tree.get("/d/p?_pagination=1&l=1").json == {
        "feed": {"title": "1", "subtitle": "1", "link": [{"___rel": "next"}]}
    }
    assert tree.put("/d/p/1", json={"n": 3}).json == {"feed": {"title": "Updated."}}
    conflict = tree.put("/d/", json={"id": "/p/1,1", **entry("/p/1")})
    assert conflict.status_code == 409
    assert conflict.json["feed"] == {"title": "Optimistic locking failed. Key = /p/1"}  # type: ignore[index]
    assert conflict.json["error"]["current"]["id"] == "/p/1,2"  # type: ignore[index]


def test_numbered_and_partial_pages_are_arrays(tree: FlaskClient) -> None:
    tree.get("/d/p?_pagination=2&l=1")
    assert [e["n"] for e in tree.get("/d/p?n=2&l=1").json] == [2]  # type: ignore[union-attr]


@pytest.mark.parametrize("config", [{"json_style": "bare", "fetch_limit": 1}])
def test_a_partial_page_may_be_an_empty_array(tree: FlaskClient) -> None:
    response = tree.get("/d/p?f&n-ge-2")
    assert (response.status_code, response.json) == (206, [])


def test_patch_of_a_key_answers_the_entry_and_of_the_root_an_array(tree: FlaskClient) -> None:
    patched = tree.patch("/d/p/1", json={"n": 5}, headers={"If-Match": '"1"'})
    assert (patched.status_code, patched.headers["ETag"]) == (200, '"2"')
    assert isinstance(patched.json, dict) and patched.json["n"] == 5
    upserted = tree.patch("/d/p/3?_upsert", json={"n": 3})
    assert upserted.status_code == 201 and upserted.json["id"] == "/p/3,1"  # type: ignore[index]
    both = tree.patch("/d/", json=[entry("/p/1", n=6), entry("/p/2", n=7)])
    assert [e["n"] for e in both.json] == [6, 7]  # type: ignore[union-attr]
    minimal = tree.patch("/d/p/1", json={"n": 8}, headers={"Prefer": "return=minimal"})
    assert (minimal.status_code, minimal.data) == (204, b"")


def test_put_with_return_representation_answers_an_array(tree: FlaskClient) -> None:
    response = tree.put("/d/p/1", json={"n": 9}, headers={"Prefer": "return=representation"})
    assert [e["id"] for e in response.json] == ["/p/1,2"]  # type: ignore[union-attr]


def test_xml_answers_are_feeds_whatever_the_style(tree: FlaskClient) -> None:
    feed = etree.fromstring(tree.get("/d/p/1?e&x").data)
    assert feed.tag == f"{{{ATOM}}}feed" and len(feed.findall(f"{{{ATOM}}}entry")) == 1


def test_the_openapi_document_describes_the_bare_answers(client: FlaskClient) -> None:
    response = client.get("/d/_openapi")
    validate(response.json)
    read = response.json["components"]["responses"]["Read"]  # type: ignore[index]
    assert read["content"]["application/json"]["schema"]["oneOf"][0] == {
        "$ref": "#/components/schemas/BareEntryOrEntries"
    }
    assert response.headers["ETag"] != openapi.rendered(None)[1], "another document, another tag"


def test_a_style_other_than_feed_or_bare_is_refused() -> None:
    with pytest.raises(ValueError, match="FEEDSTORE_JSON_STYLE must be feed or bare: xml"):
        Settings.load({}, {"FEEDSTORE_JSON_STYLE": "xml"})
    assert Settings.load({}, {"FEEDSTORE_JSON_STYLE": "bare"}).json_style == "bare"
