"""commit.py's MULTI/EXEC on a real Redis (and redis-py's own for every other pipeline)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from feedstore import commit as commit_module
from feedstore.commit import commit


def watching(client: redis.Redis, *keys: str) -> Any:
    pipe = client.pipeline(transaction=True)
    pipe.watch(*keys)
    pipe.mget(*keys)
    pipe.multi()
    return pipe


def test_commit_runs_what_was_queued_and_gives_the_connection_back(
    real_redis: redis.Redis,
) -> None:
    pipe = watching(real_redis, "c:a")
    pipe.execute_command("MSET", "c:a", b"1", "c:b", b"2")
    pipe.zadd("c:z", {"m": 0})
    pipe.execute_command("XADD", "c:s", "*", "k", "/a", "r", 3)
    pipe.set("c:t", b"x", ex=60)
    commit(pipe)
    assert real_redis.mget("c:a", "c:b") == [b"1", b"2"]
    assert real_redis.zrange("c:z", 0, -1) == [b"m"]
    assert [fields for _, fields in real_redis.xrange("c:s") or []] == [{b"k": b"/a", b"r": b"3"}]
    assert 0 < real_redis.ttl("c:t") <= 60
    assert pipe.connection is None and not pipe.watching and pipe.command_stack == []
    assert real_redis.connection_pool._in_use_connections == set()


def test_a_watched_key_changed_is_a_watch_error_and_nothing_is_written(
    real_redis: redis.Redis,
) -> None:
    real_redis.set("c:w", b"before")
    pipe = watching(real_redis, "c:w")
    real_redis.set("c:w", b"someone else")
    pipe.set("c:w", b"mine")
    pipe.set("c:other", b"mine")
    with pytest.raises(redis.WatchError):
        commit(pipe)
    assert real_redis.get("c:w") == b"someone else" and real_redis.get("c:other") is None
    # The connection went back clean: the next transaction on it is not watching c:w.
    again = watching(real_redis, "c:x")
    real_redis.set("c:w", b"changed again")
    again.set("c:x", b"1")
    commit(again)
    assert real_redis.get("c:x") == b"1"


def test_a_command_redis_refuses_when_queued_aborts_the_whole_transaction(
    real_redis: redis.Redis,
) -> None:
    pipe = watching(real_redis, "c:q")
    pipe.set("c:q", b"1")
    pipe.execute_command("SET", "c:q")  # wrong number of arguments: refused at MULTI time
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        commit(pipe)
    assert real_redis.get("c:q") is None
    assert real_redis.ping()


def test_a_command_that_fails_in_exec_is_raised(real_redis: redis.Redis) -> None:
    real_redis.set("c:string", b"not a set")
    pipe = watching(real_redis, "c:string")
    pipe.sadd("c:string", "member")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        commit(pipe)


def test_a_lost_connection_is_raised_as_such_not_as_a_conflict(real_redis: redis.Redis) -> None:
    """redis-py's own execute turns it into a WatchError, which a caller retries: the
    transaction might then run twice. commit drops the connection and raises it."""
    pipe = watching(real_redis, "c:lost")
    pipe.set("c:lost", b"1")
    assert pipe.connection is not None
    killed = real_redis.client_kill_filter(_id=str(_client_id(pipe)))
    assert killed == 1
    with pytest.raises(redis.ConnectionError):
        commit(pipe)
    assert real_redis.get("c:lost") is None
    assert pipe.connection is None and not pipe.watching


def test_arguments_hiredis_cannot_pack_go_through_redis_py(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = watching(real_redis, "c:m")
    pipe.execute_command("SET", "c:m", memoryview(b"viewed"))
    commit(pipe)
    assert real_redis.get("c:m") == b"viewed"
    monkeypatch.setattr(commit_module, "pack_command", None)  # no hiredis
    pipe = watching(real_redis, "c:m")
    pipe.set("c:m", b"packed by redis-py")
    commit(pipe)
    assert real_redis.get("c:m") == b"packed by redis-py"


def test_other_pipelines_run_their_own_execute(redis_client: redis.Redis) -> None:
    """A cluster's (not a redis-py Pipeline) and one that never WATCHed (no connection yet)
    commit as they always did, on every kind of Redis."""
    pipe = redis_client.pipeline(transaction=True)
    pipe.set("{c}:plain", b"1")
    commit(pipe)
    assert redis_client.get("{c}:plain") == b"1"


def _client_id(pipe: Any) -> int:
    pipe.connection.send_command("CLIENT", "ID")
    return int(pipe.connection.read_response())


@pytest.mark.parametrize(
    "args",
    [
        ("MSET", "k", b"v"),
        ("MSET", *(f"fs:d:/bench/{n:08d}" for n in range(40))),
        ("MSET", *(x for n in range(60) for x in (f"/é/{n}", ("ü" * 700).encode()))),
        ("MSET", *(x for n in range(50) for x in (f"/k/{n}", b"\r\n$3\r\n" * 200))),
        ("MSET", *(x for n in range(50) for x in (f"/k/{n}", b""))),
        ("MSET", *(x for n in range(40) for x in (f"/r/{n}", n - 20, f"/d/{n}", b"d" * 900))),
        ("ZADD", "/c", *(x for n in range(40) for x in (0, f"/c/{n}"))),
        ("MSET", "/d/0", b"d" * 5000, *(x for n in range(20) for x in (f"/d/{n}", b"e" * 4095))),
    ],
)
def test_large_commands_are_packed_exactly_as_hiredis_packs_them(args: tuple[Any, ...]) -> None:
    assert commit_module.pack_command is not None
    assert commit_module._joined(args) == commit_module.pack_command(args)
    assert commit_module._pack(args) == commit_module.pack_command(args)


def test_a_large_command_with_other_arguments_is_packed_by_hiredis() -> None:
    assert commit_module.pack_command is not None
    for value in (memoryview(b"v" * 1000), 1.5):
        for args in (
            ("MSET", *(x for n in range(40) for x in (f"/k/{n}", value))),
            ("MSET", "/k", b"d" * 1000, *(x for n in range(40) for x in (f"/k/{n}", value))),
        ):
            with pytest.raises(TypeError):
                commit_module._joined(args)
            assert commit_module._pack(args) == commit_module.pack_command(args)


def test_a_large_transaction_commits_every_argument(real_redis: redis.Redis) -> None:
    documents = {f"c:big:{n}": f"{n}:{'ü' * 600}".encode() for n in range(300)}
    pipe = watching(real_redis, "c:big:0")
    pipe.mset(documents)
    pipe.zadd("c:bigz", {key: 0 for key in documents})
    commit(pipe)
    assert real_redis.mget(list(documents)) == list(documents.values())
    assert real_redis.zcard("c:bigz") == len(documents)
