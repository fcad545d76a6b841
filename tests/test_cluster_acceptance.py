"""feedstore on a real 3-primary Redis Cluster: what must hold beyond the store and HTTP suites.

The root's listing and count stay exact while top-level entries come and go (its children set
lives outside the trees' transactions); every key of a tree lives in one slot; a live slot
migration of a busy tree, under revision-checked writers over HTTP, gives no error and loses no
acknowledged write. (The 8-thread increments over two servers are in test_many_servers.py.)
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from feedstore import cli, create_app
from tests.redis_cluster import RedisCluster
from tests.serving import WRITE_HEADERS, Server, running_serve

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "x-index": True}}}


@pytest.fixture
def cluster(redis_cluster: RedisCluster) -> RedisCluster:
    redis_cluster.flush()
    return redis_cluster


@pytest.fixture
def cluster_app(cluster: RedisCluster) -> Flask:
    return create_app({"redis_url": cluster.url})


def http(app: Flask) -> FlaskClient:
    """A client of its own (one per thread), sending the CSRF header writes need."""
    client = app.test_client()
    client.environ_base["HTTP_X_REQUESTED_WITH"] = "XMLHttpRequest"
    return client


def self_link(key: str) -> list[dict[str, str]]:
    return [{"___href": key, "___rel": "self"}]


def top_level(client: FlaskClient) -> tuple[list[str], int]:
    """The keys `/d/?f&l=*` lists and the count `/d/?c` answers."""
    listed = client.get("/d/?f&l=*")
    assert listed.status_code in (200, 204), listed.data
    keys = [e["link"][0]["___href"] for e in (listed.json or {"feed": {}})["feed"].get("entry", [])]
    counted = client.get("/d/?c")
    assert counted.status_code == 200, counted.data
    return keys, int(counted.json["feed"]["title"])  # type: ignore[index]


def test_the_root_lists_and_counts_exactly_the_top_level_entries_as_they_come_and_go(
    cluster_app: Flask,
) -> None:
    client = http(cluster_app)
    for name in ("/b", "/a", "/c"):
        assert client.put("/d/", json=[{"link": self_link(name)}]).status_code == 200
    assert top_level(client) == (["/a", "/b", "/c"], 3)
    assert client.delete("/d/b").status_code == 200
    assert top_level(client) == (["/a", "/c"], 2)
    assert client.put("/d/", json=[{"link": self_link("/b")}]).status_code == 200
    assert client.delete("/d/a").status_code == 200
    assert top_level(client) == (["/b", "/c"], 2)


def test_the_root_stays_exact_while_threads_create_and_delete_top_level_entries(
    cluster_app: Flask,
) -> None:
    """4 threads each create top-level entries and delete every other one; a reader meanwhile
    always sees the entries that stay, and at the end the root is exactly what is left."""
    setup = http(cluster_app)
    stable = [f"/stable{n}" for n in range(3)]
    for key in stable:
        assert setup.put("/d/", json=[{"link": self_link(key)}]).status_code == 200
    left: list[str] = []
    errors: list[str] = []
    done = threading.Event()

    def churn(number: int) -> None:
        client = http(cluster_app)
        for round_number in range(8):
            key = f"/churn{number}x{round_number}"
            statuses = [client.put("/d/", json=[{"link": self_link(key)}]).status_code]
            if round_number % 2:
                statuses.append(client.delete(f"/d{key}").status_code)
            else:
                left.append(key)
            if set(statuses) != {200}:
                errors.append(f"{key}: {statuses}")

    def read() -> None:
        client = http(cluster_app)
        while not done.is_set():
            keys, count = top_level(client)
            if not set(stable) <= set(keys) or count < len(stable):
                errors.append(f"the root lost a stable entry: {keys}, {count}")

    reader = threading.Thread(target=read)
    reader.start()
    run_threads([lambda number=number: churn(number) for number in range(4)])
    done.set()
    reader.join()
    assert errors == []
    assert top_level(setup) == (sorted([*stable, *left]), len(stable) + len(left))


def run_threads(targets: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def tree_of(name: bytes) -> str | None:
    """The top-level tree of a feedstore key, read from the entry key inside it (the last
    `:`-separated part that is a path), not from its hash tag: `fs:{/t}:d:/t/1` -> `/t`.
    None for keys of no tree (the schema, the cursor key) and of the root itself."""
    paths = [part for part in name.decode().split(":") if part.startswith("/")]
    tree = paths[-1].split("/")[1] if paths else ""
    return "/" + tree if tree else None


def test_every_key_of_a_tree_is_in_one_slot(
    cluster: RedisCluster, cluster_app: Flask, tmp_path: Path
) -> None:
    """Entries, revisions, children, numbering, counters and indexes of 12 trees: each tree's
    keys, SCANned from every primary, share one CLUSTER KEYSLOT, and the trees use every node."""
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    assert cli.main(["schema", "set", str(schema), "--redis-url", cluster.url]) == 0
    client = http(cluster_app)
    trees = [f"/t{n}" for n in range(12)]
    for tree in trees:
        assert client.put("/d/", json=[{"link": self_link(tree)}]).status_code == 200
        children = [{"link": self_link(f"{tree}/{n}"), "score": n} for n in range(3)]
        assert client.put("/d/", json=children).status_code == 200
        assert client.post(f"/d{tree}", json={"score": 9}).status_code == 201
        assert client.put(f"/d{tree}?_addids=2").status_code == 200
        assert client.get(f"/d{tree}?_allocids=2").status_code == 200
        assert client.delete(f"/d{tree}/0").status_code == 200
        assert client.get(f"/d{tree}?f&s=score").status_code == 200
    slots: dict[str, set[int]] = defaultdict(set)
    ports: dict[str, set[int]] = defaultdict(set)
    for node in cluster.nodes:
        with node.client() as direct:
            for name in direct.scan_iter(count=1000):
                tree = tree_of(name)
                if tree is not None:
                    slots[tree].add(direct.execute_command("CLUSTER KEYSLOT", name))
                    ports[tree].add(node.port)
    assert sorted(slots) == sorted(trees)
    assert {tree: len(found) for tree, found in slots.items()} == dict.fromkeys(trees, 1)
    assert {tree: len(found) for tree, found in ports.items()} == dict.fromkeys(trees, 1)
    assert len(set().union(*ports.values())) == len(cluster.nodes)


@pytest.fixture(scope="module")
def cluster_server(
    redis_cluster: RedisCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`feedstore serve` (2 workers) over the cluster, for the whole module."""
    log = tmp_path_factory.mktemp("cluster-serve") / "serve.log"
    with running_serve("--redis-url", redis_cluster.url, data_dir=None, log_path=log) as server:
        yield server


@dataclass
class Writers:
    """What the writers got: acknowledged increments per entry, acknowledged POSTs, and every
    answer other than 2xx and 409."""

    increments: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    posts: int = 0
    conflicts: int = 0
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def acknowledged(self) -> int:
        return sum(self.increments.values()) + self.posts


def write_until(
    server: Server, key: str, parent: str, seen: Writers, stop: threading.Event
) -> None:
    """Alternate a revision-checked increment of `key` and a numbered POST under `parent`."""
    while not stop.is_set():
        read = server.request("GET", f"/d{key}?e")
        if read.status != 200:
            with seen.lock:
                seen.unexpected.append(f"GET {key}: {read.status} {read.body[:300]!r}")
            return
        current = read.json()["feed"]["entry"][0]
        bumped = [{"id": current["id"], "link": self_link(key), "n": current["n"] + 1}]
        put = server.request("PUT", "/d/", bumped, WRITE_HEADERS)
        post = server.request("POST", f"/d{parent}", {"title": "added"}, WRITE_HEADERS)
        with seen.lock:
            if put.status == 200:
                seen.increments[key] += 1
            elif put.status == 409:
                seen.conflicts += 1
            else:
                seen.unexpected.append(f"PUT {key}: {put.status} {put.body[:300]!r}")
            if post.status == 201:
                seen.posts += 1
            else:
                seen.unexpected.append(f"POST {parent}: {post.status} {post.body[:300]!r}")


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "the writers made no progress"
        time.sleep(0.01)


def test_a_live_slot_migration_under_writers_gives_no_error_and_loses_no_write(
    cluster: RedisCluster, cluster_server: Server
) -> None:
    """Move the slot of a busy tree to another primary (IMPORTING/MIGRATING, MIGRATE batches,
    SETSLOT NODE everywhere) while 4 threads write to it over HTTP, revision-checked."""
    seeded = 1500
    counters = ["/busy/c0", "/busy/c1"]
    assert cluster_server.request("PUT", "/d/", [{"link": self_link("/busy")}], WRITE_HEADERS)
    for first in range(0, seeded, 500):
        chunk = [{"link": self_link(f"/busy/s{n}")} for n in range(first, first + 500)]
        assert cluster_server.request("PUT", "/d/", chunk, WRITE_HEADERS).status == 200
    for key in counters:
        created = cluster_server.request(
            "PUT", "/d/", [{"link": self_link(key), "n": 0}], WRITE_HEADERS
        )
        assert created.status == 200, created.body
    with cluster.client() as client:
        name = next(iter(client.scan_iter(match="*:/busy/s1", count=1000)))
        slot = client.keyslot(name)
    source = cluster.node_of_slot(slot)
    target = next(node for node in cluster.nodes if node is not source)

    seen, stop = Writers(), threading.Event()
    threads = [
        threading.Thread(
            target=write_until, args=(cluster_server, counters[n % 2], "/busy", seen, stop)
        )
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: seen.acknowledged >= 20 or bool(seen.unexpected))
        # About 60 batches over more than a second: a tree's move takes that long when it is
        # big, and the writers meet its slot split all the while.
        moved = cluster.move_slot(slot, target, batch=50, pause=0.02)
        after = seen.acknowledged
        wait_for(lambda: seen.acknowledged >= after + 20 or bool(seen.unexpected))
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert seen.unexpected == [], cluster_server.output()[-4000:]
    assert moved > seeded
    with source.client() as direct:
        assert direct.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0
    for key in counters:
        entry = cluster_server.request("GET", f"/d{key}?e").json()["feed"]["entry"][0]
        assert (entry["n"], entry["id"]) == (
            seen.increments[key],
            f"{key},{seen.increments[key] + 1}",
        )
    count = cluster_server.request("GET", "/d/busy?c").json()["feed"]["title"]
    assert int(count) == seeded + len(counters) + seen.posts


def test_reads_are_answered_while_a_trees_slot_is_split_between_two_primaries(
    cluster: RedisCluster, cluster_app: Flask
) -> None:
    """Half of a tree's keys have moved, half not: the multi-key reads Redis refuses then
    (TRYAGAIN) are read key by key, and every answer is what it was before the move."""
    client = http(cluster_app)
    assert client.put("/d/", json=[{"link": self_link("/split")}]).status_code == 200
    children = [{"link": self_link(f"/split/{n}"), "n": n} for n in range(40)]
    assert client.put("/d/", json=children).status_code == 200
    with cluster.client() as direct:
        slot = direct.keyslot(next(iter(direct.scan_iter(match="*:/split/1", count=1000))))
    reads = ["/d/split?f&l=*", "/d/split?c", "/d/split/7?e", "/d/split/33?e", "/d/split?_getids"]
    before = [client.get(path).json for path in reads]
    target = next(node for node in cluster.nodes if node is not cluster.node_of_slot(slot))
    with cluster.moving(slot, target) as migrate:
        assert migrate(41) == 41  # of the tree's 82 keys and more (its children set, ...)
        during = [client.get(path) for path in reads]
    assert [answer.status_code for answer in during] == [200] * len(reads)
    assert [answer.json for answer in during] == before
    assert [client.get(path).json for path in reads] == before
