"""Users, groups and tokens (credentials.py), on every Redis of the redis_client fixture."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import argon2
import pytest
import redis

from feedstore.credentials import CredentialError, Credentials, parse_token
from feedstore.errors import InvalidToken, TokenExpired
from feedstore.principal import ADMIN_GROUP
from tests.conftest import add_user, all_keys, make_token


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = 1_800_000_000) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_users_get_uids_from_a_counter_and_their_groups(redis_client: redis.Redis) -> None:
    credentials = Credentials(redis_client)
    alice = credentials.add_user("alice", None, ["sales", "$admin"])
    bob = credentials.add_user("bob", None)
    assert (alice.uid, bob.uid) == ("1", "2")
    assert redis_client.get("fs:uid:1") == b"alice"
    assert json.loads(redis_client.get("fs:ug:1") or b"") == [ADMIN_GROUP, "/_group/sales"]
    assert redis_client.smembers("fs:grp:sales") == {b"1"}
    assert [u.account for u in credentials.users()] == ["alice", "bob"]


@pytest.mark.parametrize("account", ["123", "a:b", "a,b", "", "a b", "x" * 129])
def test_account_names_that_a_login_or_an_acl_could_not_carry_are_refused(
    redis_client: redis.Redis, account: str
) -> None:
    with pytest.raises(CredentialError, match="bad account name"):
        Credentials(redis_client).add_user(account, None)


def test_a_taken_account_is_refused(redis_client: redis.Redis) -> None:
    add_user(redis_client, "alice")
    with pytest.raises(CredentialError, match="user alice exists"):
        add_user(redis_client, "alice")


def test_group_membership_changes_fs_ug_and_the_group_set(redis_client: redis.Redis) -> None:
    credentials = Credentials(redis_client)
    uid = add_user(redis_client, "alice")
    credentials.add_to_group("sales", "alice")
    credentials.add_to_group("/_group/ops", "alice")
    assert credentials.groups() == {"/_group/ops": ["alice"], "/_group/sales": ["alice"]}
    credentials.remove_from_group("sales", "alice")
    assert json.loads(redis_client.get(f"fs:ug:{uid}") or b"") == ["/_group/ops"]
    assert credentials.groups() == {"/_group/ops": ["alice"]}
    with pytest.raises(CredentialError, match="alice is not in /_group/sales"):
        credentials.remove_from_group("sales", "alice")


def test_a_token_authenticates_its_user_with_groups(redis_client: redis.Redis) -> None:
    token = make_token(redis_client, "alice", groups=("sales",), admin=True)
    principal = Credentials(redis_client).principal_of_token(token)
    assert (principal.uid, principal.account, principal.service) == ("1", "alice", False)
    assert principal.groups == {"/_group/sales", ADMIN_GROUP} and principal.admin


def test_a_token_has_the_documented_form_and_only_its_digest_is_stored(
    redis_client: redis.Redis,
) -> None:
    token = make_token(redis_client, "alice")
    parsed = parse_token(token)
    assert parsed is not None and token == f"fst_{parsed[0]}_{parsed[1]}"
    token_id, secret = parsed
    assert len(token_id) == 12 and len(secret) == 43  # 32 bytes, base64url without padding
    stored = redis_client.hgetall(f"fs:tok:{token_id}")
    assert stored[b"secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest().encode()
    values = b"".join(
        v
        for k in all_keys(redis_client)
        if redis_client.type(k) == b"hash"
        for v in redis_client.hgetall(k).values()
    )
    assert secret.encode() not in values


def test_a_service_token_says_so(redis_client: redis.Redis) -> None:
    token = make_token(redis_client, "batch", service=True)
    assert Credentials(redis_client).principal_of_token(token).service


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # another secret
        lambda t: "fst_" + "a" * 12 + t[16:],  # another id
        lambda t: t.replace("fst_", "fsx_"),
        lambda t: t[:16],
        lambda t: "",
    ],
    ids=["secret", "id", "prefix", "no-secret", "empty"],
)
def test_a_wrong_token_is_invalid(redis_client: redis.Redis, mangle: object) -> None:
    token = make_token(redis_client, "alice")
    with pytest.raises(InvalidToken):
        Credentials(redis_client).principal_of_token(mangle(token))  # type: ignore[operator]


def test_a_token_expires(redis_client: redis.Redis) -> None:
    clock = Clock()
    credentials = Credentials(redis_client, clock)
    add_user(redis_client, "alice")
    token, info = credentials.create_token("alice", "ci", expires_in=3600)
    assert info.expires == clock.now + 3600
    clock.now += 3599
    assert credentials.principal_of_token(token).account == "alice"
    clock.now += 1
    with pytest.raises(TokenExpired):
        credentials.principal_of_token(token)


def test_a_revoked_token_and_a_disabled_users_token_are_invalid(
    redis_client: redis.Redis,
) -> None:
    credentials = Credentials(redis_client)
    first, second = make_token(redis_client, "alice"), make_token(redis_client, "alice")
    credentials.revoke_token(first[4:16])
    with pytest.raises(InvalidToken):
        credentials.principal_of_token(first)
    assert [t.id for t in credentials.tokens("alice")] == [second[4:16]]
    credentials.disable("alice")
    with pytest.raises(InvalidToken):
        credentials.principal_of_token(second)
    with pytest.raises(CredentialError, match="no token"):
        credentials.revoke_token(first[4:16])


def test_a_token_in_basic_must_be_the_accounts_own(redis_client: redis.Redis) -> None:
    token = make_token(redis_client, "alice")
    credentials = Credentials(redis_client)
    assert credentials.principal_of_token(token, "alice").account == "alice"
    with pytest.raises(InvalidToken):
        credentials.principal_of_token(token, "bob")


def test_last_used_is_written_at_most_once_a_minute(redis_client: redis.Redis) -> None:
    clock = Clock()
    credentials = Credentials(redis_client, clock)
    add_user(redis_client, "alice")
    token, _ = credentials.create_token("alice")
    credentials.principal_of_token(token)
    assert credentials.tokens()[0].last_used == clock.now
    first = clock.now
    clock.now += 59
    credentials.principal_of_token(token)
    assert credentials.tokens()[0].last_used == first
    clock.now += 1
    credentials.principal_of_token(token)
    assert credentials.tokens()[0].last_used == clock.now


def test_passwords_are_argon2id_and_checked_only_for_enabled_users(
    real_redis: redis.Redis,
) -> None:
    credentials = Credentials(real_redis)
    uid = credentials.add_user("alice", "s3cret").uid
    assert (real_redis.hget("fs:user:alice", "password") or b"").startswith(b"$argon2id$")
    assert credentials.check_password("alice", "s3cret") == uid
    assert credentials.check_password("alice", "wrong") is None
    assert credentials.check_password("nobody", "s3cret") is None
    assert credentials.check_password("a:b", "s3cret") is None
    credentials.disable("alice")
    assert credentials.check_password("alice", "s3cret") is None


def test_a_login_rehashes_a_password_hashed_with_old_parameters(real_redis: redis.Redis) -> None:
    credentials = Credentials(real_redis)
    credentials.add_user("alice", "s3cret")
    old = argon2.PasswordHasher(time_cost=1, memory_cost=8192).hash("s3cret")
    real_redis.hset("fs:user:alice", "password", old)
    assert credentials.check_password("alice", "s3cret") is not None
    new = (real_redis.hget("fs:user:alice", "password") or b"").decode()
    assert new != old and not argon2.PasswordHasher().check_needs_rehash(new)


def test_a_group_change_reaches_the_users_tokens_at_once(redis_client: redis.Redis) -> None:
    credentials = Credentials(redis_client)
    token = make_token(redis_client, "alice", groups=("sales",))
    credentials.add_to_group("ops", "alice")
    assert credentials.principal_of_token(token).groups == {"/_group/ops", "/_group/sales"}
    credentials.remove_from_group("sales", "alice")
    assert credentials.principal_of_token(token).groups == {"/_group/ops"}


def test_a_disabled_user_gets_no_new_token(redis_client: redis.Redis) -> None:
    credentials = Credentials(redis_client)
    add_user(redis_client, "alice")
    credentials.disable("alice")
    with pytest.raises(CredentialError, match="user alice is disabled"):
        credentials.create_token("alice")


def commands_run(client: redis.Redis, act: Callable[[], object]) -> list[str]:
    """The Redis commands `act` ran, by name (INFO commandstats of the real server)."""
    client.config_resetstat()
    act()
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}
    calls.pop("config|resetstat", None)  # this function's own, before and after act()
    calls.pop("config", None)
    calls.pop("info", None)
    return sorted(name for name, count in calls.items() for _ in range(count))


def test_a_token_costs_one_read(real_redis: redis.Redis) -> None:
    clock = Clock()
    credentials = Credentials(real_redis, clock)
    add_user(real_redis, "alice", groups=("sales",))
    token, _ = credentials.create_token("alice")
    credentials.principal_of_token(token)  # its first use writes last_used
    assert commands_run(real_redis, lambda: credentials.principal_of_token(token)) == ["hgetall"]
