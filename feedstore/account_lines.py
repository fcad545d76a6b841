"""Users and tokens as export lines (`feedstore export --users`, `import --users`), API.md §20.

Only what the store keeps is exported: a user's password as its argon2id hash, a token's secret
as its SHA-256 (credentials.py never stores either in clear), so a file leaks no secret a store
doesn't. Sessions and login failures, which are short-lived, are not exported.

    {"user":"alice","uid":"3","password":"$argon2id$…","disabled":"0","created":"…","groups":[…]}
    {"token":"abcd…","uid":"3","account":"alice","secret_sha256":"…","name":"",…}
    {"uids":7}                                  ← the counter that numbers users
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis

from feedstore.credentials import (
    GROUP_PREFIX,
    GROUP_ROOT,
    TOKEN_PREFIX,
    UID_COUNTER,
    UID_PREFIX,
    USER_GROUPS_PREFIX,
    USER_PREFIX,
    USER_TOKENS_PREFIX,
    decoded,
    text_fields,
)

KINDS = ("user", "token", "uids")


def lines(client: Any) -> Iterator[dict[str, Any]]:
    """The lines of every user (by account), every token (by id) and the uid counter."""
    for account in sorted(_names(client, USER_PREFIX)):
        fields = text_fields(client.hgetall(USER_PREFIX + account))
        if "uid" not in fields:
            continue
        groups = client.get(USER_GROUPS_PREFIX + fields["uid"])
        yield {"user": account, **fields, "groups": json.loads(groups) if groups else []}
    for token_id in sorted(_names(client, TOKEN_PREFIX)):
        fields = text_fields(client.hgetall(TOKEN_PREFIX + token_id))
        if "uid" in fields:
            yield {"token": token_id, **fields}
    last = client.get(UID_COUNTER)
    if last is not None:
        yield {"uids": int(last)}


def load(client: Any, item: dict[str, Any]) -> None:
    """Write one user, token or uid counter line back as it was (over what is there)."""
    if "uids" in item:
        value = int(item["uids"])
        if int(client.get(UID_COUNTER) or 0) < value:
            client.set(UID_COUNTER, value)
        return
    if "token" in item:
        fields = {k: str(v) for k, v in item.items() if k != "token"}
        client.hset(TOKEN_PREFIX + item["token"], mapping=fields)
        client.sadd(USER_TOKENS_PREFIX + fields["uid"], item["token"])
        return
    account, groups = item["user"], [str(g) for g in item.get("groups", [])]
    fields = {k: str(v) for k, v in item.items() if k not in ("user", "groups")}
    client.hset(USER_PREFIX + account, mapping=fields)
    client.set(UID_PREFIX + fields["uid"], account)
    client.set(USER_GROUPS_PREFIX + fields["uid"], json.dumps(groups))
    for group in groups:
        client.sadd(GROUP_PREFIX + group.removeprefix(GROUP_ROOT), fields["uid"])


def kind_of(item: dict[str, Any]) -> str | None:
    """Which account line `item` is, if it is one."""
    return next((kind for kind in KINDS if kind in item), None)


def _names(client: Any, prefix: str) -> Iterator[str]:
    if isinstance(client, redis.RedisCluster):
        found = client.scan_iter(
            match=prefix + "*", count=1000, target_nodes=redis.RedisCluster.PRIMARIES
        )
    else:
        found = client.scan_iter(match=prefix + "*", count=1000)
    for name in found:
        yield decoded(name)[len(prefix) :]
