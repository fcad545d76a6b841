"""feedstore check: each kind of damage injected by hand is found, and --repair mends it."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from feedstore import cli
from feedstore.app import create_app
from feedstore.check import Checker
from feedstore.embedded import EmbeddedRedis
from feedstore.keys import KeyScheme
from feedstore.store import Store
from tests.conftest import make_token

KEYS = KeyScheme()
SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "x-index": True}}}
JSON = {"X-Requested-With": "XMLHttpRequest"}


def entry(key: str, **fields: Any) -> dict[str, Any]:
    return {"link": [{"___href": key, "___rel": "self"}], **fields}


def seeded(client: redis.Redis, auth: bool = False) -> FlaskClient:
    """A small store written through the API: /p, its children with an indexed score, one
    with an alias, and (auth on) one with an ACL."""
    Store(client).set_schema(SCHEMA)
    web = create_app({"auth": "on" if auth else "off"}, client).test_client()
    web.environ_base.update(HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    if auth:
        web.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {make_token(client, 'root', admin=True)}"
    assert web.put("/d/p", json=entry("/p")).status_code == 200
    assert web.put("/d/q", json=entry("/q")).status_code == 200
    children = [entry(f"/p/{n}", score=n) for n in range(3)]
    children[1]["link"].append({"___href": "/p/one", "___rel": "alternate"})
    if auth:
        children[2]["contributor"] = [{"uri": "urn:vte.cx:acl:+,R"}]
    assert web.put("/d/", json={"feed": {"entry": children}}).status_code == 200
    return web


def damages(client: redis.Redis, auth: bool = False) -> list[str]:
    checker = Checker(client, KEYS, Store(client).schema(), auth_on=auth)
    return sorted(map(str, checker.run()))


def repaired(client: redis.Redis, auth: bool = False) -> list[str]:
    checker = Checker(client, KEYS, Store(client).schema(), auth_on=auth)
    return sorted(str(d) for d in list(checker.run()) if checker.repair(d))


def test_a_store_written_by_feedstore_is_clean(redis_client: redis.Redis) -> None:
    seeded(redis_client)
    assert damages(redis_client) == []


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        (
            lambda r: r.zrem("fs:{/p}:c:/p", "/p/0"),
            "missing child of /p/0: /p/0 in fs:{/p}:c:/p",
        ),
        (
            lambda r: r.zadd("fs:{/p}:c:/p", {"/p/gone": 0}),
            "stale child: /p/gone in fs:{/p}:c:/p (no entry needs it)",
        ),
        (
            lambda r: r.zrem("fs:{/p}:i:score:/p", r.zrange("fs:{/p}:i:score:/p", 0, 0)[0]),
            "missing index of /p/0: ",
        ),
        (
            lambda r: r.zadd("fs:{/p}:i:score:/p", {b"bogus\x00/p/7": 0}),
            "stale index: bogus\x00/p/7 in fs:{/p}:i:score:/p (no entry needs it)",
        ),
        (lambda r: r.delete("fs:{/p}:a:/p/one"), "missing alias of /p/1: /p/1 in fs:{/p}:a:/p/one"),
        (
            lambda r: r.set("fs:{/p}:a:/p/two", "/p/1"),
            "stale alias: /p/1 in fs:{/p}:a:/p/two (no entry needs it)",
        ),
        (lambda r: r.set("fs:{/p}:r:/p/2", 9), "missing revision of /p/2: 1 in fs:{/p}:r:/p/2"),
    ],
)
@pytest.mark.single_redis
def test_each_kind_of_damage_is_found_and_mended(
    real_redis: redis.Redis, damage: Any, found: str
) -> None:
    seeded(real_redis)
    damage(real_redis)
    [reported] = damages(real_redis)
    assert reported.startswith(found)
    assert repaired(real_redis) == [reported]
    assert damages(real_redis) == []


def test_acl_mirrors_are_checked_with_auth_on(real_redis: redis.Redis) -> None:
    seeded(real_redis, auth=True)
    assert damages(real_redis, auth=True) == []
    real_redis.delete("fs:{/p}:acl:/p/2")
    real_redis.set("fs:{/p}:acl:/p/0", b'[["+","R"]]')
    assert damages(real_redis, auth=True) == [
        'missing ACL mirror of /p/2: [["+","R"]] in fs:{/p}:acl:/p/2',
        'stale ACL mirror: [["+","R"]] in fs:{/p}:acl:/p/0 (no entry needs it)',
    ]
    assert len(repaired(real_redis, auth=True)) == 2
    assert damages(real_redis, auth=True) == []


def test_a_repair_never_undoes_a_write_made_since_the_check(real_redis: redis.Redis) -> None:
    """A child member looks stale; before the repair, the entry is written: left alone."""
    web = seeded(real_redis)
    real_redis.zadd("fs:{/p}:c:/p", {"/p/new": 0})
    checker = Checker(real_redis, KEYS, Store(real_redis).schema(), auth_on=False)
    [stale] = list(checker.run())
    assert web.put("/d/p/new", json=entry("/p/new", score=5)).status_code == 200
    assert checker.repair(stale) is False
    assert real_redis.zscore("fs:{/p}:c:/p", "/p/new") == 0
    assert damages(real_redis) == []


def test_the_command_reports_repairs_and_exits_0_when_clean(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with EmbeddedRedis(tmp_path / "redis", persistent=False) as server:
        client = redis.Redis.from_url(server.url)
        seeded(client)
        client.zrem("fs:{/p}:c:/p", "/p/0")
        assert cli.main(["check", "--redis-url", server.url]) == 1
        assert "missing child of /p/0" in capsys.readouterr().out
        assert cli.main(["check", "--redis-url", server.url, "--repair"]) == 0
        assert "- repaired" in capsys.readouterr().out
        assert cli.main(["check", "--redis-url", server.url]) == 0
        assert capsys.readouterr().out.strip().endswith("0 disagreements, 0 repaired")
        client.close()
