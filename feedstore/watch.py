"""What a write transaction reads under WATCH before it decides, besides the entries themselves.

Numbers for POSTs without a self link, the parents inserts need, the subtrees deletes take, and
the keys new aliases claim. Each function WATCHes what it reads on the transaction's pipeline, so
a writer that changes any of it between these reads and EXEC makes the transaction retry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.client import Pipeline
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from feedstore.commit import packed
from feedstore.entry import ROOT, parent_of
from feedstore.errors import DuplicatedKey, FeedstoreError, ParentRequired, TreeTooLarge
from feedstore.keys import KeyScheme


def read(pipe: Pipeline, *command: Any) -> Any:
    """Run a read at once on a pipeline that is WATCHing (before MULTI nothing is buffered)."""
    return pipe.execute_command(*command)


def watch_and_read(
    pipe: Pipeline, watched: Sequence[str], *command: Any, first: Sequence[Any] | None = None
) -> Any:
    """WATCH `watched` then run a read, both sent at once: one round trip instead of two.

    For a redis-py Pipeline watching nothing yet (the cluster path of Transaction, on the
    partition node's own pipeline, partitions.PartitionRoute): Redis runs the two in order,
    so the read is already guarded. Both replies are read before an error of either is
    raised, so the connection stays in step; a lost connection is dropped and raised, as
    redis-py does (not retried: the WATCH may not hold).

    `first`, a command sent before the WATCH in the same round trip (an idempotency lease's
    SET NX, idempotency.py), whose reply is not returned: a write to a key this connection
    WATCHes would fail its own EXEC, so it must come first. A cluster pipeline not yet
    watching would queue it instead: there it runs after the WATCH, and a SET that takes the
    key costs the attempt (the next one finds the key its own).
    """
    return watch_and_read_all(pipe, watched, [command], first=first)[0]


def watch_and_read_all(
    pipe: Pipeline,
    watched: Sequence[str],
    commands: Sequence[Sequence[Any]],
    first: Sequence[Any] | None = None,
) -> list[Any]:
    """watch_and_read of several reads (a token's HGETALL and the write's MGET, say), all in
    the same round trip as the WATCH (and `first`); their replies in order."""
    if not isinstance(pipe, Pipeline) or pipe.watching or pipe.connection is not None:
        immediate = isinstance(pipe, Pipeline) and pipe.watching
        if first is not None and immediate:
            read(pipe, *first)
        pipe.watch(*watched)
        if first is not None and not immediate:
            read(pipe, *first)
        return [read(pipe, *command) for command in commands]
    conn = pipe.connection_pool.get_connection()
    pipe.connection = conn
    sent = [*([tuple(first)] if first is not None else []), ("WATCH", *watched), *commands]
    try:
        conn.send_packed_command(packed(conn, sent))
        replies: list[Any] = []
        for position, command in enumerate(sent):
            try:
                # `first`'s reply is not returned: read without redis-py's callback.
                name = "_" if position == 0 and first is not None else command[0]
                replies.append(pipe.parse_response(conn, name))
            except ResponseError as e:
                replies.append(e)
    except (ConnectionError, TimeoutError):
        conn.disconnect()
        pipe.reset()
        raise
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies[len(sent) - len(commands) :]


def numbers(
    pipe: Pipeline, keys: KeyScheme, wanted: Mapping[str, int], explicit: set[str]
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """The next free child keys under each parent (`wanted` of them), and each counter's new
    value: numbers taken in Redis or by the request's `explicit` keys are skipped."""
    parents = sorted(wanted)
    pipe.watch(*map(keys.sequence_key, parents))
    counters = read(pipe, "MGET", *map(keys.sequence_key, parents))
    last = {parent: int(value or 0) for parent, value in zip(parents, counters, strict=True)}
    free: dict[str, list[str]] = {parent: [] for parent in parents}
    for parent in parents:
        prefix = "" if parent == ROOT else parent
        while len(free[parent]) < wanted[parent]:
            first = last[parent] + 1
            last[parent] += wanted[parent] - len(free[parent])
            candidates = [f"{prefix}/{n}" for n in range(first, last[parent] + 1)]
            taken = _watched_values(pipe, keys, candidates)
            free[parent] += [
                key for key, raw in zip(candidates, taken, strict=True)
                if raw is None and key not in explicit
            ]  # fmt: skip
    return free, last


def missing_parents(
    pipe: Pipeline, keys: KeyScheme, parents: set[str], written: set[str]
) -> set[str]:
    """Which of `parents` (of inserts) have no entry; one written in the request is there."""
    stored = sorted(parents - written - {ROOT})
    if not stored:
        return set()
    pipe.watch(*map(keys.document_key, stored))
    if read(pipe, "EXISTS", *map(keys.document_key, stored)) == len(stored):
        return set()
    return {key for key in stored if not read(pipe, "EXISTS", keys.document_key(key))}


def subtree(pipe: Pipeline, keys: KeyScheme, key: str, recursive: bool, limit: int) -> list[str]:
    """The keys below `key`, level by level (only whether there is one, unless `recursive`);
    TreeTooLarge past `limit` entries, the key included."""
    pipe.watch(keys.children_key(key))
    if not recursive:
        return [child.decode() for child in read(pipe, "ZRANGE", keys.children_key(key), 0, 0)]
    found: list[str] = []
    level = [key]
    while level:
        pipe.watch(*(keys.children_key(node) for node in level))
        level = [
            child.decode()
            for node in level
            for child in read(pipe, "ZRANGE", keys.children_key(node), 0, -1)
        ]
        found.extend(level)
        if len(found) + 1 > limit:
            raise TreeTooLarge(key, len(found) + 1, limit)
    return found


def subtree_contents(
    pipe: Pipeline, scheme: KeyScheme, keys: Sequence[str]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The stored documents of a subtree's entries, and its aliases with the keys they name."""
    if not keys:
        return {}, {}
    values = _watched_values(pipe, scheme, keys, also_aliases=True)
    documents = {key: raw for key, raw in zip(keys, values[: len(keys)], strict=True) if raw}
    aliases = {
        key: target.decode()
        for key, target in zip(keys, values[len(keys) :], strict=True)
        if target is not None
    }
    return documents, aliases


def alias_claims(
    pipe: Pipeline,
    keys: KeyScheme,
    claims: Mapping[str, str],
    released: set[str],
    written: set[str],
    deleted: set[str],
) -> list[FeedstoreError]:
    """Why each alias in `claims` (alias -> the entry claiming it) can't be taken, if it can't:
    an entry or another entry's alias holds the key (409), or its parent has no entry (400).
    Aliases the request `released` are free; `written` keys are entries once it commits."""
    aliases = sorted(claims)
    values = _watched_values(pipe, keys, aliases, also_aliases=True)
    errors: list[FeedstoreError] = []
    parents = {parent_of(alias) for alias in aliases}
    missing = missing_parents(pipe, keys, parents, written) | (parents & deleted)
    for position, alias in enumerate(aliases):
        owner, raw, holder = claims[alias], values[position], values[len(aliases) + position]
        held_by_other = holder is not None and holder.decode() != owner and alias not in released
        if (raw is not None and alias not in deleted) or alias in written or held_by_other:
            errors.append(DuplicatedKey(alias))
        elif parent_of(alias) in missing:
            errors.append(ParentRequired(owner, parent_of(alias)))
    return errors


def _watched_values(
    pipe: Pipeline, scheme: KeyScheme, keys: Iterable[str], also_aliases: bool = False
) -> list[bytes | None]:
    """WATCH and MGET the documents of `keys` (and, after them, their alias mappings)."""
    keys = list(keys)
    names = [scheme.document_key(key) for key in keys]
    if also_aliases:
        names += [scheme.alias_key(key) for key in keys]
    pipe.watch(*names)
    values: list[bytes | None] = read(pipe, "MGET", *names)
    return values
