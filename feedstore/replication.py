"""Durable writes on replicas: WAIT after every EXEC, on the connection that ran it.

Redis replicates asynchronously: a write is acknowledged once the primary has it, and a primary
that fails (or is demoted by a Sentinel failover) before its replicas copied it loses it. With
`Replication(replicas, timeout_ms)` every MULTI/EXEC of the client is followed by `WAIT replicas
timeout_ms`; when fewer replicas confirm in time the write is NotReplicated (503): it happened
on the primary and may or may not survive a failover.

WAIT waits for the replication offset of its own connection, so it must run on the connection
that ran EXEC, after EXEC (inside MULTI it would return at once, before anything was written).
redis-py releases that connection as `Pipeline.execute` returns, so the pipeline issues WAIT
from `_execute_transaction`, right after reading EXEC's reply: one more round trip per write,
none for reads. A connection lost during WAIT is NotReplicated too, never a retry of the
transaction, which has already committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline
from redis.connection import Connection

from feedstore.errors import NotReplicated


@dataclass(frozen=True)
class Replication:
    """How many replicas must confirm each write (WAIT's numreplicas), within `timeout_ms`."""

    replicas: int
    timeout_ms: int

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be at least 1: {self.replicas}")
        # WAIT n 0 would block forever.
        if self.timeout_ms < 1:
            raise ValueError(f"the WAIT timeout must be at least 1 ms: {self.timeout_ms}")

    @classmethod
    def of(cls, replicas: int, timeout_ms: int) -> Replication | None:
        """The replication the settings ask for; None when no replica must confirm."""
        return cls(replicas, timeout_ms) if replicas else None


class ReplicatedRedis(redis.Redis):
    """A client whose transactions wait for `replication` (set by connection.connect)."""

    replication: Replication | None = None

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        if self.replication is None or not transaction:
            return super().pipeline(transaction, shard_hint)
        return ReplicatedPipeline(
            self.connection_pool,
            self.response_callbacks,
            transaction,
            shard_hint,
            replication=self.replication,
        )


class ReplicatedPipeline(Pipeline):
    """A transaction pipeline that runs WAIT after EXEC, on EXEC's connection."""

    def __init__(self, *args: Any, replication: Replication, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replication = replication

    def _execute_transaction(
        self, connection: Connection, commands: Any, raise_on_error: bool
    ) -> list[Any]:
        # Raises WatchError when a watched key changed: nothing was written, nothing to wait for.
        replies: list[Any] = super()._execute_transaction(connection, commands, raise_on_error)
        wait(connection, self.replication)
        return replies


def wait(connection: Connection, replication: Replication) -> None:
    """Run WAIT on `connection`; NotReplicated unless enough replicas confirm in time."""
    try:
        connection.send_command("WAIT", replication.replicas, replication.timeout_ms)
        confirmed = int(connection.read_response())
    except redis.RedisError as e:
        # Raised as is, a connection error would make the pipeline run the committed transaction
        # again; a reply error means a primary demoted since EXEC ("WAIT cannot be used with
        # replica instances").
        connection.disconnect()
        raise NotReplicated(0, replication.replicas) from e
    if confirmed < replication.replicas:
        # Its server may be a primary Sentinel is replacing (its replica promoted away from it):
        # the next write connects again, and so asks the Sentinels where the primary is.
        connection.disconnect()
        raise NotReplicated(confirmed, replication.replicas)
