"""Bytes per entry on a Redis Cluster: how many children one tree can hold on one primary.

    python -m feedstore.bench.cluster_memory [--children 20000] [--redis-url redis://node:port]

Without --redis-url it starts a local 3-primary cluster (cluster_launcher) and stops it after.
It sets a schema with two indexed fields, writes `--children` children of about 400 bytes of JSON
under one top-level key, as the API would (Store.write, 1,000 per transaction), and reads
`used_memory` of the primary that holds the tree's slot before and after: every key of a tree
lives there (keys.py), so that node's memory is the tree's limit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from feedstore import connection
from feedstore.cluster_launcher import LocalCluster
from feedstore.store import Action, Store, Write

PARENT = "/memory"
BATCH = 1000
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "group": {"type": "string", "x-index": True},
        "score": {"type": "integer", "x-index": True},
        "summary": {"type": "string"},
    },
}
SUMMARY = "x" * 120  # with the other fields and the server's own, ~400 B of stored JSON


@dataclass(frozen=True)
class Weighed:
    """What writing the children cost the primary that holds them."""

    children: int
    bytes_per_child: float
    document_bytes: int  # one child's stored JSON


def child(number: int) -> Write:
    fields = {"title": f"Item {number}", "group": f"g{number % 10}", "score": number % 1000}
    return Write(Action.PUT, f"{PARENT}/{number:08d}", {**fields, "summary": SUMMARY})


def weigh(redis_url: str, children: int) -> Weighed:
    """Write `children` children of PARENT on the cluster at `redis_url`; weigh their node."""
    client = connection.connect(redis_url)
    try:
        store = Store(client)
        store.set_schema(SCHEMA)
        store.write([Write(Action.PUT, PARENT, {})])
        node = _owner(client)
        before = int(node.info("memory")["used_memory"])
        for start in range(0, children, BATCH):
            store.write([child(n) for n in range(start, min(start + BATCH, children))])
        after = int(node.info("memory")["used_memory"])
        found = store.get(child(children // 2).key)
        return Weighed(
            children,
            round((after - before) / children, 1),
            len(found[1]) if found is not None else 0,
        )
    finally:
        client.close()


def _owner(client: Any) -> redis.Redis:
    """A plain client of the node that holds PARENT's tree (or the one Redis, off a cluster)."""
    if not isinstance(client, redis.RedisCluster):
        return client
    name = next(iter(client.scan_iter(match=f"*:{PARENT}", count=1000)))
    owner = client.get_node_from_key(name)
    return redis.Redis(owner.host, owner.port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feedstore.bench.cluster_memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--children", type=int, default=20_000, help="%(default)s")
    parser.add_argument("--redis-url", help="a node of an existing cluster (its data stays)")
    args = parser.parse_args(argv)
    if args.redis_url:
        weighed = weigh(args.redis_url, args.children)
    else:
        with (
            tempfile.TemporaryDirectory(prefix="fscluster-") as temp,
            LocalCluster(Path(temp)) as cluster,
        ):
            weighed = weigh(cluster.url, args.children)
    print(
        f"{weighed.bytes_per_child:,.0f} B per child on the primary holding the tree "
        f"({weighed.children:,} children of {weighed.document_bytes} B of JSON, 2 indexed fields)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
