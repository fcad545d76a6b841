"""Many app servers over one Redis: nothing a worker keeps in memory makes two servers disagree.

Two real `feedstore serve` processes (two workers each) on different ports share one real Redis:
the schema, the cursor key, counters, numbering and pagination indexes live there, so whatever
one server does, the other sees on its next request. Each test runs over a single redis-server and
over the 3-primary cluster.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from feedstore import cli
from feedstore.embedded import EmbeddedRedis
from tests.redis_cluster import RedisCluster
from tests.serving import WRITE_HEADERS, Response, Server, running_serve

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


@dataclass
class Pair:
    """Two servers on one Redis, that Redis's URL (for the CLI), and how to empty it."""

    first: Server
    second: Server
    redis_url: str
    flush: Callable[[], None]

    @property
    def both(self) -> tuple[Server, Server]:
        return (self.first, self.second)


@pytest.fixture(scope="module", params=["redis-server", "cluster"])
def serving_pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """Two `feedstore serve` processes over the same Redis, for the whole module: a Redis of
    their own, or the session's cluster (which other tests flush and fill between these)."""
    logs = tmp_path_factory.mktemp("pair")
    with contextlib.ExitStack() as stack:
        if request.param == "cluster":
            cluster: RedisCluster = request.getfixturevalue("redis_cluster")
            url, flush = cluster.url, cluster.flush
        else:
            redis_server = stack.enter_context(EmbeddedRedis(logs / "redis", persistent=False))
            url = redis_server.url
            flush = functools.partial(_flush, url)
        first = stack.enter_context(
            running_serve("--redis-url", url, data_dir=None, log_path=logs / "a.log")
        )
        second = stack.enter_context(
            running_serve("--redis-url", url, data_dir=None, log_path=logs / "b.log")
        )
        yield Pair(first, second, url, flush)


def _flush(url: str) -> None:
    with redis.Redis.from_url(url) as client:
        client.flushall()


@pytest.fixture
def pair(serving_pair: Pair) -> Pair:
    """The two servers, over an empty Redis: they must not need a restart to see that."""
    serving_pair.flush()
    return serving_pair


def write(server: Server, method: str, path: str, body: Any = None) -> Response:
    return server.request(method, path, body, WRITE_HEADERS)


def make_parent(pair: Pair, key: str) -> None:
    created = write(pair.first, "PUT", "/d/", [{"link": [{"___href": key, "___rel": "self"}]}])
    assert created.status == 200, created.body


def entries(answer: Response) -> list[dict[str, Any]]:
    assert answer.status == 200, answer.body
    found: list[dict[str, Any]] = answer.json()["feed"]["entry"]
    return found


def test_a_schema_set_while_both_serve_is_enforced_by_both_on_their_next_write(
    pair: Pair, tmp_path: Path
) -> None:
    make_parent(pair, "/schematic")
    # Each server (each worker, with luck) writes first, so each has read "no schema" before.
    for number, server in enumerate(pair.both * 3):
        accepted = write(server, "PUT", "/d/", [_child("/schematic", number, color="red")])
        assert accepted.status == 200, accepted.body
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    assert cli.main(["schema", "set", str(schema_file), "--redis-url", pair.redis_url]) == 0
    try:
        for number, server in enumerate(pair.both * 3):
            refused = write(server, "PUT", "/d/", [_child("/schematic", 10 + number, color="x")])
            assert refused.status == 400, refused.body
            assert refused.json()["error"]["code"] == "unknown_field"
            assert server.request("GET", "/d/_schema").json() == SCHEMA
    finally:
        assert cli.main(["schema", "clear", "--redis-url", pair.redis_url]) == 0
    for number, server in enumerate(pair.both * 3):
        again = write(server, "PUT", "/d/", [_child("/schematic", 20 + number, color="blue")])
        assert again.status == 200, again.body


def _child(parent: str, number: int, **fields: Any) -> dict[str, Any]:
    return {"link": [{"___href": f"{parent}/{number}", "___rel": "self"}], **fields}


def test_a_cursor_from_one_server_pages_on_the_other(pair: Pair) -> None:
    make_parent(pair, "/paged")
    children = [_child("/paged", number, n=number) for number in range(10, 19)]
    assert write(pair.second, "PUT", "/d/", children).status == 200
    read: list[int] = []
    path = "/d/paged?f&l=2"
    servers = itertools.cycle(pair.both)
    while True:
        answer = next(servers).request("GET", path)
        read += [entry["n"] for entry in entries(answer)]
        if "x-vtecx-nextpage" not in answer.headers:
            break
        path = f"/d/paged?f&l=2&p={answer.headers['x-vtecx-nextpage']}"
    assert read == list(range(10, 19))


def test_a_pagination_index_built_on_one_server_is_read_on_the_other(pair: Pair) -> None:
    make_parent(pair, "/numbered")
    children = [_child("/numbered", number, n=number) for number in range(10, 17)]
    assert write(pair.first, "PUT", "/d/", children).status == 200
    summary = pair.first.request("GET", "/d/numbered?f&l=3&_pagination=1,3")
    assert summary.json()["feed"]["title"] == "3"
    pages = [entries(pair.second.request("GET", f"/d/numbered?f&l=3&n={k}")) for k in (1, 2, 3)]
    assert [[entry["n"] for entry in page] for page in pages] == [
        [10, 11, 12],
        [13, 14, 15],
        [16],
    ]


def test_counters_and_numbers_from_both_servers_never_collide(pair: Pair) -> None:
    make_parent(pair, "/numbers")
    handed_out: list[int] = []
    added: list[int] = []
    failures: list[Response] = []
    lock = threading.Lock()

    def client(server: Server) -> None:
        for _ in range(6):
            posted = write(server, "POST", "/d/numbers", {"title": "numbered"})
            allocated = server.request("GET", "/d/numbers?_allocids=3")
            counted = write(server, "PUT", "/d/numbers?_addids=1")
            with lock:
                if {posted.status, allocated.status, counted.status} != {201, 200}:
                    failures.append(posted if posted.status != 201 else allocated)
                    continue
                handed_out.append(int(posted.json()["feed"]["title"].rsplit("/", 1)[1]))
                handed_out.extend(int(n) for n in allocated.json()["feed"]["title"].split(","))
                added.append(int(counted.json()["feed"]["title"]))

    threads = [threading.Thread(target=client, args=(server,)) for server in pair.both * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(handed_out) == len(set(handed_out)) == 4 * 6 * 4
    # Every _addids answered a different value, and the last one is the count.
    assert sorted(added) == list(range(1, 4 * 6 + 1))
    assert pair.second.request("GET", "/d/numbers?_getids").json()["feed"]["title"] == "24"


def test_revision_checked_increments_over_both_servers_lose_nothing(pair: Pair) -> None:
    """8 threads read the entry, add 1 to `n` and PUT it with the id they read; a 409 is a retry."""
    key = "/tally"
    created = write(pair.first, "PUT", "/d/", [{"link": _self(key), "n": 0}])
    assert created.status == 200, created.body
    acknowledged = increment_concurrently(pair.both, key, threads=8, each=12)
    stored = entries(pair.second.request("GET", f"/d{key}?e"))[0]
    assert acknowledged.unexpected == []
    assert stored["n"] == acknowledged.count == 8 * 12
    assert stored["id"] == f"{key},{acknowledged.count + 1}"


def _self(key: str) -> list[dict[str, str]]:
    return [{"___href": key, "___rel": "self"}]


@dataclass
class Increments:
    """What concurrent incrementers saw: writes acknowledged, and answers other than 200/409."""

    count: int
    conflicts: int
    unexpected: list[tuple[int, bytes]]


def increment_concurrently(
    servers: tuple[Server, ...], key: str, threads: int, each: int
) -> Increments:
    """`threads` threads, spread over `servers`, each make `each` acknowledged increments of the
    entry's `n`, revision-checked, retrying on 409; stop at the first unexpected answer."""
    lock = threading.Lock()
    seen = Increments(0, 0, [])

    def run(server: Server) -> None:
        done = 0
        while done < each:
            read = server.request("GET", f"/d{key}?e")
            if read.status != 200:
                with lock:
                    seen.unexpected.append((read.status, read.body))
                return
            current = read.json()["feed"]["entry"][0]
            bumped = {"id": current["id"], "link": _self(key), "n": current["n"] + 1}
            answer = write(server, "PUT", "/d/", [bumped])
            with lock:
                if answer.status == 200:
                    seen.count += 1
                    done += 1
                elif answer.status == 409:
                    seen.conflicts += 1
                else:
                    seen.unexpected.append((answer.status, answer.body))
                    return

    workers = [
        threading.Thread(target=run, args=(servers[number % len(servers)],))
        for number in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return seen
