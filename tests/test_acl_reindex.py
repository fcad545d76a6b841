"""acl_reindex.py and `feedstore acl reindex`: mirrors built for data written with auth off."""

from __future__ import annotations

import orjson
import pytest
import redis

from feedstore import acl, acl_reindex
from feedstore.cli import main
from feedstore.embedded import EmbeddedRedis
from feedstore.errors import AccessDenied
from feedstore.principal import Principal
from feedstore.store import Store
from tests.conftest import put

DEFAULT = acl.parse_setting("urn:vte.cx:acl:+,CRUD")
BOB = Principal("8", "bob")


def owned_by_alice() -> list[dict[str, str]]:
    return [{"uri": "urn:vte.cx:acl:7,CRUD"}]


def test_reindex_mirrors_what_auth_off_wrote(redis_client: redis.Redis) -> None:
    Store(redis_client).write([put("/a"), put("/a/1", contributor=owned_by_alice())])
    guarded = Store(redis_client, default_acl=DEFAULT)
    guarded.write([put("/a/1", title="unmirrored: bob passes")], BOB)
    assert acl_reindex.reindex(Store(redis_client)) == (2, 1)
    assert orjson.loads(redis_client.get(guarded.keys.acl_key("/a/1"))) == [["7", "CRUD"]]
    assert redis_client.smembers(guarded.keys.acl_children_key("/a")) == {b"/a/1"}
    with pytest.raises(AccessDenied):
        guarded.write([put("/a/1", title="now denied")], BOB)


def test_reindex_drops_stale_mirrors(redis_client: redis.Redis) -> None:
    store = Store(redis_client)
    store.write([put("/a"), put("/a/1")])
    redis_client.set(store.keys.acl_key("/a/1"), b'[["8","R"]]')
    assert acl_reindex.reindex(store) == (2, 0)
    assert redis_client.get(store.keys.acl_key("/a/1")) is None


def test_the_command_reindexes_and_names_an_invalid_acl(
    redis_server: EmbeddedRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    store = Store(client)
    store.write([put("/a", contributor=owned_by_alice())])
    assert main(["acl", "reindex", "--redis-url", redis_server.url]) == 0
    assert capsys.readouterr().out == "acl reindex: 1 entries read, 1 with an ACL\n"
    store.write([put("/b")])  # then made invalid behind the API's back (an older version's data)
    document = orjson.loads(client.get(store.keys.document_key("/b")))
    document["contributor"] = [{"uri": "urn:vte.cx:acl:+,CRUZ"}]
    client.set(store.keys.document_key("/b"), orjson.dumps(document))
    assert main(["acl", "reindex", "--redis-url", redis_server.url]) == 1
    assert "/b: ACL is invalid: urn:vte.cx:acl:+,CRUZ" in capsys.readouterr().err
    client.close()
