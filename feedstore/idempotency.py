"""Idempotency keys (API.md §19): a write sent again with its Idempotency-Key is answered again,
never made again.

A request's record is one Redis string, `fs:{P}:idem:<principal>:<sha256 of the key>` (keys.py),
in the partition of the write's data, so it shares the write's slot on Redis Cluster:

1. `SET record "p:<token>" NX PX 30000` takes the lease. It is sent in the write transaction's
   first round trip, just before its WATCH and MGET (watch.watch_and_read), so a key costs no
   round trip of its own: the MGET reads the record back under WATCH (`Lease.check`).
2. A record that isn't this request's lease stops the attempt (LeaseLost, before anything is
   decided): an answer with the same fingerprint is replayed (`Idempotency-Replayed: true`), one
   with another fingerprint is 422 `idempotency_key_reused`, another request's lease is 409
   `idempotency_in_progress` with `Retry-After: 1`. A lease that expires while its request runs
   and is taken over changes the WATCHed record, so that request's EXEC fails and its next
   attempt meets the other request's lease or answer.
3. The answer, built from what the write did before EXEC, is queued as `SET record <answer> EX
   ttl` in the write's own MULTI (`Lease.queue`): the data and the answer commit together.
4. A write that fails wrote nothing (all or none): its lease is released (WATCH, check the token,
   MULTI DEL) and nothing is recorded, so a retry is a fresh attempt.

Flask-free: the view turns its request into a `Request` (the key, the fingerprint, how an answer
is made) and an `Answer` back into a response; the store runs `run` around its write.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
import redis

from feedstore.errors import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    ServiceUnavailable,
)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotency-Replayed"
LEASE_MILLISECONDS = 30_000
DEFAULT_TTL = 24 * 3600
MAX_KEY = 255
PENDING = b"p:"
DONE = b"c:"
# How many times a request looks at its record again after losing it (a lease expiring between
# SET NX and GET, or taken over during the write) before giving up with 503.
ROUNDS = 10
# A bare token, or an sf-string (RFC 8941 §3.3.3) whose characters are visible ASCII: `\"` and
# `\\` are its only escapes.
_BARE = re.compile(r"[\x21-\x7e]{1,255}")
_STRING = re.compile(r'"((?:[\x21\x23-\x5b\x5d-\x7e]|\\["\\]){1,255})"')
# The headers an answer keeps: what a view sets (Location, ETag, x-feedstore-merged, ...);
# the length is the body's, and the replay marker is added to replays only.
_NOT_KEPT = frozenset({"content-length", REPLAYED.lower()})

log = logging.getLogger(__name__)
T = TypeVar("T")


def parse_key(value: str | None) -> str | None:
    """The Idempotency-Key a header value carries, None when absent; InvalidIdempotencyKey
    (400) unless it is an sf-string `"..."` or a bare token of 1 to 255 visible ASCII
    characters. `"abc"` and `abc` are the same key."""
    if value is None:
        return None
    value = value.strip(" \t")
    quoted = _STRING.fullmatch(value)
    if quoted is not None:
        key = quoted[1]
        if "\\" in key:
            key = re.sub(r"\\(.)", r"\1", key)
        if len(key) <= MAX_KEY:
            return key
    elif _BARE.fullmatch(value) and not value.startswith('"'):
        return value
    raise InvalidIdempotencyKey()


def digest(key: str) -> str:
    """The SHA-256 of a key, in hex: what the record's name carries (the key may be long)."""
    return hashlib.sha256(key.encode()).hexdigest()


def fingerprint(parts: Iterable[str | bytes | None]) -> str:
    """The SHA-256 of a request's parts, each length-prefixed (absent is not empty)."""
    pieces: list[bytes] = []
    for part in parts:
        if part is None:
            pieces.append(b"-;")
            continue
        data = part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part
        pieces += (b"%d:" % len(data), data)
    return hashlib.sha256(b"".join(pieces)).hexdigest()


@dataclass(frozen=True)
class Answer:
    """What a write answered: status, headers (Content-Type among them) and body."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @classmethod
    def of(cls, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> Answer:
        """An answer, less the headers a replay makes again (Content-Length)."""
        kept = tuple((name, value) for name, value in headers if name.lower() not in _NOT_KEPT)
        return cls(status, kept, body)

    def dumps(self, fingerprint: str) -> bytes:
        """The record: `c:`, one JSON line (fingerprint, status, headers), then the body."""
        head = orjson.dumps({"f": fingerprint, "s": self.status, "h": self.headers})
        return b"".join((DONE, head, b"\n", self.body))

    @classmethod
    def loads(cls, raw: bytes) -> tuple[str, Answer]:
        """The fingerprint and answer of a record `dumps` made."""
        head, _, body = raw[len(DONE) :].partition(b"\n")
        fields = orjson.loads(head)
        headers = tuple((str(name), str(value)) for name, value in fields["h"])
        return str(fields["f"]), cls(int(fields["s"]), headers, body)


def no_answer(result: Any) -> Answer:
    """The answer of a write made without HTTP (an import's batch): 200, nothing else."""
    return Answer(200)


@dataclass(frozen=True)
class Request:
    """An idempotent write as the store sees it: the Idempotency-Key (unquoted), the request's
    fingerprint, how long its answer is kept, and how the answer is made from the write's
    result (the Written list of Store.write; a counter's value) inside the transaction."""

    key: str
    fingerprint: str
    ttl: int = DEFAULT_TTL
    render: Callable[[Any], Answer] = no_answer


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """How an idempotent write ended: its answer; `replayed` when an earlier request's answer
    was found (then `result` is None: nothing was written now)."""

    answer: Answer
    replayed: bool
    result: T | None = None


class LeaseLost(Exception):
    """The record, as the transaction read it, is not this request's lease (`found`: another
    request's lease or answer, None if it expired meanwhile): the attempt must not commit."""

    def __init__(self, name: str, found: bytes | None) -> None:
        super().__init__(name)
        self.found = found


@dataclass
class Lease:
    """This request's hold on its record, checked and completed inside the write's transaction."""

    name: str
    token: bytes
    request: Request
    answer: Answer | None = field(default=None)

    @property
    def value(self) -> bytes:
        return PENDING + self.token

    @property
    def claim(self) -> tuple[Any, ...]:
        """The command that takes the lease, sent before the transaction's WATCH."""
        return ("SET", self.name, self.value, "NX", "PX", LEASE_MILLISECONDS)

    def check(self, raw: bytes | None) -> None:
        """LeaseLost unless the record, as the transaction read it under WATCH, is our lease."""
        if raw != self.value:
            raise LeaseLost(self.name, raw)

    def queue(self, pipe: Any, result: Any) -> None:
        """Make the answer of `result` and queue it as the record (inside the write's MULTI)."""
        self.answer = self.request.render(result)
        record = self.answer.dumps(self.request.fingerprint)
        pipe.execute_command("SET", self.name, record, "EX", self.request.ttl)


def run(
    name: str,
    request: Request,
    write: Callable[[Lease], T],
    pipeline: Callable[[], Any],
) -> Outcome[T]:
    """Run `write` with a lease on record `name` (its transaction takes and checks it), or
    answer from the record.

    Raises IdempotencyKeyReused (422), IdempotencyInProgress (409), or what `write` raises, the
    lease released; ServiceUnavailable (503) when the record keeps changing hands.
    """
    for _ in range(ROUNDS):
        lease = Lease(name, os.urandom(16).hex().encode(), request)
        try:
            result = write(lease)
        except LeaseLost as lost:
            if lost.found is None:
                continue  # gone between the SET NX and the read: try again
            return _replayed(lost.found, request.fingerprint)
        except BaseException:
            release(pipeline, lease)
            raise
        assert lease.answer is not None, "the write did not queue its answer"
        return Outcome(lease.answer, False, result)
    raise ServiceUnavailable("Too many concurrent requests with this Idempotency-Key.")


def _replayed(found: bytes, wanted: str) -> Outcome[Any]:
    if not found.startswith(DONE):
        raise IdempotencyInProgress()
    recorded, answer = Answer.loads(found)
    if recorded != wanted:
        raise IdempotencyKeyReused()
    return Outcome(answer, True)


def release(pipeline: Callable[[], Any], lease: Lease) -> None:
    """Delete the record if it still holds `lease` (WATCH, GET, MULTI DEL): a failed write
    records nothing. A Redis that can't be reached leaves the lease to expire."""
    try:
        with pipeline() as pipe:
            pipe.watch(lease.name)
            if pipe.get(lease.name) == lease.value:
                pipe.multi()
                pipe.delete(lease.name)
                pipe.execute()
    except redis.WatchError:
        pass  # it changed hands: not ours to delete
    except redis.RedisError:
        log.warning("could not release the idempotency lease %s", lease.name, exc_info=True)
