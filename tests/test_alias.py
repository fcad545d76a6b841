"""Aliases (`link rel="alternate"` to a key): kept with the entry, in its transaction."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from feedstore import alias
from feedstore.errors import InvalidField
from feedstore.keys import KeyScheme
from tests.conftest import snapshot

KEYS = KeyScheme()

# Aliases here name keys in other trees (/b/x for /a/1): one request, two partitions.
pytestmark = pytest.mark.single_redis


def links(*aliases: str, key: str = "/a/1") -> list[dict[str, str]]:
    return [
        {"___href": key, "___rel": "self"},
        *({"___href": name, "___rel": "alternate"} for name in aliases),
    ]


def only(response: Any) -> dict[str, Any]:
    [document] = response.json["feed"]["entry"]
    return document  # type: ignore[no-any-return]


def test_aliases_are_the_alternate_links_to_keys() -> None:
    fields = {"link": [*links("/b/x"), {"___href": "http://example.com/", "___rel": "alternate"}]}
    assert alias.aliases_of(fields) == ["/b/x"]
    assert alias.aliases_of(alias.adding(["/b/y", "/b/x"])(fields, None)) == ["/b/x", "/b/y"]
    assert alias.aliases_of(alias.removing(["/b/x"])(fields, None)) == []
    seen = alias.seen_through({"id": "/a/1,2", "link": links("/b/x")}, "/b/x")
    assert seen["id"] == "/a/1,2" and seen["link"][0] == {"___href": "/b/x", "___rel": "self"}


@pytest.mark.parametrize(
    ("aliases", "message"),
    [
        (["/a/1"], "An entry can't be its own alias. Key = /a/1"),
        (["/b/x", "/b/x"], "Alias is given twice: /b/x"),
        (["/_b"], "Alias is not a key an entry can have: /_b"),
        ([f"/b/{n}" for n in range(101)], "An entry has at most 100 aliases. Key = /a/1"),
    ],
)
def test_aliases_an_entry_cant_have(aliases: list[str], message: str) -> None:
    with pytest.raises(InvalidField) as caught:
        alias.check("/a/1", aliases)
    assert (caught.value.message, caught.value.field) == (message, "link")


@pytest.fixture
def tree(client: FlaskClient) -> FlaskClient:
    """/a, /b, /c, and /a/1 (a title) with the alias /b/x."""
    top = [{"link": [{"___href": key, "___rel": "self"}]} for key in ("/a", "/b", "/c")]
    assert client.post("/d/", json=top).status_code == 201
    assert client.put("/d/", json={"link": links("/b/x"), "title": "t"}).status_code == 200
    return client


def test_reading_through_an_alias_gives_the_entry_as_seen_there(tree: FlaskClient) -> None:
    response = tree.get("/d/b/x?e")
    document = only(response)
    assert (document["id"], response.headers["ETag"], document["title"]) == ("/a/1,1", '"1"', "t")
    assert document["link"][0] == {"___href": "/b/x", "___rel": "self"}
    listed = only(tree.get("/d/b?f"))
    assert listed["link"][0]["___href"] == "/b/x"
    assert tree.get("/d/b?c").json["feed"]["title"] == "1"  # type: ignore[index]
    assert only(tree.get("/d/a/1?e"))["link"][0]["___href"] == "/a/1"
    assert b'<link href="/b/x" rel="self"/>' in tree.get("/d/b/x?e&x").data


def test_writing_through_an_alias_writes_the_entry(tree: FlaskClient) -> None:
    read = only(tree.get("/d/b/x?e"))
    read["title"] = "changed"
    assert tree.put("/d/", json=read).status_code == 200, (
        "the id names the entry, the link the alias"
    )
    assert only(tree.get("/d/a/1?e"))["id"] == "/a/1,2"
    assert only(tree.get("/d/a/1?e"))["link"][0]["___href"] == "/a/1", "the self link stays"
    stale = tree.put("/d/", json=read)
    assert stale.status_code == 409
    patched = tree.patch("/d/b/x", json={"title": "patched"}, headers={"If-Match": '"2"'})
    assert (patched.status_code, only(patched)["id"]) == (200, "/a/1,3")
    other = {"id": "/c,1", "link": [{"___href": "/b/x", "___rel": "self"}]}
    refused = tree.put("/d/", json=other)
    assert (
        refused.json["feed"]["title"]
        == "ID format is invalid. /c,1 does not match the self link /a/1."
    )  # type: ignore[index]


def test_add_and_remove_aliases(tree: FlaskClient) -> None:
    body = {"link": links("/c/y", "/b/z")}
    assert tree.put("/d/?_addalias", json=body).status_code == 200
    document = only(tree.get("/d/a/1?e"))
    assert alias.aliases_of(document) == ["/b/x", "/c/y", "/b/z"]
    assert document["title"] == "t", "only the aliases change"
    assert only(tree.get("/d/c/y?e"))["id"] == "/a/1,2"
    assert tree.put("/d/?_removealias", json={"link": links("/b/x", "/c/y")}).status_code == 200
    assert alias.aliases_of(only(tree.get("/d/a/1?e"))) == ["/b/z"]
    assert tree.get("/d/b/x?e").status_code == 204 and tree.get("/d/c?f").status_code == 204


def test_a_taken_key_is_409_and_a_missing_parent_400_and_nothing_changes(
    tree: FlaskClient, redis_client: redis.Redis
) -> None:
    tree.put("/d/", json={"link": [{"___href": "/a/2", "___rel": "self"}]})
    before = snapshot(redis_client)
    for taken in ("/b/x", "/a/2"):  # another entry's alias; an entry
        response = tree.put("/d/", json={"link": links(taken, key="/c/1")})
        assert response.status_code == 409
        assert response.json["feed"]["title"] == f"Duplicated key. {taken}"  # type: ignore[index]
    missing = tree.put("/d/?_addalias", json={"link": links("/nowhere/x", key="/a/2")})
    assert (missing.status_code, missing.json["feed"]["title"]) == (
        400,
        "Parent path is required. /nowhere",
    )  # type: ignore[index]
    created = tree.post("/d/", json={"link": [{"___href": "/b/x", "___rel": "self"}]})
    assert (created.status_code, created.json["feed"]["title"]) == (409, "Duplicated key. /b/x")  # type: ignore[index]
    feed = [{"link": links(key="/c/2")}, {"link": links("/b/x", key="/c/3")}]
    assert tree.put("/d/", json=feed).status_code == 409, "all or nothing"
    assert snapshot(redis_client) == before


def test_an_alias_moves_between_entries_in_one_request(tree: FlaskClient) -> None:
    # PUT replaces links per rel: /a/1's alternate links become /b/y alone.
    feed = [{"link": links("/b/y", key="/a/1")}, {"link": links("/b/x", key="/c/1")}]
    assert tree.put("/d/", json=feed).status_code == 200
    assert only(tree.get("/d/b/x?e"))["id"] == "/c/1,1"
    assert only(tree.get("/d/b/y?e"))["id"] == "/a/1,2"


def test_deleting_through_an_alias_removes_only_the_alias(tree: FlaskClient) -> None:
    assert tree.delete("/d/b/x").status_code == 200
    document = only(tree.get("/d/a/1?e"))
    assert (document["id"], alias.aliases_of(document)) == ("/a/1,2", [])
    assert (
        tree.get("/d/b/x?e").status_code == 204 and tree.get("/d/b?c").json["feed"]["title"] == "0"
    )  # type: ignore[index]


def test_an_entry_takes_its_aliases_with_it(tree: FlaskClient, redis_client: redis.Redis) -> None:
    assert tree.delete("/d/a?_rf").status_code == 200
    assert tree.get("/d/b/x?e").status_code == 204
    assert tree.get("/d/b?f").status_code == 204
    assert redis_client.exists(KEYS.alias_key("/b/x")) == 0


def test_emptying_a_folder_drops_the_aliases_in_it_from_their_entries(tree: FlaskClient) -> None:
    assert tree.delete("/d/b?_clearfolder").status_code == 200
    document = only(tree.get("/d/a/1?e"))
    assert (document["id"], alias.aliases_of(document)) == ("/a/1,2", [])
    assert tree.get("/d/b/x?e").status_code == 204


def test_an_alias_is_indexed_under_its_own_parent(tree: FlaskClient, app: Flask) -> None:
    schema = {"type": "object", "properties": {"num": {"type": "integer", "x-index": True}}}
    app.extensions["feedstore"].store.set_schema(schema)
    tree.patch("/d/a/1", json={"num": 7})
    [found] = tree.get("/d/b?f&num=7").json["feed"]["entry"]  # type: ignore[index]
    assert found["link"][0]["___href"] == "/b/x"
    tree.patch("/d/a/1", json={"num": 8})
    assert tree.get("/d/b?f&num=7").status_code == 204
    assert [e["num"] for e in tree.get("/d/b?f&s=num").json["feed"]["entry"]] == [8]  # type: ignore[index]
    tree.delete("/d/b/x")
    assert tree.get("/d/b?f&num=8").status_code == 204
