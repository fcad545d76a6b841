"""Login, sessions and the failed-login throttle (sessions.py), on a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from feedstore.credentials import Credentials
from feedstore.errors import LoginThrottled, SessionExpired, Unauthorized
from feedstore.sessions import FORGET, MAX_LOCK, Sessions, lock_after, session_digest
from tests.test_credentials import Clock, commands_run

IDLE, MAX_AGE = 600, 3600


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sessions(real_redis: redis.Redis, clock: Clock) -> Sessions:
    credentials = Credentials(real_redis, clock)
    credentials.add_user("alice", "s3cret", ["sales"])
    return Sessions(credentials, IDLE, MAX_AGE, clock)


def test_login_makes_a_session_stored_under_the_digest_of_its_id(
    sessions: Sessions, real_redis: redis.Redis
) -> None:
    sid, principal = sessions.login("alice", "s3cret")
    assert (principal.uid, principal.account, principal.groups) == ("1", "alice", {"/_group/sales"})
    key = f"fs:sess:{session_digest(sid)}"
    assert real_redis.hget(key, "uid") == b"1" and real_redis.ttl(key) == IDLE
    assert not real_redis.keys(f"*{sid}*")
    assert sessions.principal(sid) == principal


def test_a_session_use_pushes_its_idle_expiry_back(
    sessions: Sessions, real_redis: redis.Redis
) -> None:
    sid, _ = sessions.login("alice", "s3cret")
    key = f"fs:sess:{session_digest(sid)}"
    real_redis.expire(key, 5)
    sessions.principal(sid)
    assert real_redis.ttl(key) == IDLE


def test_an_idle_session_is_gone(sessions: Sessions, real_redis: redis.Redis) -> None:
    sid, _ = sessions.login("alice", "s3cret")
    real_redis.pexpire(f"fs:sess:{session_digest(sid)}", 1)
    while real_redis.exists(f"fs:sess:{session_digest(sid)}"):
        pass  # Redis expires it within a millisecond or two
    with pytest.raises(SessionExpired):
        sessions.principal(sid)


def test_a_session_ends_at_its_maximum_age_however_used(
    sessions: Sessions, real_redis: redis.Redis, clock: Clock
) -> None:
    sid, _ = sessions.login("alice", "s3cret")
    clock.now += MAX_AGE - 1
    sessions.principal(sid)
    clock.now += 1
    with pytest.raises(SessionExpired):
        sessions.principal(sid)
    assert not real_redis.exists(f"fs:sess:{session_digest(sid)}")


def test_logout_ends_the_session_and_a_disabled_user_has_none(sessions: Sessions) -> None:
    first, _ = sessions.login("alice", "s3cret")
    second, _ = sessions.login("alice", "s3cret")
    sessions.logout(first)
    with pytest.raises(SessionExpired):
        sessions.principal(first)
    sessions.credentials.disable("alice")
    with pytest.raises(SessionExpired):
        sessions.principal(second)


@pytest.mark.parametrize(
    ("failures", "lock"), [(1, 0), (4, 0), (5, 15), (6, 30), (10, 480), (11, MAX_LOCK), (50, 900)]
)
def test_the_lock_doubles_from_the_fifth_failure_up_to_15_minutes(failures: int, lock: int) -> None:
    assert lock_after(failures) == lock


def test_five_failed_logins_then_the_account_is_throttled(
    sessions: Sessions, real_redis: redis.Redis
) -> None:
    for _ in range(5):
        with pytest.raises(Unauthorized):
            sessions.login("alice", "wrong")
    with pytest.raises(LoginThrottled) as caught:
        sessions.login("alice", "s3cret")  # even the right password, while locked
    assert 0 < int(caught.value.headers["Retry-After"]) <= 15
    assert caught.value.status == 429 and caught.value.code == "login_throttled"
    real_redis.expire("fs:fail:alice", FORGET)  # the lock is over; the count is remembered
    with pytest.raises(Unauthorized):
        sessions.login("alice", "wrong")
    assert real_redis.ttl("fs:fail:alice") > FORGET + 15  # the sixth failure: a longer lock
    real_redis.expire("fs:fail:alice", FORGET)
    sessions.login("alice", "s3cret")
    assert not real_redis.exists("fs:fail:alice")  # a login forgets the failures


def test_unknown_accounts_fail_as_wrong_passwords_do(sessions: Sessions) -> None:
    with pytest.raises(Unauthorized) as caught:
        sessions.login("nobody", "s3cret")
    assert type(caught.value) is Unauthorized


def test_a_session_costs_one_round_trip(sessions: Sessions, real_redis: redis.Redis) -> None:
    sid, _ = sessions.login("alice", "s3cret")
    ran = commands_run(real_redis, lambda: sessions.principal(sid))
    assert ran == ["expire", "hgetall"]  # one pipeline


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.set_password("alice", "new"),
        lambda c: c.add_to_group("ops", "alice"),
        lambda c: c.remove_from_group("sales", "alice"),
        lambda c: c.disable("alice"),
    ],
    ids=["passwd", "group-add", "group-remove", "disable"],
)
def test_the_cli_ends_a_users_sessions_when_it_changes_it(
    sessions: Sessions, real_redis: redis.Redis, change: Any
) -> None:
    sid, _ = sessions.login("alice", "s3cret")
    change(sessions.credentials)
    with pytest.raises(SessionExpired):
        sessions.principal(sid)
    assert not real_redis.keys("fs:sess:*") and not real_redis.exists("fs:sessions:1")


def test_the_session_index_forgets_ended_sessions_at_login(
    sessions: Sessions, real_redis: redis.Redis
) -> None:
    first, _ = sessions.login("alice", "s3cret")
    real_redis.delete(f"fs:sess:{session_digest(first)}")  # as if it expired
    second, _ = sessions.login("alice", "s3cret")
    assert real_redis.smembers("fs:sessions:1") == {session_digest(second).encode()}
    assert 0 < real_redis.ttl("fs:sessions:1") <= MAX_AGE
    sessions.logout(second)
    assert not real_redis.exists("fs:sessions:1")


def test_a_name_no_account_can_have_is_refused_without_a_trace(
    sessions: Sessions, real_redis: redis.Redis
) -> None:
    before = sorted(real_redis.keys("*"))
    with pytest.raises(Unauthorized):
        sessions.login("x" * 10_000, "s3cret")
    assert sorted(real_redis.keys("*")) == before
