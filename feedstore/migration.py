"""The key scheme a Redis holds, checked at start, and `feedstore migrate`, which changes it.

Redis records the partition depth its keys are written with (`fs:partition-depth`, keys.py), so
two servers, or a server restarted with another depth, can't silently disagree: `check` refuses
to start with another depth, or on keys of the old untagged scheme (`fs:d:/11/1`, before
partition tags), and records the depth on a Redis that has no feedstore keys yet.

`migrate` renames every partitioned key that isn't named as the scheme says (untagged, or tagged
at another depth) and the old schema keys, then records the depth. Run it with the servers
stopped. It is idempotent and resumable: a key already named right is left alone, a move is a
RENAME on one Redis (atomic) and DUMP + RESTORE REPLACE + DEL on a cluster (repeatable), and the
depth key says "migrating" until the last key has moved, so no server starts on a half-moved
Redis and running `migrate` again finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import redis

from feedstore.keys import DEPTH_KEY, SCHEMA_KEY, SCHEMA_VERSION_KEY, KeyScheme, parse

# The schema keys before partition tags, and their names now.
OLD_GLOBAL_KEYS = {"fs:schema": SCHEMA_KEY, "fs:schema:v": SCHEMA_VERSION_KEY}
MIGRATING = b"migrating"
BATCH = 500
PROGRESS_EVERY = 20_000

Progress = Callable[[str], None]


class NeedsMigration(Exception):
    """The keys in Redis aren't of the scheme a server was started with."""


class OldScheme(NeedsMigration):
    """Redis holds keys of the untagged scheme."""


class Interrupted(NeedsMigration):
    """A migration is running, or stopped before it was done."""


class OtherDepth(NeedsMigration):
    """Redis holds keys of another partition depth."""


def check(client: Any, scheme: KeyScheme) -> None:
    """NeedsMigration unless Redis holds keys of `scheme`; records its depth on a Redis that
    holds no feedstore keys yet."""
    recorded = cast(bytes | None, client.get(DEPTH_KEY))
    if recorded is None:
        if has_old_keys(client):
            raise OldScheme(
                "The data in Redis uses feedstore's old key scheme (no partition tags). "
                f"Stop the servers and run: feedstore migrate --partition-depth {scheme.depth}"
            )
        client.set(DEPTH_KEY, scheme.depth, nx=True)
        recorded = cast(bytes | None, client.get(DEPTH_KEY))
    if recorded == MIGRATING:
        raise Interrupted(
            "A feedstore migrate is running or was interrupted. "
            "Run it again (with the servers stopped) to finish it."
        )
    if recorded is not None and recorded != str(scheme.depth).encode():
        raise OtherDepth(
            f"The data in Redis is partitioned at depth {recorded.decode()}, not "
            f"{scheme.depth}. Start with --partition-depth {recorded.decode()}, or stop the "
            f"servers and run: feedstore migrate --partition-depth {scheme.depth}"
        )


def has_old_keys(client: Any) -> bool:
    """Whether Redis holds a key of the untagged scheme (a full SCAN when it holds none)."""
    if client.exists(*OLD_GLOBAL_KEYS):
        return True
    for name in _scan(client, "fs:[dcrnai]*:/*"):
        found = parse(name.decode())
        if found is not None and found.tag is None:
            return True
    return False


def migrate(client: Any, scheme: KeyScheme, progress: Progress = lambda line: None) -> int:
    """Rename every key not named as `scheme` says; record its depth; return how many moved."""
    client.set(DEPTH_KEY, MIGRATING)
    total = int(client.dbsize())
    progress(f"migrate: to partition depth {scheme.depth}, {total:,} keys to look at")
    moved = seen = 0
    for old, new in OLD_GLOBAL_KEYS.items():
        if client.exists(old):
            _move(client, [(old, new)])
            moved += 1
    batch: list[tuple[str, str]] = []
    for name in _scan(client, "fs:*"):
        seen += 1
        text = name.decode()
        found = parse(text)
        if found is not None and (target := found.name(scheme)) != text:
            batch.append((text, target))
        if len(batch) == BATCH:
            moved += _move(client, batch)
            batch = []
        if seen % PROGRESS_EVERY == 0:
            progress(f"migrate: {seen:,} of ~{total:,} keys looked at, {moved:,} moved")
    moved += _move(client, batch)
    client.set(DEPTH_KEY, scheme.depth)
    progress(f"migrate: done, {seen:,} keys looked at, {moved:,} moved")
    return moved


def _move(client: Any, pairs: list[tuple[str, str]]) -> int:
    """Rename each (old, new) pair; on a cluster, where the two may be in different slots,
    copy and delete instead (repeatable: RESTORE REPLACE)."""
    if not pairs:
        return 0
    if not isinstance(client, redis.RedisCluster):
        with client.pipeline(transaction=False) as pipe:
            for old, new in pairs:
                pipe.rename(old, new)
            # A key gone already was moved by a run this one repeats.
            done = pipe.execute(raise_on_error=False)
        return sum(result is True for result in done)
    with client.pipeline(transaction=False) as pipe:
        for old, _ in pairs:
            pipe.dump(old)
            pipe.pttl(old)
        found = pipe.execute()
    moved = 0
    with client.pipeline(transaction=False) as pipe:
        for position, (old, new) in enumerate(pairs):
            value, ttl = found[2 * position], found[2 * position + 1]
            if value is None:
                continue  # moved already, by a run this one repeats
            pipe.restore(new, max(int(ttl), 0), value, replace=True)
            pipe.delete(old)
            moved += 1
        pipe.execute()
    return moved


def _scan(client: Any, pattern: str) -> Iterator[bytes]:
    """SCAN for `pattern`, over every primary of a cluster."""
    yield from client.scan_iter(match=pattern, count=1000)
