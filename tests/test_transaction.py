"""The write transaction under contention: a second client writes between WATCH and EXEC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from feedstore import alias, transaction, watch
from feedstore.entry import EntryId
from feedstore.errors import FeedstoreError, NotFound, RevisionConflict, ServiceUnavailable
from feedstore.keys import KeyScheme
from feedstore.store import Action, Store, Write
from tests.conftest import put, stored

KEYS = KeyScheme()


def interleave(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> list[int]:
    """Run `action` (another client's write) once, between the store's WATCH and its EXEC."""
    calls: list[int] = []
    original = transaction.timestamp

    interleaving: list[bool] = []

    def timestamp_then_interleave() -> str:
        if not interleaving:  # the other writer's own call is not the store's
            calls.append(1)
            if len(calls) == 1:
                interleaving.append(True)
                action()
                interleaving.clear()
        return original()

    monkeypatch.setattr(transaction, "timestamp", timestamp_then_interleave)
    return calls


def second_client(client: redis.Redis) -> redis.Redis:
    """Another connection to the same server, as a second writer would have."""
    pool = client.connection_pool
    return redis.Redis(
        connection_pool=redis.ConnectionPool(pool.connection_class, **pool.connection_kwargs)
    )


def test_forced_write_retries_after_a_writer_slips_in(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(real_redis)
    store.write([put("/a", x=0, y=0)])
    other = Store(second_client(real_redis))
    calls = interleave(monkeypatch, lambda: other.write([put("/a", y=1)]) and None)
    written = store.write([put("/a", x=1)])
    assert len(calls) == 2, "the first EXEC must fail with WatchError and the check run again"
    assert written[0].revision == 3
    document = stored(store, "/a")
    assert (document["x"], document["y"]) == (1, 1), "neither writer's field is lost"
    other.redis.close()


def test_stale_revision_after_a_writer_slips_in_is_409_not_a_retry(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(real_redis)
    store.write([put("/a", x=0)])
    other = second_client(real_redis)
    interleave(monkeypatch, lambda: Store(other).write([put("/a", x=5)]) and None)
    with pytest.raises(RevisionConflict) as caught:
        store.write([put("/a", 1, x=1)])
    assert caught.value.current is not None and caught.value.current["x"] == 5
    assert stored(store, "/a")["id"] == "/a,2"
    other.close()


def test_watch_error_is_really_raised_by_redis(real_redis: redis.Redis) -> None:
    """The mechanism the store relies on, shown directly as redis-py's own test does."""
    real_redis.set(KEYS.document_key("/a"), b"1")
    other = second_client(real_redis)
    with real_redis.pipeline() as pipe:
        pipe.watch(KEYS.document_key("/a"))
        other.set(KEYS.document_key("/a"), b"2")
        pipe.multi()
        pipe.set(KEYS.document_key("/a"), b"3")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert real_redis.get(KEYS.document_key("/a")) == b"2"
    other.close()


def test_endless_contention_becomes_503(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(real_redis, retries=3)
    store.write([put("/a")])
    other = second_client(real_redis)
    document = real_redis.get(KEYS.document_key("/a"))
    # What every writer of /a does in its MULTI: its document, and its revision key (which is
    # what a transaction watches).
    monkeypatch.setattr(
        transaction,
        "timestamp",
        lambda: other.mset({KEYS.document_key("/a"): document, KEYS.revision_key("/a"): 1}) and "t",
    )
    with pytest.raises(ServiceUnavailable) as caught:
        store.write([put("/a", x=1)])
    assert caught.value.headers["Retry-After"] == "1"
    other.close()


# An entry is watched through its revision key alone (transaction.py): each kind of change to its
# document or alias mapping, made between WATCH and EXEC, must still fail the EXEC.


def test_a_delete_slipping_in_is_seen_not_overwritten(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(real_redis)
    store.write([put("/a", x=0)])
    other = Store(second_client(real_redis))
    calls = interleave(monkeypatch, lambda: other.write([Write(Action.DELETE, "/a")]) and None)
    with pytest.raises(NotFound):
        store.write([put("/a", 1, x=1)])
    assert len(calls) == 2
    assert store.get("/a") is None
    assert real_redis.get(KEYS.revision_key("/a")) == b"1", "a delete keeps the revision"
    other.redis.close()


def test_a_subtree_delete_slipping_in_is_seen(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(real_redis)
    store.write([put("/a"), put("/a/b", x=0)])
    other = Store(second_client(real_redis))
    removal = Write(Action.DELETE, "/a", recursive=True)
    interleave(monkeypatch, lambda: other.write([removal]) and None)
    with pytest.raises(NotFound):
        store.write([put("/a/b", 1, x=1)])
    assert store.get("/a/b") is None
    other.redis.close()


def test_an_alias_taking_the_key_slipping_in_is_seen(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(real_redis)
    store.write([put("/a"), put("/b"), put("/a/1", title="t")])
    other = Store(second_client(real_redis))
    aliasing = Write(Action.PATCH, "/a/1", patcher=alias.adding(["/b/x"]))
    interleave(monkeypatch, lambda: other.write([aliasing]) and None)
    store.write([put("/b/x", title="through the alias")])
    assert real_redis.get(KEYS.document_key("/b/x")) is None, (
        "the key is an alias now: no entry there"
    )
    assert stored(store, "/a/1")["title"] == "through the alias"
    other.redis.close()


def test_an_alias_released_slipping_in_is_seen(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(real_redis)
    store.write([put("/a"), put("/b"), put("/a/1", title="t")])
    store.write([Write(Action.PATCH, "/a/1", patcher=alias.adding(["/b/x"]))])
    other = Store(second_client(real_redis))
    releasing = Write(Action.PATCH, "/a/1", patcher=alias.removing(["/b/x"]))
    interleave(monkeypatch, lambda: other.write([releasing]) and None)
    store.write([put("/b/x", title="an entry of its own")])
    assert stored(store, "/b/x")["title"] == "an entry of its own"
    assert stored(store, "/a/1")["title"] == "t"
    other.redis.close()


def test_a_number_another_writer_takes_meanwhile_is_picked_again(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(real_redis)
    store.write([put("/a")])
    other = Store(second_client(real_redis))
    original = watch.numbers
    taken: list[str] = []

    def numbers_then_taken(*args: Any) -> Any:
        free, last = original(*args)
        if not taken:  # another POST commits the number this one picked, before it reads
            taken.append(free["/a"][0])
            other.write([put(free["/a"][0])])
        return free, last

    monkeypatch.setattr(watch, "numbers", numbers_then_taken)
    [written] = store.write([Write(Action.CREATE, "", {}, numbered_under="/a")])
    assert (taken, written.key) == (["/a/1"], "/a/2"), "picked again, not 409 duplicated_key"
    other.redis.close()


# -- _check's shortcut for the usual PUT --------------------------------------------------------

_KEY, _PARENT = "/p/a", "/p"
_ANY_REVISION: st.SearchStrategy[Literal["*"]] = st.just("*")
_DOCUMENT = b'{"id":"/p/a,1","link":[{"___href":"/p/a","___rel":"self"}]}'


@st.composite
def _writes_and_states(draw: st.DrawFn) -> tuple[Write, Any, set[str], tuple[str, ...]]:
    """Any write of one key against any stored state; half of them the usual PUT (an entry
    at the revision it read, no id of another key, no precondition), with every other
    attribute drawn all the same."""
    revisions = st.integers(0, 2)
    usual = draw(st.booleans())
    exists = usual or draw(st.booleans())
    stored_revision = draw(st.integers(1, 2)) if exists else 0
    write = Write(
        Action.PUT if usual else draw(st.sampled_from(list(Action))),
        _KEY,
        revision=stored_revision if usual else draw(st.none() | revisions),
        if_match=None if usual else draw(st.none() | _ANY_REVISION | st.frozensets(revisions)),
        if_none_match=False if usual else draw(st.booleans()),
        recursive=draw(st.booleans()),
        upsert=draw(st.booleans()),
        numbered_under=draw(st.none() | st.just(_PARENT)),
        claimed_id=None
        if usual
        else draw(st.none() | st.sampled_from([EntryId(_KEY, 1), EntryId("/p/b", 1)])),
        merge=draw(st.booleans()),
    )
    state = transaction._State(
        _DOCUMENT if exists else None,
        stored_revision,
        alias_of=draw(st.none() | st.just("/p/b")),
    )
    missing = draw(st.sampled_from([set(), {_PARENT}]))
    subtree = draw(st.sampled_from([(), ("/p/a/1",)]))
    return write, state, missing, subtree


def _outcome(check: Callable[..., None], *args: Any) -> type[BaseException] | None:
    try:
        check(*args)
    except (FeedstoreError, redis.WatchError) as error:
        return type(error)
    return None


@settings(max_examples=400, deadline=None)
@given(_writes_and_states())
def test_the_usual_put_shortcut_decides_as_every_rule_would(
    case: tuple[Write, Any, set[str], tuple[str, ...]],
) -> None:
    # A rule added to _check_rules that the usual PUT can fail shows here: the shortcut would
    # let such a write through.
    write, state, missing, subtree = case
    rules = _outcome(transaction._check_rules, write, state, missing, subtree)
    assert _outcome(transaction._check, write, state, missing, subtree) == rules
    if transaction._usual(write, state):
        assert rules is None
