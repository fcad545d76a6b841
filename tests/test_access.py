"""Reads and writes over HTTP with auth on (access.py, API.md §16), as users authenticated
by real tokens (authentication.py): admin (in /_group/$admin), alice and bob."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from feedstore import create_app, cursor, query
from feedstore.errors import InvalidOption
from tests.conftest import make_token


def acl_of(*uris: str) -> list[dict[str, str]]:
    return [{"uri": uri} for uri in uris]


def auth_on(client: redis.Redis, **config: Any) -> Flask:
    """An app with auth on and the default ACL (admins only), and a token per user."""
    app = create_app({"auth": "on", **config}, client)
    app.config["TEST_TOKENS"] = {
        "admin": make_token(client, "admin", admin=True),
        "alice": make_token(client, "alice"),
        "bob": make_token(client, "bob"),
    }
    return app


@pytest.fixture
def app(redis_client: redis.Redis) -> Flask:
    return auth_on(redis_client)


def as_user(client: FlaskClient, name: str) -> FlaskClient:
    token = client.application.config["TEST_TOKENS"][name]
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def entry(key: str, **fields: Any) -> dict[str, Any]:
    return {"link": [{"___href": key, "___rel": "self"}], **fields}


@pytest.fixture
def admin(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    return as_user(client, "admin")


@pytest.fixture
def alice(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    return as_user(client, "alice")


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    return client


@pytest.fixture
def shared(admin: FlaskClient) -> FlaskClient:
    """/11 readable by every logged-in user, writable by alice; /11/1 alice's, /11/2 open."""
    folder = acl_of("urn:vte.cx:acl:+,R", "urn:vte.cx:acl:alice,CRUD")
    assert admin.put("/d/11", json=entry("/11", contributor=folder)).status_code == 200
    assert admin.put("/d/11/2", json=entry("/11/2")).status_code == 200
    private = acl_of("urn:vte.cx:acl:alice,CRUD")
    assert admin.put("/d/11/1", json=entry("/11/1", contributor=private)).status_code == 200
    return admin


# (method, path, body, caller) -> status: the 401/403 matrix (None: no credential)
MATRIX = [
    ("get", "/d/11/1?e", None, "bob", 403),
    ("get", "/d/11/1?e", None, None, 401),
    ("get", "/d/11/2?e", None, "bob", 200),
    ("get", "/d/11?f", None, None, 401),
    ("get", "/d/11?f", None, "bob", 200),
    ("get", "/d/?f", None, "bob", 403),
    ("put", "/d/11/2", entry("/11/2", title="t"), "bob", 403),
    ("put", "/d/11/2", entry("/11/2", title="t"), None, 401),
    ("put", "/d/11/2", entry("/11/2", title="t"), "alice", 200),
    ("post", "/d/11", entry("/11/3"), "bob", 403),
    ("post", "/d/11", entry("/11/3"), "alice", 201),
    ("patch", "/d/11/2", {"title": "p"}, "bob", 403),
    ("delete", "/d/11/2", None, "bob", 403),
    ("delete", "/d/11/2", None, None, 401),
    ("delete", "/d/11/2", None, "alice", 200),
    ("get", "/d/11?_getids", None, "bob", 200),
    ("put", "/d/11?_addids=1", None, "bob", 403),
]


@pytest.mark.parametrize(("method", "path", "body", "user", "status"), MATRIX)
def test_the_401_403_matrix(
    shared: FlaskClient,
    anonymous: FlaskClient,
    method: str,
    path: str,
    body: Any,
    user: str | None,
    status: int,
) -> None:
    client = anonymous if user is None else as_user(anonymous, user)
    response = getattr(client, method)(path, json=body) if body else getattr(client, method)(path)
    assert response.status_code == status, response.json
    if status == 401:
        assert response.json["feed"]["title"] == "Authentication error."
        assert response.json["error"]["code"] == "authentication_required"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="feedstore"'
    if status == 403:
        assert response.json["feed"] == {"title": "Access denied."}
        assert response.json["error"]["code"] == "access_denied"
        assert response.json["error"]["right"] in "CRUDA"


def test_403_beats_409_and_hides_the_stored_entry(
    shared: FlaskClient, anonymous: FlaskClient
) -> None:
    bob = as_user(anonymous, "bob")
    response = bob.put("/d/", json=[entry("/11/2", id="/11/2,9"), entry("/11/1")])
    assert response.status_code == 403
    assert [e["key"] for e in response.json["error"]["entries"]] == ["/11/2", "/11/1"]
    assert "current" not in response.json["error"]


def test_access_names_the_rights_and_the_deciding_acl(
    shared: FlaskClient, alice: FlaskClient, anonymous: FlaskClient
) -> None:
    assert alice.get("/d/11/2?_access").json == {
        "feed": {
            "title": "CRUD",
            "subtitle": "/11",
            "rights": "urn:vte.cx:acl:+,R urn:vte.cx:acl:alice,CRUD",
        }
    }
    bob = as_user(anonymous, "bob")
    assert bob.get("/d/11/1?_access").json == {
        "feed": {"title": "", "subtitle": "/11/1", "rights": ""}
    }
    assert shared.get("/d/11?_access").json["feed"] == {"title": "CRUDA", "rights": "admin"}
    assert bob.get("/d/22?_access").json["feed"] == {"title": "", "rights": "default_acl"}


def test_access_with_auth_off_says_so(redis_client: redis.Redis) -> None:
    client = create_app({}, redis_client).test_client()
    assert client.get("/d/a?_access").json == {"feed": {"title": "CRUDA", "rights": "auth_off"}}


def fill(admin: FlaskClient, readable: int, total: int) -> None:
    """/f with `total` children, of which only `readable` are readable by bob."""
    folder = acl_of("urn:vte.cx:acl:+,R")
    assert admin.put("/d/f", json=entry("/f", contributor=folder)).status_code == 200
    hidden = acl_of("urn:vte.cx:acl:alice,CRUD")
    body = [
        entry(f"/f/{n:04d}", **({} if n < readable else {"contributor": hidden}))
        for n in range(total)
    ]
    assert admin.put("/d/", json=body).status_code == 200


def pages(client: FlaskClient, path: str) -> tuple[list[str], list[str], list[Any]]:
    """Every page of a feed: the keys, the cursors, the responses."""
    keys: list[str] = []
    cursors: list[str] = []
    responses = []
    while True:
        response = client.get(path)
        responses.append(response)
        if response.status_code == 204:
            return keys, cursors, responses
        keys += [e["link"][0]["___href"] for e in response.json["feed"].get("entry", [])]
        token = response.headers.get("x-vtecx-nextpage")
        if token is None:
            return keys, cursors, responses
        cursors.append(token)
        path = "/d/f?f&l=100&p=" + token


@pytest.mark.parametrize("readable", [1, 999])
def test_feeds_hide_what_the_caller_cant_read(real_redis: redis.Redis, readable: int) -> None:
    app = auth_on(real_redis, fetch_limit=300)
    admin = as_user(app.test_client(), "admin")
    admin.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    fill(admin, readable, 1000)
    bob = as_user(app.test_client(), "bob")
    assert bob.get("/d/f?c").json["feed"]["title"] == str(readable)  # exact
    keys, cursors, responses = pages(bob, "/d/f?f&l=100")
    assert keys == [f"/f/{n:04d}" for n in range(readable)]
    for response in responses[:-1]:  # full, unless the fetch limit stopped the page (206)
        size = len(response.json["feed"].get("entry", []))
        assert size == 100 or response.status_code == 206
    assert cursors  # 1,000 children, 300 examined per request: the feed goes on by cursor
    hidden = {f"/f/{n:04d}" for n in range(readable, 1000)}
    for response in responses:
        text = response.get_data() + str(response.headers).encode()
        assert not any(key.encode() in text for key in hidden)
    # A cursor is sealed: its bytes name no key, a plain decode refuses it, and with the
    # server's key and the query's scope (bound to bob) it opens to where the page ended.
    secret = real_redis.get("fs:secret")
    scope = "/f\n" + query.parse([("f", ""), ("l", "100")], None, 300).fingerprint()
    scope += "\n" + bob.get("/d/?_uid").json["feed"]["title"]
    opened = set()
    for token in cursors:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert not any(key.encode() in raw for key in hidden)
        with pytest.raises(InvalidOption):
            cursor.decode(token, scope, secret)
        opened.add(cursor.decode(token, scope, secret, sealed=True).key)
    if readable == 1:
        assert opened <= hidden and opened  # the positions are hidden keys: hence the sealing
    alice = as_user(app.test_client(), "alice")  # another caller can't use bob's cursor
    assert alice.get("/d/f?f&l=100&p=" + cursors[0]).status_code == 400


def test_an_alias_is_readable_where_its_entry_is(
    shared: FlaskClient, anonymous: FlaskClient
) -> None:
    folder = acl_of("urn:vte.cx:acl:*,R")
    assert shared.put("/d/11/pub", json=entry("/11/pub", contributor=folder)).status_code == 200
    alias = {
        "link": [
            {"___href": "/11/1", "___rel": "self"},
            {"___href": "/11/pub/1", "___rel": "alternate"},
        ]
    }
    assert shared.put("/d/11/1?_addalias", json=alias).status_code == 200
    bob = as_user(anonymous, "bob")
    assert bob.get("/d/11/pub/1?e").status_code == 403
    assert bob.get("/d/11/pub?f").status_code == 204
    assert bob.get("/d/11/pub?c").json["feed"]["title"] == "0"
    assert as_user(anonymous, "alice").get("/d/11/pub/1?e").status_code == 200


def test_an_entry_read_with_a_token_is_one_round_trip(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`?e` with a Bearer token reads the token's record with the entry and its ACLs in one
    pipeline; the token still decides first: a bad one is 401 even where anyone may read."""
    app = auth_on(real_redis)
    admin, alice = as_user(app.test_client(), "admin"), as_user(app.test_client(), "alice")
    admin.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    public = entry("/pub", contributor=acl_of("urn:vte.cx:acl:*,R"))
    assert admin.put("/d/pub", json=public).status_code == 200
    assert alice.get("/d/pub?e").status_code == 200  # writes the token's last_used, once
    sent: list[bytes] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counting(connection: Any, command: Any, check_health: bool = True) -> None:
        sent.append(b"".join(command) if isinstance(command, list) else command)
        send(connection, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    read = alice.get("/d/pub?e")
    assert read.status_code == 200 and read.json["feed"]["entry"][0]["id"] == "/pub,1"
    assert len(sent) == 1 and b"HGETALL" in sent[0] and b"MGET" in sent[0]
    sent.clear()
    bad = app.test_client().get("/d/pub?e", headers={"Authorization": "Bearer fst_x"})
    assert (bad.status_code, bad.json["error"]["code"]) == (401, "invalid_token")
    forged = alice.application.config["TEST_TOKENS"]["alice"][:-2] + "xx"
    bad = app.test_client().get("/d/pub?e", headers={"Authorization": f"Bearer {forged}"})
    assert (bad.status_code, "entry" in bad.get_data(as_text=True)) == (401, False)
    private = entry("/priv", contributor=acl_of("urn:vte.cx:acl:alice,R"))
    assert admin.put("/d/priv", json=private).status_code == 200
    assert alice.get("/d/priv?e").status_code == 200
    denied = as_user(app.test_client(), "bob").get("/d/priv?e")
    assert (denied.status_code, denied.json["error"]["code"]) == (403, "access_denied")
    assert "/priv," not in denied.get_data(as_text=True)
