"""Bulk PUT, `?_bulk` and `?_bulkserial` (API.md §5.6): past `max_entries`, in atomic chunks.

The writes of a bulk are split, in request order, into chunks of `max_entries`; each chunk is one
`Store.write`, one transaction, all or nothing. The bulk as a whole is not: `_bulk` writes its
chunks concurrently on a small thread pool of its own (redis-py clients are thread-safe), which is
shut down before the answer, and tries every chunk; `_bulkserial` writes them one after another and
stops at the first that fails. When chunks fail, `BulkErrors` says which keys the others wrote.
What can be checked without the store (the body, keys, duplicates, preconditions) is checked for
the whole bulk before any chunk is written. On Redis Cluster, where a transaction keeps to one
partition (partitions.py), the writes are grouped by partition first, each chunk one partition's;
the answer still lists them in request order.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import Enum

from feedstore import partitions
from feedstore.errors import BulkErrors, FeedstoreError, InvalidOption
from feedstore.principal import ANONYMOUS, Principal
from feedstore.store import Store, Write, Written
from feedstore.transaction import reject_duplicates

ASYNC = "_async"
ASYNC_REFUSED = "_async is not supported: the request runs synchronously; drop _async."
# What one chunk came to: its writes, its error, or None when it was never tried.
Outcome = list[Written] | FeedstoreError | None


class Mode(Enum):
    PARALLEL = "_bulk"
    SERIAL = "_bulkserial"


def mode(options: Collection[str]) -> Mode | None:
    """The bulk mode a request's options ask for; 400 for both at once."""
    if not options:
        return None
    if Mode.PARALLEL.value in options and Mode.SERIAL.value in options:
        raise InvalidOption("_bulk and _bulkserial can't be combined.")
    return next((each for each in Mode if each.value in options), None)


def check_options(options: Collection[str]) -> None:
    """Refuse `_async` on any request, rather than ignore it: jobs don't exist, so an answer
    would claim work that isn't queued. (A bulk off PUT is the options table's 400.)"""
    if ASYNC in options:
        raise InvalidOption(ASYNC_REFUSED)


def write(
    store: Store,
    writes: Sequence[Write],
    mode: Mode,
    chunk_size: int,
    workers: int,
    principal: Principal = ANONYMOUS,
) -> list[Written]:
    """Write `writes` in chunks of `chunk_size`, each atomically, and return them in request order.

    A key twice is refused before anything is written. When chunks fail, raises BulkErrors: the
    first failing chunk's error, the failures of every failing chunk, and the keys written.
    """
    reject_duplicates(writes)
    places = _chunks(store, writes, chunk_size)
    chunks = [[writes[i] for i in chunk] for chunk in places]
    if mode is Mode.SERIAL:
        outcomes = _serially(store, chunks, principal)
    else:
        outcomes = _concurrently(store, chunks, workers, principal)
    failures = [outcome for outcome in outcomes if isinstance(outcome, FeedstoreError)]
    # Each written entry back at its request position (a failed chunk's stay empty).
    slots: list[Written | None] = [None] * len(writes)
    for chunk, outcome in zip(places, outcomes, strict=True):
        if isinstance(outcome, list):
            for i, each in zip(chunk, outcome, strict=True):
                slots[i] = each
    written = [each for each in slots if each is not None]
    if failures:
        raise BulkErrors(failures, [each.key for each in written])
    return written


def transactions(store: Store, writes: Sequence[Write], chunk_size: int) -> int:
    """How many transactions (chunks) a bulk of `writes` takes."""
    return len(_chunks(store, writes, chunk_size))


def _chunks(store: Store, writes: Sequence[Write], size: int) -> list[list[int]]:
    """The positions of the writes of each chunk: request order cut every `size` writes; on a
    cluster, each partition's writes (in request order) cut so."""
    if not store.cluster:
        return [
            list(range(start, min(start + size, len(writes))))
            for start in range(0, len(writes), size)
        ]
    groups: dict[str, list[int]] = {}
    for position, w in enumerate(writes):
        [tree] = partitions.trees_of(store.keys, [w])
        # A POST numbered under a parent above the depth is a partition of its own.
        tree = tree if tree.startswith("/") else f"#{position}"
        groups.setdefault(tree, []).append(position)
    return [
        group[start : start + size]
        for group in groups.values()
        for start in range(0, len(group), size)
    ]


def _serially(
    store: Store, chunks: Sequence[Sequence[Write]], principal: Principal
) -> list[Outcome]:
    outcomes: list[Outcome] = [None] * len(chunks)
    for index, chunk in enumerate(chunks):
        outcomes[index] = _attempt(store, chunk, principal)
        if isinstance(outcomes[index], FeedstoreError):
            break
    return outcomes


def _concurrently(
    store: Store, chunks: Sequence[Sequence[Write]], workers: int, principal: Principal
) -> list[Outcome]:
    if len(chunks) == 1:
        return [_attempt(store, chunks[0], principal)]
    # One pool per request, joined before the answer: no thread outlives it, and a request's
    # concurrency (and Redis connections) is bounded by `workers` whatever the server's threads.
    with ThreadPoolExecutor(max(1, min(workers, len(chunks))), "feedstore-bulk") as pool:
        futures = [pool.submit(_attempt, store, chunk, principal) for chunk in chunks]
    return [future.result() for future in futures]


def _attempt(
    store: Store, chunk: Sequence[Write], principal: Principal
) -> list[Written] | FeedstoreError:
    """One chunk's transaction; its refusal is an outcome, so the other chunks go on."""
    try:
        return store.write(chunk, principal)
    except FeedstoreError as error:
        return error
