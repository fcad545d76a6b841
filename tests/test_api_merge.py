"""Merge of stale writes over HTTP (API.md §5.9): `?_merge`, `Merge-Base`, `auto_merge`, and the
answers: merged, 409 merge_conflict, 409 merge_base_gone, 412 for a stale If-Match."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import snapshot

MERGE_PATCH = "application/merge-patch+json"


@pytest.fixture
def config() -> dict[str, object]:
    return {"history": ["/notes=5"], "auto_merge": ["/notes/auto"]}


@pytest.fixture
def notes(client: FlaskClient) -> FlaskClient:
    """/notes/1 at revision 2: revision 1 (title, summary) kept, then the summary changed."""
    client.post("/d/", json={"link": [{"___href": "/notes", "___rel": "self"}]})
    client.put("/d/notes/1", json={"title": "title", "summary": "summary"})
    client.patch("/d/notes/1", json={"summary": "their summary"})
    return client


def current(client: FlaskClient, key: str = "/notes/1") -> dict[str, Any]:
    return client.get(f"/d{key}?e").json["feed"]["entry"][0]  # type: ignore[index]


def error(response: TestResponse) -> dict[str, Any]:
    return response.json["error"]  # type: ignore[index]


def test_a_whole_entry_resent_with_a_stale_id_merges(notes: FlaskClient) -> None:
    # The jQuery page's read-modify-PUT: revision 1 read, its title edited, all of it sent back.
    body = {"id": "/notes/1,1", "title": "my title", "summary": "summary"}
    response = notes.put("/d/notes/1?_merge", json=body)
    assert response.status_code == 200
    assert (response.headers["ETag"], response.headers["x-feedstore-merged"]) == ('"3"', "1")
    entry = current(notes)
    assert (entry["title"], entry["summary"], entry["id"]) == (
        "my title",
        "their summary",
        "/notes/1,3",
    )


def test_without_merge_a_stale_id_is_still_a_revision_conflict(notes: FlaskClient) -> None:
    response = notes.put("/d/notes/1", json={"id": "/notes/1,1", "title": "mine"})
    assert error(response)["code"] == "revision_conflict"


def test_a_fresh_id_is_a_plain_write(notes: FlaskClient) -> None:
    response = notes.put("/d/notes/1?_merge", json={"id": "/notes/1,2", "title": "mine"})
    assert response.status_code == 200 and "x-feedstore-merged" not in response.headers


def test_a_feed_put_merges_each_stale_entry(notes: FlaskClient) -> None:
    notes.put("/d/notes/2", json={"title": "two"})
    feed = [
        {"id": "/notes/1,1", "title": "mine", "link": [{"___href": "/notes/1", "___rel": "self"}]},
        {"id": "/notes/2,1", "title": "two!", "link": [{"___href": "/notes/2", "___rel": "self"}]},
    ]
    response = notes.put("/d/?_merge", json=feed)
    assert response.status_code == 200
    assert response.headers["x-feedstore-merged"] == "/notes/1=1"
    assert (current(notes)["title"], current(notes, "/notes/2")["title"]) == ("mine", "two!")


def test_overlapping_changes_are_a_merge_conflict(
    notes: FlaskClient, redis_client: redis.Redis
) -> None:
    before = snapshot(redis_client)
    response = notes.put("/d/notes/1?_merge", json={"id": "/notes/1,1", "summary": "mine"})
    assert response.status_code == 409
    assert response.json["feed"]["title"] == "Merge conflict. Key = /notes/1"  # type: ignore[index]
    assert error(response)["code"] == "merge_conflict"
    assert error(response)["conflicts"] == [
        {"field": "summary", "base": "summary", "current": "their summary", "yours": "mine"}
    ]
    assert error(response)["current"]["id"] == "/notes/1,2"
    assert snapshot(redis_client) == before


def test_a_base_no_longer_kept_is_merge_base_gone(notes: FlaskClient) -> None:
    notes.post("/d/", json={"link": [{"___href": "/plain", "___rel": "self"}]})
    notes.put("/d/plain/1", json={"title": "a"})
    notes.put("/d/plain/1", json={"title": "b"})
    response = notes.put("/d/plain/1?_merge", json={"id": "/plain/1,1", "summary": "s"})
    assert response.status_code == 409
    assert response.json["feed"]["title"] == (  # type: ignore[index]
        "Merge base is no longer kept. Key = /plain/1, revision = 1"
    )
    assert error(response)["code"] == "merge_base_gone"
    assert error(response)["current"]["id"] == "/plain/1,2"


def test_a_stale_if_match_stays_412(notes: FlaskClient) -> None:
    body = {"title": "mine"}
    response = notes.put("/d/notes/1?_merge", json=body, headers={"If-Match": '"1"'})
    assert response.status_code == 412
    patched = notes.patch("/d/notes/1?_merge", json=body, headers={"If-Match": '"1"'})
    assert patched.status_code == 412


def test_merge_base_and_if_match_are_refused_together(notes: FlaskClient) -> None:
    headers = {"Merge-Base": '"1"', "If-Match": '"2"'}
    response = notes.patch("/d/notes/1", json={"title": "mine"}, headers=headers)
    assert response.status_code == 400
    assert response.json["feed"]["title"] == (  # type: ignore[index]
        "Merge-Base and If-Match can't be combined."
    )


@pytest.mark.parametrize("content_type", ["application/json", MERGE_PATCH])
def test_a_patch_with_merge_base_merges(notes: FlaskClient, content_type: str) -> None:
    response = notes.patch(
        "/d/notes/1",
        data=b'{"title": "mine"}',
        headers={"Merge-Base": '"1"', "Content-Type": content_type},
    )
    assert (response.status_code, response.headers["x-feedstore-merged"]) == (200, "1")
    assert (current(notes)["title"], current(notes)["summary"]) == ("mine", "their summary")


def test_a_bad_merge_base_is_400(notes: FlaskClient) -> None:
    response = notes.patch("/d/notes/1", json={"title": "x"}, headers={"Merge-Base": "W/x"})
    assert response.json["feed"]["title"] == "Merge-Base is invalid: W/x"  # type: ignore[index]


def test_auto_merge_needs_no_option(notes: FlaskClient) -> None:
    notes.put("/d/notes/auto", json={"title": "folder"})
    notes.put("/d/notes/auto/1", json={"title": "t", "summary": "s"})
    notes.patch("/d/notes/auto/1", json={"summary": "theirs"})
    response = notes.put("/d/notes/auto/1", json={"id": "/notes/auto/1,1", "title": "mine"})
    assert response.headers["x-feedstore-merged"] == "1"
    assert current(notes, "/notes/auto/1")["summary"] == "theirs"


def patch_from_base(app: Flask, fields: dict[str, str], answers: list[TestResponse]) -> None:
    client = app.test_client()
    headers = {"Merge-Base": '"2"', "X-Requested-With": "XMLHttpRequest"}
    answers.append(client.patch("/d/notes/1", json=fields, headers=headers))


def run_two(app: Flask, first: dict[str, str], second: dict[str, str]) -> list[TestResponse]:
    answers: list[TestResponse] = []
    threads = [
        threading.Thread(target=patch_from_base, args=(app, fields, answers))
        for fields in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_two_threads_patching_different_fields_both_succeed(app: Flask, notes: FlaskClient) -> None:
    answers = run_two(app, {"title": "one"}, {"rights": "two"})
    assert sorted(a.status_code for a in answers) == [200, 200]
    assert sorted(a.headers.get("x-feedstore-merged", "") for a in answers) == ["", "2"]
    entry = current(notes)
    assert (entry["title"], entry["rights"], entry["id"]) == ("one", "two", "/notes/1,4")


def test_two_threads_patching_the_same_field_one_conflicts(app: Flask, notes: FlaskClient) -> None:
    answers = run_two(app, {"title": "one"}, {"title": "two"})
    assert sorted(a.status_code for a in answers) == [200, 409]
    [conflict] = [a for a in answers if a.status_code == 409]
    [won] = [a for a in answers if a.status_code == 200]
    winner = "one" if b"one" in won.data else "two"
    [listed] = error(conflict)["conflicts"]
    assert (listed["field"], listed["base"], listed["current"]) == ("title", "title", winner)
    assert listed["yours"] == ("two" if winner == "one" else "one")
    assert current(notes)["title"] == winner


def test_a_stale_delete_is_never_merged(notes: FlaskClient) -> None:
    stale = {"id": "/notes/1,1?_delete", "link": [{"___href": "/notes/1", "___rel": "self"}]}
    response = notes.put("/d/?_merge", json=[stale])
    assert error(response)["code"] == "revision_conflict"
    assert current(notes)["id"] == "/notes/1,2"
