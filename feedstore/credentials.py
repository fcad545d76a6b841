"""Users, groups and API tokens: who may authenticate, and as whom (keys.py, global keys).

A user is an account (a login name) with a uid from a counter, an argon2id password hash that
only `?_login` checks, and groups. A token is `fst_<id>_<secret>`: Redis keeps only the SHA-256
of its 256-bit random secret, so checking one costs a Redis read and a `compare_digest`, and a
leaked database names no token.

A request authenticates in one Redis round trip: a token's record (and a session's) carries its
user's account and groups, so nothing else is read. The CLI keeps them in step: a group change
rewrites the groups of the user's tokens and ends its sessions (they carry the groups of their
login); disabling a user, or changing its password, ends its sessions, and disabling revokes its
tokens. Every function reads and writes keys one at a time or in a non-transactional pipeline,
so the same code runs on a single Redis and on a cluster; the CLI is the only writer.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import argon2
import redis
from argon2.exceptions import InvalidHashError, VerificationError

from feedstore.errors import InvalidToken, TokenExpired
from feedstore.principal import Principal

USER_PREFIX = "fs:user:"
UID_PREFIX = "fs:uid:"
USER_GROUPS_PREFIX = "fs:ug:"
GROUP_PREFIX = "fs:grp:"
TOKEN_PREFIX = "fs:tok:"
USER_TOKENS_PREFIX = "fs:tokens:"
SESSION_PREFIX = "fs:sess:"
USER_SESSIONS_PREFIX = "fs:sessions:"
UID_COUNTER = "fs:uidseq"
GROUP_ROOT = "/_group/"
TOKEN_TAG = "fst_"
TOKEN_ID_LENGTH = 12
# The account names a login and an ACL URN can carry: no `:` (Basic), no `,` (a URN), not all
# digits (that is a uid).
ACCOUNT = re.compile(r"(?![0-9]+\Z)[A-Za-z0-9._@+-]{1,128}")
GROUP = re.compile(r"\$?[A-Za-z0-9._-]{1,128}")
TOKEN_ID = re.compile(r"[a-z2-7]{12}")
# A token's last_used is written at most this often (s), not on every request it makes.
LAST_USED_EVERY = 60
_HASHER = argon2.PasswordHasher()

Clock = Callable[[], float]


# A hash to write: redis-py types its field names as a union that dict[str, str] is not.
RedisHash = dict[Any, str]


@functools.cache
def _unknown_account_hash() -> str:
    """What a password is checked against when the account doesn't exist, so that a login takes
    as long for an unknown account as for a known one. Made at the first login, not at import:
    an argon2 hash costs every command that imports this module (import, export...) 0.13 s."""
    return _HASHER.hash(secrets.token_urlsafe(16))


class CredentialError(ValueError):
    """A request to manage credentials that can't be done (the CLI reports it)."""


@dataclass(frozen=True)
class User:
    uid: str
    account: str
    groups: tuple[str, ...]
    disabled: bool
    created: int


@dataclass(frozen=True)
class TokenInfo:
    """A token as `token list` shows it: everything but its secret."""

    id: str
    uid: str
    account: str
    name: str
    created: int
    expires: int | None
    service: bool
    last_used: int | None


def group_key(name: str) -> str:
    """`sales` -> `/_group/sales`; a group key is left as it is."""
    name = name.removeprefix(GROUP_ROOT)
    if not GROUP.fullmatch(name):
        raise CredentialError(f"bad group name: {name}")
    return GROUP_ROOT + name


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def token_record(token: str) -> str:
    """The Redis key of a token's record; InvalidToken for what isn't a token."""
    parsed = parse_token(token)
    if parsed is None:
        raise InvalidToken()
    return TOKEN_PREFIX + parsed[0]


def parse_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a `fst_<id>_<secret>` token, None when it isn't one."""
    token_id, secret = token[4:16], token[17:]
    if not token.startswith(TOKEN_TAG) or token[16:17] != "_" or not TOKEN_ID.fullmatch(token_id):
        return None
    if not 1 <= len(secret) <= 128 or not secret.isascii():
        return None
    return token_id, secret


class Credentials:
    """The users, groups and tokens kept in one Redis (or cluster)."""

    def __init__(self, client: redis.Redis | redis.RedisCluster, clock: Clock = time.time) -> None:
        self.redis = client
        self.clock = clock

    # -- users ----------------------------------------------------------------------------

    def add_user(self, account: str, password: str | None, groups: Iterable[str] = ()) -> User:
        """Create a user with a new uid; CredentialError if the account is taken. Without a
        password the user can't log in, only use tokens (a service account)."""
        if not ACCOUNT.fullmatch(account):
            raise CredentialError(
                f"bad account name: {account!r} (letters, digits and . _ @ + -; not all digits)"
            )
        keys = sorted({group_key(name) for name in groups})
        uid = str(self.redis.incr(UID_COUNTER))
        # HSETNX claims the account: of two `user add` at once, one gets it.
        if not self.redis.hsetnx(USER_PREFIX + account, "uid", uid):
            raise CredentialError(f"user {account} exists")
        created = int(self.clock())
        fields: RedisHash = {
            "password": "" if password is None else _HASHER.hash(password),
            "disabled": "0",
            "created": str(created),
        }
        self.redis.hset(USER_PREFIX + account, mapping=fields)
        self.redis.set(UID_PREFIX + uid, account)
        self._set_groups(uid, keys)
        return User(uid, account, tuple(keys), False, created)

    def user(self, account: str) -> User:
        """The user of an account; CredentialError if there is none."""
        fields = text_fields(self.redis.hgetall(USER_PREFIX + account))
        if "uid" not in fields:
            raise CredentialError(f"no user {account}")
        uid = fields["uid"]
        return User(
            uid,
            account,
            tuple(self.groups_of(uid)),
            fields.get("disabled") == "1",
            int(fields.get("created") or 0),
        )

    def users(self) -> list[User]:
        """Every user, by uid."""
        accounts = [decoded(key)[len(USER_PREFIX) :] for key in self._scan(USER_PREFIX + "*")]
        return sorted((self.user(account) for account in accounts), key=lambda u: int(u.uid))

    def set_password(self, account: str, password: str) -> None:
        """A new password; the user's sessions end (its tokens stay)."""
        user = self.user(account)
        self.redis.hset(USER_PREFIX + account, "password", _HASHER.hash(password))
        self.end_sessions(user.uid)

    def disable(self, account: str) -> None:
        """Refuse the user's logins from now on, revoke its tokens and end its sessions."""
        user = self.user(account)
        self.redis.hset(USER_PREFIX + account, "disabled", "1")
        for token in self.tokens(account):
            self.revoke_token(token.id)
        self.end_sessions(user.uid)

    def end_sessions(self, uid: str) -> None:
        """Log the uid out of every browser."""
        index = USER_SESSIONS_PREFIX + uid
        for digest in self.redis.smembers(index):
            self.redis.delete(SESSION_PREFIX + decoded(digest))
        self.redis.delete(index)

    def check_password(self, account: str, password: str) -> str | None:
        """The uid when `password` is the enabled user's, else None; rehashes an old hash."""
        fields: dict[str, str] = {}
        if ACCOUNT.fullmatch(account):
            fields = text_fields(self.redis.hgetall(USER_PREFIX + account))
        stored = fields.get("password") or _unknown_account_hash()
        try:
            _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if "uid" not in fields or fields.get("disabled") == "1":
            return None
        if _HASHER.check_needs_rehash(stored):
            self.redis.hset(USER_PREFIX + account, "password", _HASHER.hash(password))
        return fields["uid"]

    # -- groups ---------------------------------------------------------------------------

    def groups_of(self, uid: str) -> list[str]:
        """The uid's group keys (`/_group/<name>`), as fs:ug:<uid> holds them."""
        return _groups(self.redis.get(USER_GROUPS_PREFIX + uid))

    def add_to_group(self, group: str, account: str) -> None:
        user, key = self.user(account), group_key(group)
        self._set_groups(user.uid, sorted({*user.groups, key}))

    def remove_from_group(self, group: str, account: str) -> None:
        user, key = self.user(account), group_key(group)
        if key not in user.groups:
            raise CredentialError(f"{account} is not in {key}")
        self._set_groups(user.uid, [name for name in user.groups if name != key])
        self.redis.srem(GROUP_PREFIX + key.removeprefix(GROUP_ROOT), user.uid)

    def groups(self) -> dict[str, list[str]]:
        """Every group key with the accounts of its members."""
        listed: dict[str, list[str]] = {}
        for redis_key in self._scan(GROUP_PREFIX + "*"):
            name = decoded(redis_key)[len(GROUP_PREFIX) :]
            uids = sorted(decoded(uid) for uid in self.redis.smembers(redis_key))
            accounts = [decoded(self.redis.get(UID_PREFIX + uid) or uid.encode()) for uid in uids]
            if accounts:
                listed[GROUP_ROOT + name] = sorted(accounts)
        return dict(sorted(listed.items()))

    def _set_groups(self, uid: str, keys: list[str]) -> None:
        """The uid's groups, everywhere they are kept: fs:ug, the group sets, its tokens."""
        groups = json.dumps(keys)
        # fs:ug is one string, so a write can WATCH it and read it in its MGET (auth.md §1.5).
        self.redis.set(USER_GROUPS_PREFIX + uid, groups)
        for key in keys:
            self.redis.sadd(GROUP_PREFIX + key.removeprefix(GROUP_ROOT), uid)
        for token_id in self.redis.smembers(USER_TOKENS_PREFIX + uid):
            record = TOKEN_PREFIX + decoded(token_id)
            self.redis.hset(record, "groups", groups)
            if not self.redis.hexists(record, "uid"):  # revoked meanwhile: leave no remnant
                self.redis.delete(record)
        self.end_sessions(uid)

    # -- tokens ---------------------------------------------------------------------------

    def create_token(
        self, account: str, name: str = "", expires_in: int | None = None, service: bool = False
    ) -> tuple[str, TokenInfo]:
        """A new token of the user: the token itself (shown once, never stored) and its record."""
        user = self.user(account)
        if user.disabled:
            raise CredentialError(f"user {account} is disabled")
        token_id = base64.b32encode(secrets.token_bytes(8)).decode().lower()[:TOKEN_ID_LENGTH]
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        created = int(self.clock())
        expires = created + expires_in if expires_in is not None else None
        record: RedisHash = {
            "uid": user.uid,
            "account": account,
            "groups": json.dumps(list(user.groups)),
            "secret_sha256": secret_digest(secret),
            "name": name,
            "created": str(created),
            "expires": "" if expires is None else str(expires),
            "service": "1" if service else "0",
            "last_used": "",
        }
        self.redis.hset(TOKEN_PREFIX + token_id, mapping=record)
        self.redis.sadd(USER_TOKENS_PREFIX + user.uid, token_id)
        info = TokenInfo(token_id, user.uid, account, name, created, expires, service, None)
        return f"{TOKEN_TAG}{token_id}_{secret}", info

    def tokens(self, account: str | None = None) -> list[TokenInfo]:
        """The tokens of one user, or of every user, oldest first."""
        if account is not None:
            members = self.redis.smembers(USER_TOKENS_PREFIX + self.user(account).uid)
            ids = [decoded(token_id) for token_id in members]
        else:
            ids = [decoded(key)[len(TOKEN_PREFIX) :] for key in self._scan(TOKEN_PREFIX + "*")]
        found = [self._token_info(token_id) for token_id in ids]
        return sorted((t for t in found if t is not None), key=lambda t: (t.created, t.id))

    def revoke_token(self, token_id: str) -> None:
        info = self._token_info(token_id)
        if info is None:
            raise CredentialError(f"no token {token_id}")
        self.redis.delete(TOKEN_PREFIX + token_id)
        self.redis.srem(USER_TOKENS_PREFIX + info.uid, token_id)

    def _token_info(self, token_id: str) -> TokenInfo | None:
        fields = text_fields(self.redis.hgetall(TOKEN_PREFIX + token_id))
        if "uid" not in fields:
            return None
        return TokenInfo(
            token_id,
            fields["uid"],
            fields.get("account", ""),
            fields.get("name", ""),
            int(fields.get("created") or 0),
            int(fields["expires"]) if fields.get("expires") else None,
            fields.get("service") == "1",
            int(fields["last_used"]) if fields.get("last_used") else None,
        )

    # -- authenticating -------------------------------------------------------------------

    def principal_of_token(self, token: str, account: str | None = None) -> Principal:
        """Who a token authenticates, from its record alone (one round trip; `last_used` is
        written at most once a minute): InvalidToken (malformed, unknown, revoked or, with
        `account`, another account's), TokenExpired."""
        name = token_record(token)
        return self.principal_of_record(token, self.redis.hgetall(name), account)

    def principal_of_record(
        self, token: str, record: dict[Any, Any], account: str | None = None, touch: bool = True
    ) -> Principal:
        """principal_of_token, given the token's record as read (HGETALL of token_record(token)):
        for a read that fetches it in the same round trip as its own data. Without `touch`,
        `last_used` is left to the caller (a write that WATCHes the record: DeferredToken)."""
        parsed = parse_token(token)
        if parsed is None:
            raise InvalidToken()
        token_id, secret = parsed
        fields = text_fields(record)
        stored = fields.get("secret_sha256", "")
        if not hmac.compare_digest(stored.encode(), secret_digest(secret).encode()) or not stored:
            raise InvalidToken()
        if account is not None and fields.get("account") != account:
            raise InvalidToken()
        now = int(self.clock())
        if fields.get("expires") and int(fields["expires"]) <= now:
            raise TokenExpired()
        if touch and now - int(fields.get("last_used") or 0) >= LAST_USED_EVERY:
            self.touch(token_id)
        groups = frozenset(_groups(fields.get("groups")))
        return Principal(fields["uid"], fields["account"], groups, fields.get("service") == "1")

    def touch(self, token_id: str) -> None:
        """Note that the token was used now (`last_used`)."""
        self.redis.hset(TOKEN_PREFIX + token_id, "last_used", str(int(self.clock())))

    def used_long_ago(self, record: dict[Any, Any]) -> bool:
        """Whether a token's record, as read, needs its `last_used` written again."""
        last_used = record.get(b"last_used", record.get("last_used")) or 0
        return int(self.clock()) - int(last_used) >= LAST_USED_EVERY

    def _scan(self, pattern: str) -> list[bytes]:
        if isinstance(self.redis, redis.RedisCluster):
            return list(
                self.redis.scan_iter(match=pattern, target_nodes=redis.RedisCluster.PRIMARIES)
            )
        return list(self.redis.scan_iter(match=pattern))


@dataclass
class DeferredToken:
    """A token that a write authenticates inside its transaction (transaction.py), on a single
    Redis: its record is WATCHed and read in the transaction's one WATCH+MGET round trip, so
    a token write costs no round trip of its own. A group change rewrites the record (and a
    revoke deletes it), so one committing before EXEC makes the write run again and decide
    anew. `last_used` is written after the transaction (`finish`), never under its WATCH.
    """

    credentials: Credentials
    token: str
    principal: Principal | None = None
    failed: bool = False  # it authenticated no one (401)
    stale: bool = False  # its last_used is due

    @property
    def record(self) -> str:
        return token_record(self.token)

    def authenticate(self, record: dict[Any, Any]) -> Principal:
        """The principal of the record as read; InvalidToken or TokenExpired otherwise."""
        try:
            self.principal = self.credentials.principal_of_record(self.token, record, touch=False)
        except (InvalidToken, TokenExpired):
            self.failed = True
            raise
        self.stale = self.credentials.used_long_ago(record)
        return self.principal

    def finish(self) -> None:
        """After the write, committed or not: write `last_used` if it is due."""
        if self.stale:
            self.stale = False
            self.credentials.touch(self.record[len(TOKEN_PREFIX) :])


def _groups(raw: bytes | str | None) -> list[str]:
    return [str(name) for name in json.loads(raw)] if raw else []


def decoded(value: bytes | str) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else value


def text_fields(fields: dict[Any, Any]) -> dict[str, str]:
    """A Redis hash as text."""
    return {decoded(name): decoded(value) for name, value in fields.items()}
