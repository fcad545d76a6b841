"""PATCH over HTTP (API.md §4, §5): the Kii and OSLC sequences, resets, errors, upsert, threads."""

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
from tests.test_schema import DOCUMENT

OVERRIDE = {"X-HTTP-Method-Override": "PATCH"}


def entry_of(response: TestResponse) -> dict[str, Any]:
    [document] = response.json["feed"]["entry"]  # type: ignore[index]
    return document  # type: ignore[no-any-return]


@pytest.fixture
def app(app: Flask) -> Flask:
    app.extensions["feedstore"].store.set_schema(DOCUMENT)
    return app


@pytest.fixture
def stored(client: FlaskClient) -> FlaskClient:
    """/u/1 at revision 1: a score, a favorite, and a keyed list of parts."""
    client.post("/d/", json={"link": [{"___href": "/u", "___rel": "self"}]})
    parts = [{"partsid": "a", "quantity": 1}, {"partsid": "b", "quantity": 2}]
    body = {"score": 10, "favorite": {"food": "りんご"}, "parts": parts}
    assert client.put("/d/u/1", json=body, headers={"If-None-Match": "*"}).status_code == 200
    return client


def test_kii_sequence_override_if_match_then_stale(stored: FlaskClient) -> None:
    response = stored.post("/d/u/1", data=b'{"score": 5000}', headers={**OVERRIDE, "If-Match": "1"})
    assert (response.status_code, response.headers["ETag"]) == (200, '"2"')
    assert entry_of(response)["score"] == 5000
    assert entry_of(response)["favorite"] == {"food": "りんご"}
    stale = stored.post("/d/u/1", data=b'{"score": 1}', headers={**OVERRIDE, "If-Match": "1"})
    assert stale.status_code == 412
    assert stale.json["feed"]["title"] == "Precondition failed. Key = /u/1"  # type: ignore[index]
    assert stale.json["error"]["current"]["score"] == 5000  # type: ignore[index]


def test_override_is_honoured_only_on_post(stored: FlaskClient) -> None:
    before = stored.get("/d/u/1?e").json
    response = stored.put("/d/u/1", json={"score": 3}, headers=OVERRIDE)
    assert response.status_code == 400
    assert response.json["feed"]["title"] == "Method override is only allowed on POST."  # type: ignore[index]
    assert stored.get("/d/u/1?e").json == before


def test_oslc_default_replaces_the_keyed_list(stored: FlaskClient) -> None:
    response = stored.patch(
        "/d/u/1", json={"parts": [{"partsid": "b", "quantity": 5}, {"partsid": "c"}]}
    )
    assert entry_of(response)["parts"] == [{"partsid": "b", "quantity": 5}, {"partsid": "c"}]


def test_oslc_patchtype_merge_keeps_and_deletes_per_item(stored: FlaskClient) -> None:
    body = {"parts": [{"partsid": "a", "$patch": "delete"}, {"partsid": "c", "quantity": 3}]}
    response = stored.patch("/d/u/1", json=body, headers={"PATCHTYPE": "MERGE"})
    assert entry_of(response)["parts"] == [
        {"partsid": "b", "quantity": 2},
        {"partsid": "c", "quantity": 3},
    ]


def test_item_without_its_key_is_400_and_changes_nothing(
    stored: FlaskClient, redis_client: redis.Redis
) -> None:
    before = snapshot(redis_client)
    response = stored.patch("/d/u/1", json={"parts": [{"quantity": 1}]})
    assert response.status_code == 400
    assert response.json["feed"]["title"] == "Merge key partsid is required: parts[0]"  # type: ignore[index]
    error = response.json["error"]  # type: ignore[index]
    assert (error["key"], error["field"]) == ("/u/1", "parts[0]")
    assert snapshot(redis_client) == before


def test_null_resets_to_the_default_or_removes(stored: FlaskClient) -> None:
    response = stored.patch("/d/u/1", json={"score": None, "favorite": None})
    document = entry_of(response)
    assert document["score"] == 0
    assert "favorite" not in document


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"favorite": {"color": "red"}}, "Unknown field: favorite.color"),
        ({"score": "high"}, "Invalid value: score: 'high' is not of type 'integer'"),
        ({"published": "2020-01-01T00:00:00.000+00:00"}, "published can't be patched."),
        (
            {"link": [{"___href": "/u/2", "___rel": "self"}]},
            "The self link can't be patched. Key = /u/1",
        ),
        ({"id": "/u/2,1"}, "ID format is invalid. /u/2,1 does not name /u/1."),
    ],
)
def test_bad_patches_leave_the_entry_byte_identical(
    stored: FlaskClient, redis_client: redis.Redis, body: dict[str, Any], message: str
) -> None:
    before = snapshot(redis_client)
    response = stored.patch("/d/u/1", json=body)
    assert (response.status_code, response.json["feed"]["title"]) == (400, message)  # type: ignore[index]
    assert snapshot(redis_client) == before


def test_revision_in_the_body_id_is_a_precondition(stored: FlaskClient) -> None:
    assert stored.patch("/d/u/1", json={"id": "/u/1,9", "score": 1}).status_code == 409
    assert stored.patch("/d/u/1", json={"id": "/u/1,1", "score": 1}).headers["ETag"] == '"2"'
    both = stored.patch("/d/u/1", json={"id": "/u/1,2"}, headers={"If-Match": '"1"'})
    assert both.status_code == 400


def test_multi_entry_patch_with_one_stale_entry_writes_nothing(
    stored: FlaskClient, redis_client: redis.Redis
) -> None:
    stored.put("/d/u/2", json={"score": 1})
    before = snapshot(redis_client)
    body = [
        {"link": [{"___href": "/u/1", "___rel": "self"}], "id": "/u/1,1", "score": 2},
        {"link": [{"___href": "/u/2", "___rel": "self"}], "id": "/u/2,7", "score": 2},
    ]
    response = stored.patch("/d/", json=body)
    assert response.status_code == 409
    assert [e["key"] for e in response.json["error"]["entries"]] == ["/u/2"]  # type: ignore[index]
    assert snapshot(redis_client) == before
    body[1]["id"] = "/u/2,1"
    response = stored.patch("/d/", json=body)
    assert [e["id"] for e in response.json["feed"]["entry"]] == ["/u/1,2", "/u/2,2"]  # type: ignore[index]


def test_upsert_and_missing_entries(stored: FlaskClient) -> None:
    response = stored.patch("/d/u/9", json={"favorite": {"food": "x"}})
    assert (response.status_code, response.json["feed"]["title"]) == (404, "No entry. Key = /u/9")  # type: ignore[index]
    assert stored.patch("/d/u/9?_upsert", json={}, headers={"If-Match": "*"}).status_code == 412
    response = stored.patch("/d/u/9?_upsert", json={"favorite": {"food": "x"}})
    assert (response.status_code, response.headers["ETag"]) == (201, '"1"')
    assert entry_of(response)["score"] == 0, "schema defaults are filled in"
    assert (
        stored.patch("/d/u/9?_upsert", json={}, headers={"If-None-Match": "*"}).status_code == 412
    )


def test_prefer_return_minimal(stored: FlaskClient) -> None:
    response = stored.patch("/d/u/1", json={"score": 1}, headers={"Prefer": "return=minimal"})
    assert (response.status_code, response.data, response.headers["ETag"]) == (204, b"", '"2"')


def test_merge_patch_and_json_patch(stored: FlaskClient) -> None:
    merge = stored.patch(
        "/d/u/1", json={"favorite": None, "parts": []}, content_type="application/merge-patch+json"
    )
    assert "favorite" not in entry_of(merge) and entry_of(merge)["parts"] == []
    ops = [
        {"op": "test", "path": "/score", "value": 10},
        {"op": "replace", "path": "/score", "value": 11},
    ]
    json_patch = stored.patch("/d/u/1", json=ops, content_type="application/json-patch+json")
    assert (entry_of(json_patch)["score"], json_patch.headers["ETag"]) == (11, '"3"')
    failed = stored.patch("/d/u/1", json=ops, content_type="application/json-patch+json")
    assert (failed.status_code, failed.json["error"]["code"]) == (409, "patch_test_failed")  # type: ignore[index]
    assert stored.get("/d/u/1?e").headers["ETag"] == '"3"'


def test_a_failed_json_patch_names_the_operation_entry_and_field(stored: FlaskClient) -> None:
    ops = [
        {"op": "replace", "path": "/score", "value": 1},
        {"op": "test", "path": "/score", "value": 2},
    ]
    failed = stored.patch("/d/u/1", json=ops, content_type="application/json-patch+json")
    assert failed.status_code == 409
    assert failed.json["feed"]["title"] == "JSON Patch test failed: operation 1 (test /score)"  # type: ignore[index]
    error = failed.json["error"]  # type: ignore[index]
    assert (error["key"], error["field"], error["current"]["score"]) == ("/u/1", "score", 10)
    missing = [{"op": "remove", "path": "/parts/7"}]
    refused = stored.patch("/d/u/1", json=missing, content_type="application/json-patch+json")
    assert refused.status_code == 400
    assert refused.json["feed"]["title"] == (  # type: ignore[index]
        "JSON Patch can't be applied: operation 0 (remove /parts/7): the path does not exist"
    )
    assert (refused.json["error"]["key"], refused.json["error"]["field"]) == ("/u/1", "parts[7]")  # type: ignore[index]


def test_a_field_the_schema_no_longer_declares_is_named_as_stored(
    stored: FlaskClient, app: Flask
) -> None:
    store = app.extensions["feedstore"].store
    store.set_schema(None)
    assert stored.patch("/d/u/1", json={"color": "red"}).status_code == 200
    store.set_schema(DOCUMENT)
    blocked = stored.put("/d/u/1", json={"score": 3})
    assert blocked.status_code == 400
    assert blocked.json["feed"]["title"] == (  # type: ignore[index]
        "Unknown field: color "
        "(stored before the schema changed: PATCH color with null to remove it)"
    )
    assert stored.patch("/d/u/1", json={"color": None}).status_code == 200
    assert stored.put("/d/u/1", json={"score": 3}).status_code == 200


def test_other_patch_types_are_415_with_accept_patch(stored: FlaskClient) -> None:
    response = stored.patch("/d/u/1", data=b"score=1", content_type="application/octet-stream")
    assert response.status_code == 415
    assert "application/json-patch+json" in response.headers["Accept-Patch"]


@pytest.mark.parametrize("config", [{"require_revision": ["/u"]}])
def test_require_revision_applies_to_patch(stored: FlaskClient) -> None:
    assert stored.patch("/d/u/1", json={"score": 1}).status_code == 428
    assert stored.patch("/d/u/1", json={"score": 1}, headers={"If-Match": "*"}).status_code == 200


def test_put_is_validated_against_the_schema_too(stored: FlaskClient) -> None:
    response = stored.put("/d/u/1", json={"favorite": {"color": "red"}})
    assert response.json["feed"]["title"] == "Unknown field: favorite.color"  # type: ignore[index]
    assert stored.post("/d/u", json={"colour": 1}).status_code == 400


def test_schema_endpoint(stored: FlaskClient, app: Flask) -> None:
    assert stored.get("/d/_schema").json == DOCUMENT
    app.extensions["feedstore"].store.set_schema(None)
    assert stored.get("/d/_schema").status_code == 204
    assert stored.patch("/d/u/1", json={"favorite": {"color": "red"}}).status_code == 200


PATCHERS = 8
PATCHES_EACH = 15


def test_concurrent_unconditional_patches_through_a_real_server_all_land(tmp_path: Path) -> None:
    with running_serve(data_dir=tmp_path / "data", log_path=tmp_path / "serve.log") as server:
        server.request(
            "POST", "/d/", {"link": [{"___href": "/c", "___rel": "self"}]}, WRITE_HEADERS
        )
        assert server.request("PUT", "/d/c/1", {"title": "t"}, WRITE_HEADERS).status == 200
        failures: list[int] = []

        def patch_field(writer: int) -> None:
            for n in range(1, PATCHES_EACH + 1):
                body = {f"field{writer}": n, "shared": {f"w{writer}": n}}
                response = server.request("PATCH", "/d/c/1", body, WRITE_HEADERS)
                if response.status != 200:
                    failures.append(response.status)

        threads = [threading.Thread(target=patch_field, args=(w,)) for w in range(PATCHERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert failures == []
        [document] = server.request("GET", "/d/c/1?e").json()["feed"]["entry"]
        assert document["id"] == f"/c/1,{1 + PATCHERS * PATCHES_EACH}"
        for writer in range(PATCHERS):
            assert document[f"field{writer}"] == PATCHES_EACH
            assert document["shared"][f"w{writer}"] == PATCHES_EACH
