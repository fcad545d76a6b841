"""The feeds-at-scale data set: /small and /big seeded in-process, their memory, one-off probes.

Every child is small: a title, an indexed string `group` (GROUPS values), an indexed integer
`score` and an unindexed integer `level`. The schema is set before the first child is written, so
the writes themselves maintain the indexes, as they do in production. The data is seeded once per
run, before any server starts, from several processes: Python, not Redis, is what limits it.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from feedstore.bench import client
from feedstore.bench.client import RequestFailed
from feedstore.keys import KeyScheme
from feedstore.store import Action, Store, Write

SMALL = "/small"
BIG = "/big"
SMALL_CHILDREN = 1000
BIG_CHILDREN = 1_000_000
BATCH = 1000  # children per Store.write: the most one write may carry
TASK = 10 * BATCH  # children per task handed to a seeding process
GROUPS = 10
LEVELS = 100
PAGE = 100  # the page size every scale scenario asks for
WALK_PAGE = 1000  # the page size of the walk to the middle of /big
INDEXED_FILTER = "group=g3"
# Levels are 0..LEVELS-1, so nothing matches: the scan examines children up to the fetch limit.
UNMATCHED_FILTER = f"level-eq-{LEVELS}"
PROBE_REPEATS = 3
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "group": {"type": "string", "x-index": True},
        "score": {"type": "integer", "x-index": True},
        "level": {"type": "integer"},
    },
}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ScaleData:
    """What seeding made, what it took, and where the middle of /big is."""

    small: int
    big: int
    seconds: float  # to seed /big
    processes: int
    bytes_per_entry: float  # Redis used_memory added by seeding /big, per child
    document_memory: int  # MEMORY USAGE of one child's fs:d: key
    document_bytes: int  # that child's stored JSON
    middle_cursor: str  # p= of the page after the first big/2 children, in key order


@dataclass(frozen=True)
class Probe:
    """One request timed on its own, without wrk: its answer and the median of its times."""

    path: str
    status: int
    milliseconds: float
    next_page: bool  # both x-vtecx-nextpage and a rel="next" Link came with it
    title: str  # the message of a ?c answer, "" for a page


def child_fields(number: int) -> dict[str, Any]:
    return {
        "title": f"Item {number}",
        "group": f"g{number % GROUPS}",
        "score": number % 1000,
        "level": number % LEVELS,
    }


def child_key(parent: str, number: int, width: int) -> str:
    """Zero-padded, so key order is number order."""
    return f"{parent}/{number:0{width}d}"


def seed(
    redis_url: str,
    big: int = BIG_CHILDREN,
    small: int = SMALL_CHILDREN,
    processes: int = 2,
    progress: Progress = lambda line: None,
) -> ScaleData:
    """Set the schema, write the children of /small and /big, weigh /big, find its middle."""
    if big < 2:
        raise ValueError(f"/big needs at least 2 children to have a middle, not {big}")
    width = len(str(max(small, big) - 1))
    connection = redis.Redis.from_url(redis_url)
    try:
        store = Store(connection)
        store.set_schema(SCHEMA)
        store.write([Write(Action.PUT, SMALL, {}), Write(Action.PUT, BIG, {})])
        write_children(redis_url, SMALL, range(small), width)
        before = int(connection.info("memory")["used_memory"])
        started = time.perf_counter()
        done = 0
        for written in _seed_in_tasks(redis_url, BIG, big, width, processes):
            reached = (done + written) * 10 // big
            if reached > done * 10 // big:
                elapsed = time.perf_counter() - started
                progress(
                    f"scale: {BIG} {done + written:,}/{big:,} ({reached * 10}%) {elapsed:.0f} s"
                )
            done += written
        seconds = time.perf_counter() - started
        after = int(connection.info("memory")["used_memory"])
        sample = KeyScheme().document_key(child_key(BIG, big // 2, width))
        progress(f"scale: walking to the middle of {BIG} in pages of {min(WALK_PAGE, big // 2)}")
        return ScaleData(
            small=small,
            big=big,
            seconds=round(seconds, 1),
            processes=processes,
            bytes_per_entry=round((after - before) / big, 1),
            document_memory=int(connection.memory_usage(sample) or 0),
            document_bytes=len(connection.get(sample) or b""),
            middle_cursor=middle_cursor(connection, BIG, big // 2),
        )
    finally:
        connection.close()


def write_children(redis_url: str, parent: str, numbers: range, width: int) -> int:
    """Write the children numbered `numbers`, BATCH per write; also what a seeding process runs."""
    connection = redis.Redis.from_url(redis_url)
    try:
        store = Store(connection)
        for start in range(numbers.start, numbers.stop, BATCH):
            batch = range(start, min(start + BATCH, numbers.stop))
            store.write(
                [Write(Action.PUT, child_key(parent, n, width), child_fields(n)) for n in batch]
            )
    finally:
        connection.close()
    return len(numbers)


def _seed_in_tasks(
    redis_url: str, parent: str, count: int, width: int, processes: int
) -> Iterator[int]:
    """Write `count` children in tasks of TASK; yield how many each finished task wrote."""
    size = max(1, min(TASK, count // 10))  # at least ten tasks, for a progress line every 10%
    tasks = [range(start, min(start + size, count)) for start in range(0, count, size)]
    if processes == 1:
        for numbers in tasks:
            yield write_children(redis_url, parent, numbers, width)
        return
    # spawn, not fork: the bench holds Redis's lock file and child processes of its own.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [pool.submit(write_children, redis_url, parent, n, width) for n in tasks]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def middle_cursor(connection: redis.Redis, parent: str, skip: int) -> str:
    """The cursor after the first `skip` children, found by walking pages as a client would.

    In-process (Flask's test client) and before the servers start; the cursor's key is kept in
    Redis, so the servers accept it.
    """
    from feedstore.app import create_app

    web = create_app(None, connection).test_client()
    step = min(WALK_PAGE, skip)
    cursor = ""
    for _ in range(0, skip, step):
        path = f"/d{parent}?f&l={step}" + (f"&p={cursor}" if cursor else "")
        answer = web.get(path)
        cursor = answer.headers.get("x-vtecx-nextpage", "")
        if answer.status_code != 200 or not cursor:
            raise RequestFailed(f"walking {path}: HTTP {answer.status_code} without a next page")
    return cursor


def probes(port: int) -> list[Probe]:
    """The unindexed filter over /big, as a page and as a count, each timed PROBE_REPEATS times."""
    return [
        probe(port, f"/d{BIG}?f&l={PAGE}&{UNMATCHED_FILTER}"),
        probe(port, f"/d{BIG}?c&{UNMATCHED_FILTER}"),
    ]


def probe(port: int, path: str) -> Probe:
    times = []
    for _ in range(PROBE_REPEATS):
        started = time.perf_counter()
        reply = client.send(port, "GET", path, timeout=120)
        times.append(time.perf_counter() - started)
    try:
        title = str(json.loads(reply.body)["feed"].get("title", "")) if reply.body else ""
    except (ValueError, KeyError, AttributeError):
        title = ""
    return Probe(
        path=path,
        status=reply.status,
        milliseconds=round(1000 * statistics.median(times), 1),
        next_page="x-vtecx-nextpage" in reply.headers
        and 'rel="next"' in reply.headers.get("link", ""),
        title=title,
    )
