"""Revision history (history-merge.md §3.3): which keys keep their superseded revisions, and how
a write keeps them, in its own MULTI.

Under a `history` prefix (`/notes=50`), a write at revision n+1 keeps revision n's stored JSON in
`fs:{P}:h:<key>` (keys.py): HSET n, and HDEL n-count, so exactly `count` superseded revisions
stay beside the current one (revisions are contiguous, so one HDEL keeps the count). A delete
keeps the last revision too and sets the hash to expire `history_days` later; a re-insert
PERSISTs it. The bytes are the ones the transaction already read: no decoding, no round trip.
Without a prefix nothing is queued.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from feedstore import codec_json
from feedstore.entry import is_revision
from feedstore.errors import InvalidOption, RevisionGone, RevisionNotFound
from feedstore.keys import KeyScheme
from feedstore.query import DEFAULT_LIMIT, MAX_LIMIT

DAY = 86_400
# Read modes that list a feed, which `r` (one entry's revision) can't go with.
FEED_MODES = ("f", "c", "n", "_pagination")
_RULE = re.compile(r"(/[^=]*)=([0-9]{1,9})")


@dataclass(frozen=True)
class HistoryRules:
    """The `history` prefixes with their counts, and how many days history outlives a delete."""

    prefixes: tuple[tuple[str, int], ...] = ()
    days: int = 30

    @classmethod
    def parse(cls, rules: Iterable[str], days: int = 30) -> HistoryRules:
        """`("/notes=50", "/billing=1000")`; ValueError naming the setting for a bad one."""
        prefixes = []
        for rule in rules:
            match = _RULE.fullmatch(rule.strip())
            if match is None or int(match[2]) < 1:
                raise ValueError(
                    f"FEEDSTORE_HISTORY must be prefixes with counts, as /notes=50: {rule}"
                )
            prefixes.append((match[1].rstrip("/") or "/", int(match[2])))
        if days < 1:
            raise ValueError(f"FEEDSTORE_HISTORY_DAYS must be at least 1: {days}")
        # The longest prefix first: /notes/archive=5 wins over /notes=50 below it.
        prefixes.sort(key=lambda rule: len(rule[0]), reverse=True)
        return cls(tuple(prefixes), days)

    def count(self, key: str) -> int:
        """How many superseded revisions of `key` are kept (0: none, no history)."""
        for prefix, count in self.prefixes:
            if prefix == "/" or key == prefix or key.startswith(prefix + "/"):
                return count
        return 0


def keep_superseded(pipe: Any, name: str, revision: int, raw: bytes, count: int) -> None:
    """Queue keeping `revision` (now superseded) and dropping the one `count` revisions older."""
    pipe.hset(name, str(revision), raw)
    if revision > count:
        pipe.hdel(name, str(revision - count))


def queue(
    pipe: Any, name: str, revision: int, raw: bytes | None, count: int, removed_days: int = 0
) -> None:
    """Queue what one write does to the history `name` of an entry under a prefix of `count`:
    keep the revision it supersedes (`raw`, None when it inserts), and when the entry is
    removed, let its history expire `removed_days` later; an insert keeps what an earlier
    delete left, for good."""
    if raw is None:
        if revision:  # a re-insert: the history a delete left stays with the entry again
            pipe.persist(name)
        return
    keep_superseded(pipe, name, revision, raw, count)
    if removed_days:
        pipe.expire(name, removed_days * DAY)


def read_revision(client: Any, keys: KeyScheme, key: str, revision: int) -> tuple[bytes, bool]:
    """The stored JSON of `key` at `revision`, and whether it is the current one.

    RevisionNotFound (404) past the entry's last revision, RevisionGone (410) for one its
    history doesn't keep. A deleted entry's revisions are read while its history lasts. The
    three reads go in one pipeline, the document first: a write between them only moves the
    revision read into the history, where the HGET after it finds it.
    """
    document, last_name, _ = keys.entry_keys(key)
    with client.pipeline(transaction=False) as pipe:
        pipe.get(document)
        pipe.get(last_name)
        pipe.hget(keys.history_key(key), str(revision))
        raw, last, kept = pipe.execute()
    current = codec_json.stored_revision(raw, key) if raw is not None else 0
    if raw is not None and revision == current:
        return raw, True
    if revision < 1 or revision > max(current, int(last or 0)):
        raise RevisionNotFound(key, revision)
    if kept is None:
        raise RevisionGone(key, revision)
    return kept, False


def read_history(
    client: Any, keys: KeyScheme, key: str, below: int | None, limit: int
) -> tuple[list[bytes], int | None]:
    """Up to `limit` revisions of `key`, newest first (the current one, then those kept),
    starting below `below` when given, and the revision the next page starts below (None at
    the end)."""
    document, last_name, _ = keys.entry_keys(key)
    with client.pipeline(transaction=False) as pipe:
        pipe.get(document)
        pipe.get(last_name)
        raw, last = pipe.execute()
    current = codec_json.stored_revision(raw, key) if raw is not None else 0
    latest = max(current, int(last or 0))
    top = latest if below is None else min(below - 1, latest)
    # One revision more than a page, to tell whether another page follows.
    wanted = list(range(top, max(top - limit - 1, 0), -1))
    older = [str(n) for n in wanted if raw is None or n != current]
    kept = client.hmget(keys.history_key(key), older) if older else []
    found = dict(zip(older, kept, strict=True))
    documents: list[bytes] = []
    for n in wanted:
        stored = raw if raw is not None and n == current else found[str(n)]
        if stored is None:
            break  # revisions are kept contiguously: none below this one
        documents.append(stored)
    if len(documents) > limit:
        return documents[:limit], top - limit + 1
    return documents, None


def parse_revision(value: str, option: str) -> int:
    """A revision named by `?r=` or `?_revert=`: 1 to 18 digits."""
    if not is_revision(value) or int(value) < 1:
        raise InvalidOption(f"Revision is invalid: {option}={value}")
    return int(value)


def check_entry_read(args: Mapping[str, str]) -> None:
    """`r` reads one entry's revision: 400 with a feed's read mode."""
    for name in FEED_MODES:
        if name in args:
            raise InvalidOption(f"r reads one entry and can't be combined with {name}.")


def parse_page(args: Mapping[str, str]) -> tuple[int | None, int]:
    """`?_history`'s page: below the revision `p` names (the last page's `x-vtecx-nextpage`),
    at most `l` revisions (100 unless given, `*` for 1000)."""
    limit = args.get("l", str(DEFAULT_LIMIT))
    size = MAX_LIMIT if limit == "*" else int(limit)  # its syntax checked with every read's
    below = args.get("p")
    if below is not None and not (is_revision(below) and int(below) > 0):
        raise InvalidOption(f"Cursor is invalid: p={below}")
    return (int(below) if below is not None else None), size
