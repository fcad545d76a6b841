"""Authorization inside the write transaction (Store.write with auth on, API.md §16.3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from feedstore import acl
from feedstore.credentials import Credentials, DeferredToken
from feedstore.errors import (
    AccessDenied,
    EntryErrors,
    InvalidAcl,
    InvalidToken,
    RevisionConflict,
    TokenExpired,
    Unauthorized,
)
from feedstore.principal import ANONYMOUS, Principal
from feedstore.schema import Schema
from feedstore.store import Action, Store, Write
from tests.conftest import put, snapshot, stored

DEFAULT = acl.parse_setting("urn:vte.cx:acl:/_group/$admin,CRUD")
ADMIN = Principal("1", "root", frozenset({"/_group/$admin"}))
ALICE = Principal("7", "alice")
BOB = Principal("8", "bob")


def contributors(*uris: str) -> list[dict[str, str]]:
    return [{"uri": uri} for uri in uris]


def enrol(client: Any, *principals: Principal) -> None:
    """Record the principals' groups where writes read them (authentication's fs:ug:<uid>)."""
    for principal in principals:
        client.set(f"fs:ug:{principal.uid}", orjson.dumps(sorted(principal.groups)))


@pytest.fixture
def guarded(redis_client: redis.Redis) -> Store:
    """A Store with auth on, /a readable by all, writable by alice (uid 7)."""
    store = Store(redis_client, default_acl=DEFAULT)
    enrol(redis_client, ADMIN)
    acl_of_a = contributors("urn:vte.cx:acl:+,R", "urn:vte.cx:acl:7,CRUD")
    store.write([put("/a", contributor=acl_of_a)], ADMIN)
    return store


def test_a_caller_with_the_right_writes(guarded: Store) -> None:
    guarded.write([put("/a/1", title="x")], ALICE)
    assert stored(guarded, "/a/1")["title"] == "x"
    guarded.write([put("/a/1", title="y")], ALICE)
    guarded.write([Write(Action.DELETE, "/a/1")], ALICE)
    assert guarded.get("/a/1") is None


@pytest.mark.parametrize(
    "write",
    [
        put("/a/1"),
        Write(Action.CREATE, "/a/2"),
        Write(Action.PATCH, "/a/3", upsert=True, patcher=lambda f, s: {"title": "p"}),
    ],
)
def test_creating_needs_c(guarded: Store, write: Write) -> None:
    before = snapshot(guarded.redis)
    with pytest.raises(AccessDenied) as caught:
        guarded.write([write], BOB)
    assert caught.value.to_dict()["right"] == "C" and caught.value.key == write.key
    assert snapshot(guarded.redis) == before


def test_updating_needs_u_and_deleting_d(guarded: Store) -> None:
    guarded.write([put("/a/1")], ALICE)
    with pytest.raises(AccessDenied) as caught:
        guarded.write([put("/a/1", title="no")], BOB)
    assert caught.value.right == "U"
    with pytest.raises(AccessDenied) as caught:
        guarded.write([Write(Action.DELETE, "/a/1")], BOB)
    assert caught.value.right == "D"


def test_an_anonymous_caller_denied_is_asked_to_authenticate(guarded: Store) -> None:
    with pytest.raises(Unauthorized) as caught:
        guarded.write([put("/a/1")], ANONYMOUS)
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_no_acl_on_the_path_is_the_default_acl(guarded: Store) -> None:
    with pytest.raises(AccessDenied):
        guarded.write([put("/b")], ALICE)
    guarded.write([put("/b")], ADMIN)


def test_403_outranks_every_other_error_and_names_only_denied_keys(guarded: Store) -> None:
    guarded.write([put("/a/1")], ALICE)
    locked = contributors("urn:vte.cx:acl:8,CRUD")
    guarded.write([put("/a/locked", contributor=locked), put("/a/locked/1")], ADMIN)
    with pytest.raises(EntryErrors) as caught:
        # /a/1 at a stale revision (409) and /a/missing/x without parent (400): both allowed
        # to alice; /a/locked/1 and /a/locked/2 denied.
        guarded.write(
            [put("/a/1", 5), put("/a/missing/x"), put("/a/locked/1"), put("/a/locked/2")], ALICE
        )
    body = caught.value.to_dict()
    assert (body["status"], body["code"], body["right"]) == (403, "access_denied", "U")
    assert [entry["key"] for entry in body["entries"]] == ["/a/locked/1", "/a/locked/2"]
    assert [entry["right"] for entry in body["entries"]] == ["U", "C"]


def test_changing_an_existing_acl_needs_a(guarded: Store) -> None:
    guarded.write([put("/a/1", contributor=contributors("urn:vte.cx:acl:7,CRUD"))], ALICE)
    with pytest.raises(AccessDenied) as caught:
        guarded.write([put("/a/1", contributor=contributors("urn:vte.cx:acl:*,CRUD"))], ALICE)
    assert caught.value.right == "A"
    guarded.write([put("/a/1", title="same acl")], ALICE)  # the ACL kept: no A needed
    own = contributors("urn:vte.cx:acl:7,CRUDA")
    guarded.write([put("/a/1", contributor=own)], ADMIN)
    guarded.write([put("/a/1", contributor=contributors("urn:vte.cx:acl:7,CRUDA", "x:y"))], ALICE)


def test_creating_with_an_acl_needs_only_c(guarded: Store) -> None:
    guarded.write([put("/a/1", contributor=contributors("urn:vte.cx:acl:7,CRUD"))], ALICE)
    mirror = guarded.redis.get(guarded.keys.acl_key("/a/1"))
    assert orjson.loads(mirror) == [["7", "CRUD"]]
    assert guarded.redis.smembers(guarded.keys.acl_children_key("/a")) == {b"/a/1"}


def test_an_invalid_acl_is_400(guarded: Store) -> None:
    with pytest.raises(InvalidAcl) as caught:
        guarded.write([put("/a/1", contributor=contributors("urn:vte.cx:acl:+,CRUZ"))], ALICE)
    assert (caught.value.key, caught.value.field) == ("/a/1", "contributor[0].uri")


def test_mirrors_follow_updates_and_deletes(guarded: Store) -> None:
    keys = guarded.keys
    guarded.write([put("/a/1", contributor=contributors("urn:vte.cx:acl:8,R"))], ADMIN)
    guarded.write([put("/a/1", contributor=[])], ADMIN)
    assert guarded.redis.get(keys.acl_key("/a/1")) is None
    assert guarded.redis.smembers(keys.acl_children_key("/a")) == set()
    guarded.write([put("/a/2", contributor=contributors("urn:vte.cx:acl:8,R"))], ADMIN)
    guarded.write([Write(Action.DELETE, "/a", recursive=True)], ADMIN)
    assert guarded.redis.get(keys.acl_key("/a/2")) is None
    assert guarded.redis.get(keys.acl_key("/a")) is None
    assert guarded.redis.exists(keys.acl_children_key("/a")) == 0


def test_a_recursive_delete_needs_d_on_each_descendant_with_its_own_acl(guarded: Store) -> None:
    guarded.write([put("/a/1"), put("/a/1/x")], ALICE)
    locked = contributors("urn:vte.cx:acl:8,CRUD")
    guarded.write([put("/a/1/y", contributor=locked)], ADMIN)
    with pytest.raises(AccessDenied) as caught:
        guarded.write([Write(Action.DELETE, "/a/1", recursive=True)], ALICE)
    assert caught.value.key == "/a/1/y"
    with pytest.raises(AccessDenied):
        guarded.write([Write(Action.CLEAR, "/a/1")], ALICE)
    assert guarded.get("/a/1/x") is not None


def test_current_goes_only_to_a_caller_who_may_read(guarded: Store) -> None:
    drop_box = contributors("urn:vte.cx:acl:+,CU", "urn:vte.cx:acl:7,CRUD")
    guarded.write([put("/box", contributor=drop_box)], ADMIN)
    guarded.write([put("/box/1", secret="s")], ALICE)
    with pytest.raises(RevisionConflict) as caught:
        guarded.write([put("/box/1", revision=9)], BOB)
    assert caught.value.current is None and "current" not in caught.value.to_dict()
    with pytest.raises(RevisionConflict) as caught:
        guarded.write([put("/box/1", revision=9)], ALICE)
    assert caught.value.current is not None


def test_the_groups_are_read_in_the_transaction(guarded: Store) -> None:
    guarded.write([put("/g", contributor=contributors("urn:vte.cx:acl:/_group/sales,CRUD"))], ADMIN)
    with pytest.raises(AccessDenied):
        guarded.write([put("/g/1")], BOB)
    guarded.redis.set("fs:ug:8", orjson.dumps(["/_group/sales"]))
    guarded.write([put("/g/1")], BOB)


def test_with_auth_off_nothing_is_checked_nor_mirrored(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    store.write([put("/a", contributor=contributors("urn:vte.cx:acl:7,R"))], BOB)
    store.write([put("/a", contributor=[])], ANONYMOUS)
    assert store.redis.get(store.keys.acl_key("/a")) is None


class Interleaved(Store):
    """A Store that runs `between` once, after its transaction has WATCHed and read (the
    schema is looked up last in the read), before it decides and EXECs."""

    def __init__(self, client: Any, between: Callable[[], None]) -> None:
        super().__init__(client, default_acl=DEFAULT)
        self.between: Callable[[], None] | None = between
        self.reads = 0

    def _schema_at(self, version: bytes | None) -> Schema | None:
        self.reads += 1
        if self.between is not None:
            between, self.between = self.between, None
            between()
        return super()._schema_at(version)


def test_a_revoke_between_read_and_exec_aborts_the_write(real_redis: redis.Redis) -> None:
    admin_store = Store(real_redis, default_acl=DEFAULT)
    enrol(real_redis, ADMIN)
    admin_store.write([put("/a", contributor=contributors("urn:vte.cx:acl:7,CRUD"))], ADMIN)
    other = redis.Redis(connection_pool=real_redis.connection_pool)

    def revoke() -> None:  # another client, between A's WATCH and A's EXEC
        Store(other, default_acl=DEFAULT).write(
            [put("/a", contributor=contributors("urn:vte.cx:acl:8,CRUD"))], ADMIN
        )

    store = Interleaved(real_redis, revoke)
    with pytest.raises(AccessDenied):
        store.write([put("/a/1", title="late")], ALICE)
    assert store.reads >= 2  # the first EXEC failed (WatchError) and the retry answered 403
    assert store.get("/a/1") is None


def test_a_group_removal_between_read_and_exec_aborts_the_write(
    real_redis: redis.Redis,
) -> None:
    admin_store = Store(real_redis, default_acl=DEFAULT)
    enrol(real_redis, ADMIN)
    acl_of_g = contributors("urn:vte.cx:acl:/_group/sales,CRUD")
    admin_store.write([put("/g", contributor=acl_of_g)], ADMIN)
    real_redis.set("fs:ug:7", orjson.dumps(["/_group/sales"]))

    def remove() -> None:
        redis.Redis(connection_pool=real_redis.connection_pool).set("fs:ug:7", b"[]")

    store = Interleaved(real_redis, remove)
    with pytest.raises(AccessDenied):
        store.write([put("/g/1")], ALICE)
    assert store.reads >= 2
    assert store.get("/g/1") is None


# -- a token authenticated inside the write's transaction (credentials.DeferredToken) ----------


def test_a_group_removal_racing_a_token_write_aborts_it(real_redis: redis.Redis) -> None:
    admin_store = Store(real_redis, default_acl=DEFAULT)
    enrol(real_redis, ADMIN)
    acl_of_g = contributors("urn:vte.cx:acl:/_group/sales,CRUD")
    admin_store.write([put("/g", contributor=acl_of_g)], ADMIN)
    credentials = Credentials(real_redis)
    credentials.add_user("alice", None, ["sales"])
    token, _ = credentials.create_token("alice")
    other = Credentials(redis.Redis(connection_pool=real_redis.connection_pool))
    store = Interleaved(real_redis, lambda: other.remove_from_group("sales", "alice"))
    deferred = DeferredToken(credentials, token)
    with pytest.raises(AccessDenied):
        store.write([put("/g/1")], token=deferred)
    assert store.reads >= 2  # the token's record changed: EXEC failed, the retry answered 403
    assert store.get("/g/1") is None
    assert deferred.principal is not None and deferred.principal.account == "alice"


def test_a_token_revoked_racing_its_write_is_401(real_redis: redis.Redis) -> None:
    enrol(real_redis, ADMIN)
    acl_of_g = contributors("urn:vte.cx:acl:/_group/sales,CRUD")
    Store(real_redis, default_acl=DEFAULT).write([put("/g", contributor=acl_of_g)], ADMIN)
    credentials = Credentials(real_redis)
    credentials.add_user("alice", None, ["sales"])
    token, info = credentials.create_token("alice")
    other = Credentials(redis.Redis(connection_pool=real_redis.connection_pool))
    store = Interleaved(real_redis, lambda: other.revoke_token(info.id))
    retries: list[int] = []
    store.on_retry = lambda: retries.append(1)
    with pytest.raises(InvalidToken):
        store.write([put("/g/1")], token=DeferredToken(credentials, token))
    assert retries  # the record went: EXEC failed, the retry read no token
    assert store.get("/g/1") is None


def test_a_token_write_decides_401_before_any_other_error(redis_client: redis.Redis) -> None:
    store = Store(redis_client, default_acl=DEFAULT)
    enrol(redis_client, ADMIN)
    store.write([put("/a", title="x")], ADMIN)
    credentials = Credentials(redis_client)
    credentials.add_user("alice", None)
    token, info = credentials.create_token("alice", expires_in=-1)
    before = store.get("/a")
    # A conflict and a denial (alice has no right on /a) both lose to the expired token.
    with pytest.raises(TokenExpired):
        store.write([put("/a", revision=9)], token=DeferredToken(credentials, token))
    credentials.revoke_token(info.id)
    with pytest.raises(InvalidToken):
        store.write([put("/a", title="y")], token=DeferredToken(credentials, token))
    assert store.get("/a") == before
