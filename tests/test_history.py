"""Revision history (history.py, API.md §4.11): what a write keeps, `?e&r=`, `?_history`,
`PUT ?_revert`, on a real redis-server, fakeredis and a real cluster."""

from __future__ import annotations

import pytest
import redis
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from feedstore import history
from feedstore.app import create_app
from feedstore.history import HistoryRules
from feedstore.keys import KeyScheme
from tests.conftest import all_keys, make_token, snapshot

HISTORY = KeyScheme().history_key("/notes/1")
DAY = 86_400


@pytest.fixture
def config() -> dict[str, object]:
    return {"history": ["/notes=3"], "history_days": 2}


@pytest.fixture
def notes(client: FlaskClient) -> FlaskClient:
    """/notes/1 written five times: revision 5 current, 4, 3 and 2 kept."""
    client.post("/d/", json={"link": [{"___href": "/notes", "___rel": "self"}]})
    for n in range(1, 6):
        assert client.put("/d/notes/1", json={"title": f"t{n}"}).status_code == 200
    return client


def title(response: TestResponse) -> str:
    [entry] = response.json["feed"]["entry"]  # type: ignore[index]
    return str(entry["title"])


def ids(response: TestResponse) -> list[str]:
    return [entry["id"] for entry in response.json["feed"]["entry"]]  # type: ignore[index]


def kept(redis_client: redis.Redis) -> list[int]:
    return sorted(int(n) for n in redis_client.hkeys(HISTORY))


def test_rules_take_the_longest_prefix_and_whole_segments() -> None:
    rules = HistoryRules.parse(["/notes=50", "/notes/archive=5", "/billing=1000"], 30)
    assert [rules.count(k) for k in ("/notes/1", "/notes/archive/1", "/notesx", "/b")] == [
        50,
        5,
        0,
        0,
    ]
    assert rules.count("/billing") == 1000


@pytest.mark.parametrize("rule", ["notes=5", "/notes", "/notes=0", "/notes=x", "/n=-1"])
def test_a_bad_rule_names_the_setting(rule: str) -> None:
    with pytest.raises(ValueError, match="FEEDSTORE_HISTORY must be prefixes with counts"):
        HistoryRules.parse([rule])


def test_trimming_keeps_exactly_the_count(notes: FlaskClient, redis_client: redis.Redis) -> None:
    assert kept(redis_client) == [2, 3, 4]
    notes.patch("/d/notes/1", json={"summary": "s"})
    assert kept(redis_client) == [3, 4, 5]
    assert history.read_revision(redis_client, KeyScheme(), "/notes/1", 5)[1] is False


def test_without_a_prefix_nothing_is_kept(notes: FlaskClient, redis_client: redis.Redis) -> None:
    notes.post("/d/", json={"link": [{"___href": "/plain", "___rel": "self"}]})
    notes.put("/d/plain/1", json={"title": "a"})
    notes.put("/d/plain/1", json={"title": "b"})
    assert all_keys(redis_client, "*:h:*") == [HISTORY.encode()]
    response = notes.get("/d/plain/1?e&r=1")
    assert response.status_code == 410
    assert response.json["error"]["code"] == "revision_gone"  # type: ignore[index]


@pytest.mark.parametrize(
    ("revision", "status", "shown"),
    [(5, 200, "t5"), (3, 200, "t3"), (1, 410, None), (6, 404, None)],
)
def test_reading_a_revision(notes: FlaskClient, revision: int, status: int, shown: str) -> None:
    response = notes.get(f"/d/notes/1?e&r={revision}")
    assert response.status_code == status
    if shown is not None:
        assert title(response) == shown
        assert response.headers["ETag"] == f'"{revision}"'
        immutable = response.headers.get("Cache-Control")
        assert immutable == (None if revision == 5 else "private, max-age=31536000, immutable")
    else:
        message = {404: "No revision.", 410: "Revision is no longer kept."}[status]
        assert response.json["feed"]["title"] == (
            f"{message} Key = /notes/1, revision = {revision}"
        )
        code = {404: "revision_not_found", 410: "revision_gone"}[status]
        assert response.json["error"]["code"] == code


def test_a_kept_revision_in_atom_and_with_if_none_match(notes: FlaskClient) -> None:
    response = notes.get("/d/notes/1?e&r=3&x")
    assert response.status_code == 200 and b"<title>t3</title>" in response.data
    assert notes.get("/d/notes/1?r=3", headers={"If-None-Match": '"3"'}).status_code == 304


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/d/notes/1?e&r=0", "Revision is invalid: r=0"),
        ("/d/notes/1?e&r=x", "Revision is invalid: r=x"),
        ("/d/notes?f&r=2", "r reads one entry and can't be combined with f."),
        ("/d/notes/1?_history&p=x", "Cursor is invalid: p=x"),
    ],
)
def test_bad_history_reads_are_400(notes: FlaskClient, url: str, message: str) -> None:
    response = notes.get(url)
    assert (response.status_code, response.json["feed"]["title"]) == (400, message)  # type: ignore[index]


def test_after_a_delete_history_lasts_its_days(
    notes: FlaskClient, redis_client: redis.Redis
) -> None:
    assert notes.delete("/d/notes/1").status_code == 200
    assert kept(redis_client) == [3, 4, 5]
    assert 0 < redis_client.ttl(HISTORY) <= 2 * DAY
    assert title(notes.get("/d/notes/1?e&r=5")) == "t5"
    assert ids(notes.get("/d/notes/1?_history")) == ["/notes/1,5", "/notes/1,4", "/notes/1,3"]
    assert notes.put("/d/notes/1", json={"title": "again"}).headers["ETag"] == '"6"'
    assert redis_client.ttl(HISTORY) == -1  # a re-insert keeps its history for good
    assert kept(redis_client) == [3, 4, 5]


def test_a_recursive_delete_keeps_each_entry_below(
    notes: FlaskClient, redis_client: redis.Redis
) -> None:
    notes.put("/d/notes/1/a", json={"title": "child"})
    assert notes.delete("/d/notes/1?_rf").status_code == 200
    below = KeyScheme().history_key("/notes/1/a")
    assert redis_client.hkeys(below) == [b"1"] and redis_client.ttl(below) > 0
    assert title(notes.get("/d/notes/1/a?e&r=1")) == "child"


def test_clearing_a_folder_keeps_the_entries_below(
    notes: FlaskClient, redis_client: redis.Redis
) -> None:
    notes.put("/d/notes/1/a", json={"title": "child"})
    assert notes.delete("/d/notes/1?_clearfolder").status_code == 200
    assert title(notes.get("/d/notes/1/a?e&r=1")) == "child"
    assert kept(redis_client) == [2, 3, 4]  # the folder itself is untouched


def test_a_write_through_an_alias_keeps_the_entry_s_revision(notes: FlaskClient) -> None:
    alternate = {"___href": "/notes/other", "___rel": "alternate"}
    assert notes.put("/d/notes/1?_addalias", json={"link": [alternate]}).status_code == 200
    assert notes.put("/d/notes/other", json={"title": "via alias"}).status_code == 200
    assert title(notes.get("/d/notes/1?e&r=6")) == "t5"
    assert title(notes.get("/d/notes/1?e")) == "via alias"


def test_history_pages_newest_first(notes: FlaskClient) -> None:
    first = notes.get("/d/notes/1?_history&l=3")
    assert ids(first) == ["/notes/1,5", "/notes/1,4", "/notes/1,3"]
    assert first.headers["x-vtecx-nextpage"] == "3"
    assert first.headers["Link"] == '</d/notes/1?_history&l=3&p=3>; rel="next"'
    second = notes.get("/d/notes/1?_history&l=3&p=3")
    assert ids(second) == ["/notes/1,2"] and "x-vtecx-nextpage" not in second.headers
    assert ids(notes.get("/d/notes/1?_history")) == [f"/notes/1,{n}" for n in (5, 4, 3, 2)]
    assert b"<id>/notes/1,4</id>" in notes.get("/d/notes/1?_history&x").data


def test_history_of_nothing_is_204(notes: FlaskClient) -> None:
    assert notes.get("/d/notes/2?_history").status_code == 204


def test_revert_writes_the_old_fields_as_a_new_revision(notes: FlaskClient) -> None:
    notes.patch("/d/notes/1", json={"summary": "added later"})
    response = notes.put("/d/notes/1?_revert=3")
    assert (response.status_code, response.headers["ETag"]) == (200, '"7"')
    entry = notes.get("/d/notes/1?e").json["feed"]["entry"][0]  # type: ignore[index]
    assert (entry["title"], "summary" in entry, entry["id"]) == ("t3", False, "/notes/1,7")
    assert title(notes.get("/d/notes/1?e&r=6")) == "t5"


def test_revert_honours_if_match(notes: FlaskClient, redis_client: redis.Redis) -> None:
    before = snapshot(redis_client)
    stale = notes.put("/d/notes/1?_revert=3", headers={"If-Match": '"4"'})
    assert stale.status_code == 412
    assert snapshot(redis_client) == before
    fresh = notes.put("/d/notes/1?_revert=3", headers={"If-Match": '"5"'})
    assert (fresh.status_code, fresh.headers["ETag"]) == (200, '"6"')


@pytest.mark.parametrize(("revision", "status"), [(1, 410), (9, 404)])
def test_revert_to_a_revision_not_kept(notes: FlaskClient, revision: int, status: int) -> None:
    assert notes.put(f"/d/notes/1?_revert={revision}").status_code == status


def test_revert_restores_a_deleted_entry(notes: FlaskClient) -> None:
    notes.delete("/d/notes/1")
    assert notes.put("/d/notes/1?_revert=4").headers["ETag"] == '"6"'
    assert title(notes.get("/d/notes/1?e")) == "t4"


def test_revert_takes_no_body(notes: FlaskClient) -> None:
    response = notes.put("/d/notes/1?_revert=3", json={"title": "x"})
    assert response.status_code == 400


def test_with_auth_on_history_needs_read_access_now(redis_client: redis.Redis) -> None:
    """Reading a revision or the history needs R on the key as it is now (Kinto's rule); a
    revert also needs the right to write it."""
    app = create_app({"auth": "on", "history": ["/notes=3"]}, redis_client)
    web = app.test_client()
    web.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    admin = {"Authorization": f"Bearer {make_token(redis_client, 'admin', admin=True)}"}
    alice = {"Authorization": f"Bearer {make_token(redis_client, 'alice')}"}
    readable = {"contributor": [{"uri": "urn:vte.cx:acl:alice,R"}]}
    assert web.put("/d/notes", json={**readable}, headers=admin).status_code == 200
    for n in (1, 2):
        assert web.put("/d/notes/1", json={"title": f"t{n}"}, headers=admin).status_code == 200
    assert web.get("/d/notes/1?_history", headers=alice).status_code == 200
    assert web.get("/d/notes/1?e&r=1", headers=alice).status_code == 200
    assert web.put("/d/notes/1?_revert=1", headers=alice).status_code == 403  # no U
    private = {"contributor": [{"uri": "urn:vte.cx:acl:admin,CRUD"}], "title": "t3"}
    assert web.put("/d/notes/1", json=private, headers=admin).status_code == 200
    for path in ("/d/notes/1?_history", "/d/notes/1?e&r=1"):
        denied = web.get(path, headers=alice)
        assert (denied.status_code, denied.json["error"]["code"]) == (403, "access_denied")
        assert "t1" not in denied.get_data(as_text=True)
        assert web.get(path).status_code == 401
    assert web.put("/d/notes/1?_revert=1", headers=admin).status_code == 200


@pytest.mark.parametrize("other", ["_addids=1", "_addalias", "_bulk", "_merge"])
def test_revert_takes_no_other_option(notes: FlaskClient, other: str) -> None:
    """Found by the fuzzer: `?_revert=x&_addids=-0` ran the counter and never read the revision."""
    before = notes.get("/d/notes/1?e").json
    answer = notes.put(f"/d/notes/1?_revert=2&{other}")
    name = other.partition("=")[0]
    assert (answer.status_code, answer.json["feed"]["title"]) == (
        400,
        f"_revert and {name} can't be combined.",
    )
    assert notes.get("/d/notes/1?e").json == before
