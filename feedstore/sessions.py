"""Browser sessions: `?_login` checks a password once and mints a session cookie (auth.md §1.3).

A session id is 32 random bytes (base64url); Redis keeps the session under the SHA-256 of it,
`fs:sess:<digest>` (uid, account, created, the groups at login), expiring after `idle` seconds
unused; each use pushes that back, and a session older than `max_age` ends however it is used.
`fs:sessions:<uid>` lists a user's sessions, so the CLI can end them. Failed logins are counted
per account in `fs:fail:<account>`: the first FREE_FAILURES - 1 cost nothing, then each one
locks the account's logins for a window that doubles, up to MAX_LOCK; the count is forgotten
FORGET seconds after the last lock ends (its EXPIRE is the lock plus FORGET).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass

import redis

from feedstore.credentials import (
    ACCOUNT,
    SESSION_PREFIX,
    USER_SESSIONS_PREFIX,
    Clock,
    Credentials,
    RedisHash,
    decoded,
    text_fields,
)
from feedstore.errors import LoginThrottled, SessionExpired, Unauthorized
from feedstore.principal import Principal

FAILURE_PREFIX = "fs:fail:"
FREE_FAILURES = 5
FIRST_LOCK = 15  # seconds, after the first failure past the free ones
MAX_LOCK = 15 * 60
FORGET = 15 * 60


def lock_after(failures: int) -> int:
    """Seconds an account's logins are refused after its `failures`-th failure in a row."""
    if failures < FREE_FAILURES:
        return 0
    return min(FIRST_LOCK * 2 ** (failures - FREE_FAILURES), MAX_LOCK)


def session_digest(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class Sessions:
    """Login, session look-up and logout, over the users of `credentials`."""

    credentials: Credentials
    idle: int
    max_age: int
    clock: Clock = time.time

    @property
    def redis(self) -> redis.Redis | redis.RedisCluster:
        return self.credentials.redis

    def login(self, account: str, password: str) -> tuple[str, Principal]:
        """A new session id and its principal; LoginThrottled while the account is locked,
        Unauthorized for a wrong password, an unknown or a disabled account."""
        if not ACCOUNT.fullmatch(account):
            raise Unauthorized()  # no such account can exist: nothing to count, or to store
        failures_key = FAILURE_PREFIX + account
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(failures_key)
            pipe.ttl(failures_key)
            failures, ttl = pipe.execute()
        locked = int(ttl) - FORGET if failures is not None else 0
        if locked > 0 and lock_after(int(failures)) > 0:
            raise LoginThrottled(locked)
        uid = self.credentials.check_password(account, password)
        if uid is None:
            count = int(self.redis.incr(failures_key))
            self.redis.expire(failures_key, lock_after(count) + FORGET)
            raise Unauthorized()
        self.redis.delete(failures_key)
        sid = secrets.token_urlsafe(32)
        digest = session_digest(sid)
        groups = self.credentials.groups_of(uid)
        fields: RedisHash = {
            "uid": uid,
            "account": account,
            "created": str(int(self.clock())),
            "groups": json.dumps(groups),
        }
        index = USER_SESSIONS_PREFIX + uid
        self._forget_ended(index)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(SESSION_PREFIX + digest, mapping=fields)
            pipe.expire(SESSION_PREFIX + digest, self.idle)
            # The user's sessions, for the CLI to end them; none outlives max_age.
            pipe.sadd(index, digest)
            pipe.expire(index, self.max_age)
            pipe.execute()
        return sid, Principal(uid, account, frozenset(groups))

    def _forget_ended(self, index: str) -> None:
        """Drop the sessions that expired from a user's index (at login, not per request)."""
        digests = [decoded(digest) for digest in self.redis.smembers(index)]
        with self.redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.exists(SESSION_PREFIX + digest)
            alive = pipe.execute()
        ended = [digest for digest, exists in zip(digests, alive, strict=True) if not exists]
        if ended:
            self.redis.srem(index, *ended)

    def principal(self, sid: str) -> Principal:
        """Who a session cookie authenticates, pushing its idle expiry back, in one round trip;
        SessionExpired when the session is gone (idle, logged out, ended by the CLI) or too old."""
        key = SESSION_PREFIX + session_digest(sid)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(key)
            pipe.expire(key, self.idle)  # one round trip: a missing key is left missing
            found = pipe.execute()[0]
        fields = text_fields(found)
        if "uid" not in fields:
            raise SessionExpired()
        if int(fields.get("created") or 0) + self.max_age <= self.clock():
            self.redis.delete(key)
            raise SessionExpired()
        groups = frozenset(json.loads(fields.get("groups") or "[]"))
        return Principal(fields["uid"], fields["account"], groups)

    def logout(self, sid: str) -> None:
        """End the session (nothing when there is none)."""
        digest = session_digest(sid)
        uid = self.redis.hget(SESSION_PREFIX + digest, "uid")
        self.redis.delete(SESSION_PREFIX + digest)
        if uid is not None:
            self.redis.srem(USER_SESSIONS_PREFIX + decoded(uid), digest)
