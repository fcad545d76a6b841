"""Authentication over HTTP (authentication.py): credentials, the account options, CSRF."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from feedstore import create_app
from feedstore.authentication import current_principal
from feedstore.credentials import Credentials
from feedstore.principal import ANONYMOUS
from feedstore.sessions import session_digest
from tests.conftest import OPEN_ACL, add_user, bearer, make_token

AUTH_ERROR = {"status": 401, "entries": []}
ENTRY = {"link": [{"___href": "/a", "___rel": "self"}], "title": "t"}


def basic(account: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{account}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def body(code: str) -> dict[str, Any]:
    return {"feed": {"title": "Authentication error."}, "error": {**AUTH_ERROR, "code": code}}


def sid_of(response: Any) -> str:
    cookie = response.headers["Set-Cookie"]
    return str(cookie.split(";")[0].removeprefix("SID="))


def test_with_auth_off_credentials_are_not_read(redis_client: redis.Redis) -> None:
    client = create_app({"auth": "off"}, redis_client).test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    response = client.put("/d/", json=ENTRY, headers=bearer("fst_nonsense"))
    assert response.status_code == 200
    assert client.get("/d/?_whoami").json == {
        "feed": {"title": "Authentication is off: _whoami"},
        "error": {"status": 400, "code": "invalid_option", "entries": []},
    }


@pytest.mark.parametrize("scheme", ["Bearer", "Token", "bearer"])
def test_a_token_authenticates_as_its_user(
    auth_client: FlaskClient, redis_client: redis.Redis, scheme: str
) -> None:
    token = make_token(redis_client, "alice", groups=("sales",))
    response = auth_client.get("/d/?_whoami", headers={"Authorization": f"{scheme} {token}"})
    assert response.status_code == 200
    assert response.json == {
        "feed": {
            "entry": [
                {"title": "1", "subtitle": "alice", "category": [{"___term": "/_group/sales"}]}
            ]
        }
    }


def test_a_token_in_basics_password_slot_authenticates(
    auth_client: FlaskClient, redis_client: redis.Redis
) -> None:
    token = make_token(redis_client, "alice")
    response = auth_client.get("/d/?_uid", headers=basic("alice", token))
    assert (response.status_code, response.json) == (200, {"feed": {"title": "1"}})


def test_uid_and_whoami_of_anonymous_are_401(auth_client: FlaskClient) -> None:
    for option in ("_uid", "_whoami"):
        response = auth_client.get(f"/d/?{option}")
        assert (response.status_code, response.json) == (401, body("authentication_required"))
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="feedstore"'


def expired(client: redis.Redis) -> str:
    token = make_token(client, "alice")
    client.hset(f"fs:tok:{token[4:16]}", "expires", "1")
    return token


def revoked(client: redis.Redis) -> str:
    token = make_token(client, "alice")
    Credentials(client).revoke_token(token[4:16])
    return token


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        (lambda r: bearer("fst_" + "a" * 12 + "_" + "b" * 43), "invalid_token"),
        (lambda r: bearer("not-a-token"), "invalid_token"),
        (lambda r: bearer(revoked(r)), "invalid_token"),
        (lambda r: bearer(expired(r)), "token_expired"),
        (lambda r: basic("bob", make_token(r, "alice")), "invalid_token"),
        (lambda r: basic("alice", "a password"), "authentication_required"),
        (lambda r: {"Authorization": "Basic !!!"}, "authentication_required"),
        (lambda r: {"Authorization": "Digest x"}, "authentication_required"),
        (lambda r: {"Cookie": "SID=nosuchsession"}, "session_expired"),
    ],
    ids=[
        "unknown",
        "malformed",
        "revoked",
        "expired",
        "other-account",
        "password",
        "bad-basic",
        "digest",
        "session",
    ],
)
def test_a_bad_credential_is_401_even_where_anonymous_may_read(
    auth_client: FlaskClient, redis_client: redis.Redis, headers: Any, code: str
) -> None:
    assert auth_client.get("/d/").status_code == 204  # anonymous reads (nothing to authorize yet)
    sent = headers(redis_client)
    if "Cookie" in sent:  # the test client sends its own cookies, not a Cookie header
        auth_client.set_cookie("SID", sent.pop("Cookie").removeprefix("SID="))
    response = auth_client.get("/d/", headers=sent)
    assert (response.status_code, response.json) == (401, body(code))
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="feedstore"'


def test_health_stays_public(auth_client: FlaskClient) -> None:
    response = auth_client.get("/_health", headers=bearer("fst_bad"))
    assert response.status_code == 200


def test_current_principal_is_the_requests(auth_app: Flask, redis_client: redis.Redis) -> None:
    token = make_token(redis_client, "alice")
    with auth_app.test_request_context("/d/", headers=bearer(token)):
        auth_app.preprocess_request()
        assert current_principal().account == "alice"
    with auth_app.test_request_context("/d/"):
        auth_app.preprocess_request()
        assert current_principal() is ANONYMOUS


def test_login_sets_a_strict_httponly_cookie_that_authenticates(
    login_client: FlaskClient, real_redis: redis.Redis
) -> None:
    Credentials(real_redis).add_user("alice", "s3cret")
    response = login_client.post("/d/?_login", headers=basic("alice", "s3cret"))
    assert (response.status_code, response.json) == (200, {"feed": {"title": "Logged in."}})
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("SID=") and "; HttpOnly; Path=/; SameSite=Strict" in cookie
    assert "Secure" not in cookie
    assert real_redis.exists(f"fs:sess:{session_digest(sid_of(response))}")
    assert login_client.get("/d/?_uid").json == {"feed": {"title": "1"}}
    assert login_client.put("/d/", json=ENTRY).status_code == 200


def test_login_by_get_and_the_secure_cookie_setting(real_redis: redis.Redis) -> None:
    app = create_app({"auth": "on", "cookie_secure": True}, real_redis)
    Credentials(real_redis).add_user("alice", "s3cret")
    response = app.test_client().get("/d/?_login", headers=basic("alice", "s3cret"))
    assert response.status_code == 200 and "; Secure;" in response.headers["Set-Cookie"]


def test_logout_ends_the_session_and_drops_the_cookie(
    login_client: FlaskClient, real_redis: redis.Redis
) -> None:
    Credentials(real_redis).add_user("alice", "s3cret")
    sid = sid_of(login_client.post("/d/?_login", headers=basic("alice", "s3cret")))
    response = login_client.post("/d/?_logout")
    assert (response.status_code, response.json) == (200, {"feed": {"title": "Logged out."}})
    assert response.headers["Set-Cookie"].startswith("SID=; Expires=Thu, 01 Jan 1970")
    assert not real_redis.exists(f"fs:sess:{session_digest(sid)}")
    login_client.set_cookie("SID", sid)
    response = login_client.get("/d/?_uid")
    assert (response.status_code, response.json) == (401, body("session_expired"))


def test_a_wrong_password_is_401_and_the_sixth_try_429(
    login_client: FlaskClient, real_redis: redis.Redis
) -> None:
    Credentials(real_redis).add_user("alice", "s3cret")
    for _ in range(5):
        response = login_client.post("/d/?_login", headers=basic("alice", "wrong"))
        assert (response.status_code, response.json) == (401, body("authentication_required"))
    response = login_client.post("/d/?_login", headers=basic("alice", "s3cret"))
    assert response.status_code == 429
    assert response.json == {
        "feed": {"title": "Too many failed logins. Please retry later."},
        "error": {"status": 429, "code": "login_throttled", "entries": []},
    }
    assert 0 < int(response.headers["Retry-After"]) <= 15
    assert "Set-Cookie" not in response.headers


def test_login_needs_basic(auth_client: FlaskClient, redis_client: redis.Redis) -> None:
    token = make_token(redis_client, "alice")
    response = auth_client.post("/d/?_login", headers=bearer(token))
    assert (response.status_code, response.json) == (401, body("authentication_required"))


def test_a_stale_cookie_does_not_stop_a_login(
    login_client: FlaskClient, real_redis: redis.Redis
) -> None:
    Credentials(real_redis).add_user("alice", "s3cret")
    login_client.set_cookie("SID", "gone")
    assert login_client.get("/d/?_uid").json["error"]["code"] == "session_expired"  # type: ignore[index]
    assert login_client.post("/d/?_login", headers=basic("alice", "s3cret")).status_code == 200
    assert login_client.get("/d/?_uid").status_code == 200


@pytest.mark.parametrize(
    ("url", "title"),
    [
        ("/d/a?_login", "_login applies to /d/ only."),
        ("/d/?_login&_logout", "_login and _logout can't be combined."),
        ("/d/?_whoami&_nosuch", "Unknown option: _nosuch"),
    ],
)
def test_account_options_misused_are_400(auth_client: FlaskClient, url: str, title: str) -> None:
    response = auth_client.get(url)
    assert (response.status_code, response.json["feed"]["title"]) == (400, title)  # type: ignore[index]


def test_account_options_apply_to_their_methods_only(auth_client: FlaskClient) -> None:
    response = auth_client.put("/d/?_whoami")
    assert response.json["feed"]["title"] == "Option does not apply to PUT: _whoami"  # type: ignore[index]


@pytest.fixture
def login_client(real_redis: redis.Redis) -> FlaskClient:
    """An auth-on client on the real redis-server (logins hash passwords: once is enough)."""
    client = create_app({"auth": "on", "default_acl": OPEN_ACL}, real_redis).test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    return client


@pytest.fixture
def logged_in(login_client: FlaskClient, real_redis: redis.Redis) -> FlaskClient:
    Credentials(real_redis).add_user("alice", "s3cret")
    assert login_client.post("/d/?_login", headers=basic("alice", "s3cret")).status_code == 200
    return login_client


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}],
)
def test_a_cookie_write_from_another_origin_is_403(
    logged_in: FlaskClient, real_redis: redis.Redis, headers: dict[str, str]
) -> None:
    response = logged_in.put("/d/", json=ENTRY, headers=headers)
    assert (response.status_code, response.json) == (
        403,
        {
            "feed": {"title": "Cross-origin request refused."},
            "error": {"status": 403, "code": "cross_origin", "entries": []},
        },
    )
    assert not real_redis.keys("fs:{/a}:*")
    assert logged_in.post("/d/?_logout", headers=headers).status_code == 403


def test_a_cookie_write_from_the_same_origin_passes(logged_in: FlaskClient) -> None:
    headers = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert logged_in.put("/d/", json=ENTRY, headers=headers).status_code == 200


def test_a_token_write_is_not_a_csrf_risk(
    auth_client: FlaskClient, redis_client: redis.Redis
) -> None:
    headers = {**bearer(make_token(redis_client)), "Origin": "https://tool.example"}
    assert auth_client.put("/d/", json=ENTRY, headers=headers).status_code == 200


def test_a_cookie_write_without_an_x_header_is_still_refused(logged_in: FlaskClient) -> None:
    logged_in.environ_base.pop("HTTP_X_REQUESTED_WITH")
    response = logged_in.put("/d/", data=b"{}", content_type="text/plain")
    assert response.json["error"]["code"] == "missing_csrf_header"  # type: ignore[index]


def test_disabled_users_can_not_log_in(login_client: FlaskClient, real_redis: redis.Redis) -> None:
    credentials = Credentials(real_redis)
    credentials.add_user("alice", "s3cret")
    credentials.disable("alice")
    response = login_client.post("/d/?_login", headers=basic("alice", "s3cret"))
    assert response.status_code == 401


def test_add_user_helper_gives_the_uid(redis_client: redis.Redis) -> None:
    assert add_user(redis_client, "alice") == "1"


def test_login_session_and_logout_on_every_redis(
    auth_client: FlaskClient, redis_client: redis.Redis
) -> None:
    Credentials(redis_client).add_user("alice", "s3cret", ["sales"])
    assert auth_client.post("/d/?_login", headers=basic("alice", "s3cret")).status_code == 200
    whoami = auth_client.get("/d/?_whoami").json
    assert whoami["feed"]["entry"][0]["category"] == [{"___term": "/_group/sales"}]  # type: ignore[index]
    Credentials(redis_client).add_to_group("ops", "alice")  # ends the session: log in again
    assert auth_client.get("/d/?_uid").json["error"]["code"] == "session_expired"  # type: ignore[index]
    assert auth_client.post("/d/?_login", headers=basic("alice", "s3cret")).status_code == 200
    assert auth_client.post("/d/?_logout").status_code == 200
    assert auth_client.get("/d/?_uid").status_code == 401


# -- a token write is authenticated inside its transaction (credentials.DeferredToken) ---------

WRITES = [
    ("PUT", "/d/", ENTRY),
    ("POST", "/d/", ENTRY),
    ("PATCH", "/d/a", {"title": "u"}),
    ("DELETE", "/d/a", None),
]


@pytest.mark.parametrize(("method", "url", "sent"), WRITES, ids=[w[0] for w in WRITES])
@pytest.mark.parametrize(
    ("token", "code"),
    [
        (lambda r: "fst_" + "a" * 12 + "_" + "b" * 43, "invalid_token"),
        (revoked, "invalid_token"),
        (expired, "token_expired"),
    ],
    ids=["unknown", "revoked", "expired"],
)
def test_a_bad_token_on_a_write_is_401_and_nothing_is_written(
    auth_client: FlaskClient,
    redis_client: redis.Redis,
    method: str,
    url: str,
    sent: Any,
    token: Any,
    code: str,
) -> None:
    good = bearer(make_token(redis_client, "bob"))
    assert auth_client.put("/d/", json={**ENTRY, "title": "kept"}, headers=good).status_code == 200
    response = auth_client.open(url, method=method, json=sent, headers=bearer(token(redis_client)))
    assert (response.status_code, response.json) == (401, body(code))
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="feedstore"'
    entries = auth_client.get("/d/?f", headers=good).json["feed"]["entry"]  # type: ignore[index]
    assert [(e["link"][0]["___href"], e["title"]) for e in entries] == [("/a", "kept")]


@pytest.mark.parametrize(
    ("method", "url", "sent", "headers"),
    [
        ("PUT", "/d/", b"{not json", {}),  # 400 from the body
        ("PUT", "/d/", {**ENTRY, "link": [{"___href": "a", "___rel": "self"}]}, {}),  # bad key
        ("PUT", "/d/a?_nonsense", ENTRY, {}),  # an unknown option
        ("PUT", "/d/a", ENTRY, {"If-Match": "x"}),  # a bad precondition
        ("DELETE", "/d/", [ENTRY, ENTRY], {}),  # a key twice (the store refuses it)
    ],
    ids=["body", "key", "option", "if-match", "twice"],
)
def test_a_bad_tokens_401_outranks_any_other_error_of_a_write(
    auth_client: FlaskClient, redis_client: redis.Redis, method: str, url: str, sent: Any,
    headers: dict[str, str],
) -> None:  # fmt: skip
    token = bearer("fst_" + "a" * 12 + "_" + "b" * 43)
    data = sent if isinstance(sent, bytes) else None
    json_body = None if data is not None else sent
    response = auth_client.open(
        url, method=method, data=data, json=json_body, headers={**token, **headers},
        content_type="application/json",
    )  # fmt: skip
    assert (response.status_code, response.json) == (401, body("invalid_token"))
    # The same request with a good token meets the other error.
    good = {**bearer(make_token(redis_client)), **headers}
    response = auth_client.open(
        url, method=method, data=data, json=json_body, headers=good,
        content_type="application/json",
    )  # fmt: skip
    assert 400 <= response.status_code < 500 and response.status_code != 401


def test_a_token_write_is_its_users_and_costs_no_round_trip_of_its_own(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a single Redis (on a cluster the token's record is in another slot: read before).
    client = create_app({"default_acl": OPEN_ACL, "auth": "on"}, real_redis).test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    token = make_token(real_redis, "alice")
    assert client.put("/d/", json=ENTRY, headers=bearer(token)).status_code == 200
    assert real_redis.hget(f"fs:tok:{token[4:16]}", "last_used")  # noted after the write
    sends: list[Any] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sends.append(command)
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    sent = {**ENTRY, "id": "/a,1", "title": "again"}
    response = client.put("/d/", json=sent, headers=bearer(token))
    monkeypatch.undo()
    assert response.status_code == 200
    # WATCH with HGETALL of the token's record and MGET; then MULTI ... EXEC.
    assert len(sends) == 2
    assert b"HGETALL" in b"".join(sends[0])
    stored = client.get("/d/a?e", headers=bearer(token)).json["feed"]["entry"][0]  # type: ignore[index]
    assert stored["title"] == "again"
    assert stored["author"][-1]["uri"] == "urn:feedstore:updated:1"  # uid 1: alice
