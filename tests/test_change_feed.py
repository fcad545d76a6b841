"""`GET /d/{key}?_changes` (change_feed.py, API.md §18): items, headers, paging, Atom
tombstones, 410 below the horizon, ACL filtering, long-poll and Server-Sent Events."""

from __future__ import annotations

import threading
from typing import Any

import feedparser
import hypothesis
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import strategies as st
from lxml import etree

from feedstore.app import create_app
from feedstore.changes import ChangeStreams
from feedstore.embedded import EmbeddedRedis
from feedstore.keys import KeyScheme
from tests.conftest import bearer, make_token

KEYS = KeyScheme()
AT = "http://purl.org/atompub/tombstones/1.0"
ATOM = "http://www.w3.org/2005/Atom"


@pytest.fixture
def notes(client: FlaskClient) -> FlaskClient:
    """/n created, /n/1 created, updated, and deleted; /n/2 created."""
    client.post("/d/", json={"link": [{"___href": "/n", "___rel": "self"}]})
    client.put("/d/n/1", json={"title": "one"})
    client.put("/d/n/1", json={"title": "uno"})
    client.delete("/d/n/1")
    client.put("/d/n/2", json={"title": "two"})
    return client


def entries(response: Any) -> list[dict[str, Any]]:
    return list(response.json["feed"]["entry"])


def terms(response: Any) -> list[tuple[str, str]]:
    return [(e["id"], e["category"][-1]["___term"]) for e in entries(response)]


def test_items_are_change_entries_oldest_first(notes: FlaskClient) -> None:
    response = notes.get("/d/n?_changes")
    assert response.status_code == 200
    assert terms(response) == [
        ("/n,1", "created"),
        ("/n/1,1", "created"),
        ("/n/1,2", "updated"),
        ("/n/1,2", "deleted"),
        ("/n/2,1", "created"),
    ]
    deleted = entries(response)[3]
    assert deleted["link"] == [{"___href": "/n/1", "___rel": "self"}]
    assert deleted["author"][0]["uri"].startswith("urn:feedstore:deleted:")
    category = deleted["category"][0]
    assert category["___scheme"] == "urn:feedstore:change"
    assert response.headers["x-feedstore-seq"] == entries(response)[-1]["category"][0]["___label"]
    assert "x-vtecx-nextpage" not in response.headers


def test_since_is_exclusive_and_empty_is_204_with_the_seq(notes: FlaskClient) -> None:
    first = notes.get("/d/n/1?_changes&l=1")
    seq = first.headers["x-feedstore-seq"]
    assert first.headers["x-vtecx-nextpage"] == seq
    assert first.headers["Link"] == f'</d/n/1?_changes&l=1&_since={seq}>; rel="next"'
    rest = notes.get(f"/d/n/1?_changes&_since={seq}")
    assert [term for _, term in terms(rest)] == ["updated", "deleted"]
    assert terms(notes.get(f"/d/n/1?_changes&p={seq}")) == terms(rest)
    last = rest.headers["x-feedstore-seq"]
    empty = notes.get(f"/d/n/1?_changes&_since={last}")
    assert empty.status_code == 204 and empty.headers["x-feedstore-seq"] == last


def test_now_starts_after_the_newest_event(notes: FlaskClient) -> None:
    now = notes.get("/d/n?_changes&_since=now")
    assert now.status_code == 204
    notes.put("/d/n/3", json={})
    after = notes.get(f"/d/n?_changes&_since={now.headers['x-feedstore-seq']}")
    assert terms(after) == [("/n/3,1", "created")]


def test_e_gives_current_entries_once_per_key(notes: FlaskClient) -> None:
    notes.put("/d/n/2", json={"title": "deux"})
    response = notes.get("/d/n?_changes&e")
    shown = {e["id"]: e for e in entries(response)}
    assert list(shown) == ["/n,1", "/n/1,2", "/n/2,2"]
    assert shown["/n/2,2"]["title"] == "deux"
    assert shown["/n/2,2"]["category"][-1]["___term"] == "updated"
    assert "title" not in shown["/n/1,2"]  # deleted: the tombstone item


@pytest.mark.parametrize(
    ("query", "named"),
    [("f", "f"), ("_history", "_history"), ("s=title", "s"), ("title=x", "title"), ("c", "c")],
)
def test_options_it_cant_combine_are_400(notes: FlaskClient, query: str, named: str) -> None:
    response = notes.get(f"/d/n?_changes&{query}")
    assert response.status_code == 400
    assert response.json["feed"]["title"] == f"_changes can't be combined with {named}."


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("_since=x", "Sequence is invalid: _since=x"),
        ("p=1-2-3", "Sequence is invalid: p=1-2-3"),
        ("_wait=0", "Wait must be a number of seconds from 1 to 60: _wait=0"),
        ("_wait=61", "Wait must be a number of seconds from 1 to 60: _wait=61"),
        ("l=0", "Limit must be a number from 1 to 1000, or *: l=0"),
    ],
)
def test_bad_values_are_400(notes: FlaskClient, query: str, message: str) -> None:
    response = notes.get(f"/d/n?_changes&{query}")
    assert response.status_code == 400
    assert response.json["feed"]["title"] == message


def test_atom_has_rfc6721_tombstones(notes: FlaskClient) -> None:
    response = notes.get("/d/n/1?_changes&x&l=2")
    assert response.content_type.startswith("application/atom+xml")
    parsed = feedparser.parse(response.data)
    assert not parsed.bozo and [e.id for e in parsed.entries] == ["/n/1,1", "/n/1,2"]
    seq = response.headers["x-feedstore-seq"]
    rest = notes.get(f"/d/n/1?_changes&x&_since={seq}")
    root = etree.fromstring(rest.data)
    [tombstone] = root.findall(f"{{{AT}}}deleted-entry")
    assert tombstone.get("ref") == "/n/1,2" and tombstone.get("when")
    assert tombstone.findtext(f"{{{AT}}}by/{{{ATOM}}}name")
    assert tombstone.find(f"{{{ATOM}}}link").get("href") == "/n/1"
    first = etree.fromstring(response.data)
    assert first.find(f"{{{ATOM}}}link").get("rel") == "next"


def test_below_the_horizon_is_410(real_redis: redis.Redis) -> None:
    client = create_app({}, real_redis).test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    for _ in range(3):
        client.put("/d/n", json={})
    [first, second, last] = [
        e["category"][0]["___label"] for e in entries(client.get("/d/n?_changes"))
    ]
    streams = ChangeStreams(real_redis, KEYS, cluster=False)
    assert streams.trim_stream(KEYS.change_stream_key("/n"), 0, 1) == 2  # keeps the newest
    assert streams.horizon("/n") == second
    gone = client.get(f"/d/n?_changes&_since={first}")
    assert gone.status_code == 410
    assert gone.json["error"]["code"] == "changes_expired" and gone.json["error"]["oldest"] == last
    assert gone.json["feed"]["title"] == f"Changes since {first} are no longer kept. Key = /n"
    assert gone.headers["Link"] == '</d/n?f>; rel="describedby"'
    assert terms(client.get(f"/d/n?_changes&_since={second}")) == [("/n,3", "updated")]
    assert terms(client.get("/d/n?_changes")) == [("/n,3", "updated")]  # from the oldest kept


def test_an_event_stream_below_the_horizon_is_410_before_it_starts(
    real_redis: redis.Redis,
) -> None:
    """Not a 200 whose stream then breaks: EventSource would reconnect with the same
    Last-Event-ID for ever."""
    client = create_app({}, real_redis).test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    for _ in range(3):
        client.put("/d/n", json={})
    first = entries(client.get("/d/n?_changes"))[0]["category"][0]["___label"]
    ChangeStreams(real_redis, KEYS, cluster=False).trim_stream(KEYS.change_stream_key("/n"), 0, 1)
    sse = {"Accept": "text/event-stream", "Last-Event-ID": first}
    gone = client.get("/d/n?_changes", headers=sse, buffered=False)
    assert gone.status_code == 410 and gone.json["error"]["code"] == "changes_expired"


def test_once_every_event_is_trimmed_a_follower_starts_at_the_horizon(
    real_redis: redis.Redis,
) -> None:
    """`_since=now` and a listing's x-feedstore-seq are never below the horizon, so list then
    follow works on a stream the retention pass emptied."""
    client = create_app({}, real_redis).test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    client.put("/d/n", json={})
    client.put("/d/n/1", json={})
    streams = ChangeStreams(real_redis, KEYS, cluster=False)
    assert streams.trim_stream(KEYS.change_stream_key("/n"), 2**62, 10) == 2  # every event
    horizon = streams.horizon("/n")
    assert horizon is not None and streams.last("/n") == horizon
    seq = client.get("/d/n?f").headers["x-feedstore-seq"]
    assert seq == horizon
    assert client.get(f"/d/n?_changes&_since={seq}").status_code == 204
    assert client.get("/d/n?_changes&_since=now").status_code == 204
    client.put("/d/n/2", json={})
    assert terms(client.get(f"/d/n?_changes&_since={seq}")) == [("/n/2,1", "created")]


def test_events_the_caller_cant_read_are_skipped(redis_client: Any) -> None:
    app = create_app(
        {"auth": "on", "default_acl": "urn:vte.cx:acl:/_group/$admin,CRUD"}, redis_client
    )
    admin = bearer(make_token(redis_client, "root", admin=True))
    alice = bearer(make_token(redis_client, "alice"))
    client = app.test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    client.put("/d/n", json={"contributor": [{"uri": "urn:vte.cx:acl:*,R"}]}, headers=admin)
    client.put("/d/n/open", json={}, headers=admin)
    secret = {"contributor": [{"uri": "urn:vte.cx:acl:/_group/$admin,CRUD"}]}
    client.put("/d/n/secret", json=secret, headers=admin)
    seen = client.get("/d/n?_changes", headers=alice)
    assert [e["id"] for e in entries(seen)] == ["/n,1", "/n/open,1"]
    everything = client.get("/d/n?_changes", headers=admin)
    assert seen.headers["x-feedstore-seq"] == everything.headers["x-feedstore-seq"]


def test_long_poll_wakes_on_a_write(real_redis: redis.Redis) -> None:
    """A request waiting with `_wait` is woken by another thread's write: it answers that
    write's event, not a 204 at the end of its 60 s."""
    app = create_app({}, real_redis)
    writer, reader = app.test_client(), app.test_client()
    writer.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    writer.put("/d/n", json={})
    seq = reader.get("/d/n?_changes&_since=now").headers["x-feedstore-seq"]
    answers: list[Any] = []
    waiting = threading.Thread(
        target=lambda: answers.append(reader.get(f"/d/n?_changes&_since={seq}&_wait=60"))
    )
    waiting.start()
    _until_waiting(app)
    writer.put("/d/n/1", json={})
    waiting.join(30)
    assert not waiting.is_alive(), "the long-poll did not wake on the write"
    assert terms(answers[0]) == [("/n/1,1", "created")]


def test_long_poll_times_out_with_204_and_the_same_seq(notes: FlaskClient) -> None:
    seq = notes.get("/d/n?_changes&_since=now").headers["x-feedstore-seq"]
    waited = notes.get(f"/d/n?_changes&_since={seq}&_wait=1")
    assert waited.status_code == 204 and waited.headers["x-feedstore-seq"] == seq


def test_too_many_waiters_is_503(real_redis: redis.Redis) -> None:
    app = create_app({"changes_waiters_max": 1}, real_redis)
    client = app.test_client()
    hub = app.extensions["feedstore_change_hub"]
    with hub.waiting():
        response = client.get("/d/n?_changes&_wait=5")
    assert response.status_code == 503
    assert response.json["feed"]["title"] == "Too many waiting clients. Please retry."
    assert response.headers["Retry-After"]


def _until_waiting(app: Flask) -> None:
    """Until a request waits in the hub (no timing: polled, bounded generously)."""
    hub = app.extensions["feedstore_change_hub"]
    for _ in range(100_000):
        if hub.count:
            return
        threading.Event().wait(0.001)
    raise AssertionError("no request waited")


def test_a_listings_first_page_carries_the_seq_to_follow_from(notes: FlaskClient) -> None:
    notes.put("/d/n/4", json={})
    listed = notes.get("/d/n?f&l=1")
    seq = listed.headers["x-feedstore-seq"]
    assert seq == notes.get("/d/n?_changes&_since=now").headers["x-feedstore-seq"]
    assert (
        "x-feedstore-seq"
        not in notes.get(f"/d/n?f&l=1&p={listed.headers['x-vtecx-nextpage']}").headers
    )
    assert notes.get("/d/n?f&title=none").headers["x-feedstore-seq"] == seq  # a filtered one
    notes.put("/d/n/3", json={})
    assert terms(notes.get(f"/d/n?_changes&_since={seq}")) == [("/n/3,1", "created")]


State = dict[str, tuple[int, bool]]  # key -> (revision, deleted)


def _apply(state: State, key: str, revision: int, deleted: bool) -> None:
    """Apply what a listing or an event says of `key`, by revision (a delete carries the
    revision it deleted, so it wins over that revision's write)."""
    if (revision, deleted) > state.get(key, (0, False)):
        state[key] = (revision, deleted)


@hypothesis.settings(
    max_examples=5, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
)
@hypothesis.given(
    writers=st.lists(
        st.lists(st.tuples(st.integers(0, 7), st.booleans()), min_size=5, max_size=25),
        min_size=4,
        max_size=4,
    )
)
def test_list_then_follow_converges_under_four_writers(
    redis_server: EmbeddedRedis, writers: list[list[tuple[int, bool]]]
) -> None:
    """A client lists /n (small pages) while four threads PUT and DELETE its children, then
    follows the change feed from the first page's x-feedstore-seq: it ends with exactly the
    stored children and revisions."""
    client_redis = redis.Redis.from_url(redis_server.url)
    client_redis.flushdb()
    app = create_app({}, client_redis)
    reader = app.test_client()
    setup = app.test_client()
    setup.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    setup.put("/d/n", json={})
    for i in range(0, 8, 2):
        setup.put(f"/d/n/{i}", json={})

    def write(operations: list[tuple[int, bool]]) -> None:
        client = app.test_client()
        client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
        for number, deleting in operations:
            if deleting:
                client.delete(f"/d/n/{number}")  # 404 when it is gone already
            else:
                assert client.put(f"/d/n/{number}", json={}).status_code == 200

    threads = [threading.Thread(target=write, args=(ops,)) for ops in writers]
    for thread in threads:
        thread.start()
    state: State = {}
    page = reader.get("/d/n?f&l=2")
    seq = page.headers["x-feedstore-seq"]
    while True:
        for entry in page.json["feed"]["entry"] if page.status_code == 200 else []:
            key, _, revision = entry["id"].rpartition(",")
            _apply(state, key, int(revision), False)
        if "x-vtecx-nextpage" not in page.headers:
            break
        page = reader.get(f"/d/n?f&l=2&p={page.headers['x-vtecx-nextpage']}")
    while True:
        done = not any(thread.is_alive() for thread in threads)
        followed = reader.get(f"/d/n?_changes&_since={seq}&l=5")
        seq = followed.headers["x-feedstore-seq"]
        for item in followed.json["feed"]["entry"] if followed.status_code == 200 else []:
            key, _, revision = item["id"].rpartition(",")
            if key != "/n":
                deleted = item["category"][-1]["___term"] == "deleted"
                _apply(state, key, int(revision), deleted)
        if done and followed.status_code == 204:
            break
    stored = reader.get("/d/n?f&l=*")
    expected = {}
    for entry in stored.json["feed"]["entry"] if stored.status_code == 200 else []:
        key, _, revision = entry["id"].rpartition(",")
        expected[key] = int(revision)
    assert {key: r for key, (r, deleted) in state.items() if not deleted} == expected
    client_redis.close()


def test_an_event_stream_beyond_the_waiters_is_503_before_it_starts(
    real_redis: redis.Redis,
) -> None:
    app = create_app({"changes_waiters_max": 1}, real_redis)
    hub = app.extensions["feedstore_change_hub"]
    with hub.waiting():
        response = app.test_client().get("/d/n?_changes", headers={"Accept": "text/event-stream"})
    assert response.status_code == 503
    assert response.json["feed"]["title"] == "Too many waiting clients. Please retry."


def test_an_event_stream_sends_retry_then_the_events(notes: FlaskClient) -> None:
    response = notes.get("/d/n/1?_changes", headers={"Accept": "text/event-stream"}, buffered=False)
    assert response.content_type.startswith("text/event-stream")
    chunks = iter(response.response)
    assert next(chunks) == b"retry: 3000\n\n"
    first = next(chunks).decode()
    assert first.startswith("id: ") and "\nevent: created\ndata: {" in first
    assert '"id":"/n/1,1"' in first
    response.close()
