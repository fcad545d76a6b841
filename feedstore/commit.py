"""A write transaction's MULTI/EXEC on one Redis, sent and read with little of redis-py.

redis-py's Pipeline.execute costs tens of thousands of instructions per queued command: its
packer looks at every argument again, every reply goes through its callbacks and observability
hooks, and it retries a connection lost while watching as a WatchError, so the caller would run
a transaction again that may have committed. A write needs none of the replies, only whether
EXEC ran (WatchError when a watched key changed) and the first error. `commit` packs MULTI, the
queued commands and EXEC into one packet (by hiredis, or by one join for an MSET of documents),
reads the replies as they come, and leaves every other pipeline (a Redis Cluster pipeline, a
test double's) to redis-py.

A write queues one command per kind of change (MSET, ZADD, the change feed's XADD, an
idempotency record's SET...), so this is most of what a small write's commit costs in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis.client import EMPTY_RESPONSE, Pipeline
from redis.connection import AbstractConnection, Connection
from redis.exceptions import (
    ConnectionError,
    ExecAbortError,
    ResponseError,
    TimeoutError,
    WatchError,
)
from redis.utils import HIREDIS_AVAILABLE

from feedstore import replication

pack_command: Callable[[tuple[Any, ...]], bytes] | None = None
if HIREDIS_AVAILABLE:
    from hiredis import pack_command


def commit(pipe: Any) -> None:
    """EXEC the commands `pipe` queued after its MULTI. WatchError when a watched key changed
    (nothing written); the first command's error, nothing written; a lost connection is
    dropped and raised as is (the write may or may not have committed: never run twice)."""
    conn: Connection | None = pipe.connection if isinstance(pipe, Pipeline) else None
    packed = _packed(pipe) if conn is not None else None
    if conn is None or packed is None:
        pipe.execute()
        return
    stack = pipe.command_stack
    try:
        try:
            conn.send_packed_command([packed], check_health=False)
            refused = _queued(conn, len(stack))
            try:
                replies = conn.read_response()
            except ExecAbortError:
                raise refused or ResponseError("EXECABORT") from None
        except (ConnectionError, TimeoutError):
            conn.disconnect()
            raise
        finally:
            pipe.watching = False  # EXEC, or the connection's end, cleared the WATCH
        if replies is None:
            raise WatchError("Watched variable changed.")
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        if isinstance(pipe, replication.ReplicatedPipeline):
            replication.wait(conn, pipe.replication)
    finally:
        pipe.reset()


def _packed(pipe: Pipeline) -> bytes | None:
    """MULTI, the queued commands and EXEC as one packet; None when redis-py must send them
    (no hiredis, scripts to load, a command redis-py answers itself, an argument hiredis
    can't pack)."""
    if not pipe.explicit_transaction or pipe.scripts:
        return None
    commands: list[Sequence[Any]] = [("MULTI",)]
    for args, options in pipe.command_stack:
        if EMPTY_RESPONSE in options:
            return None
        commands.append(args)
    commands.append(("EXEC",))
    return _packet(commands)


def packed(conn: AbstractConnection, commands: Sequence[Sequence[Any]]) -> list[bytes]:
    """`commands` in one packet for conn.send_packed_command (see _packet), else redis-py's
    packing when hiredis can't take an argument."""
    packet = _packet(commands)
    return [packet] if packet is not None else conn.pack_commands(commands)


def _packet(commands: Sequence[Sequence[Any]]) -> bytes | None:
    """`commands` packed into one packet, by hiredis or, for a command of documents, by
    `_joined`; None without hiredis or for an argument hiredis can't pack."""
    if pack_command is None:
        return None
    try:
        return b"".join([_pack(tuple(args)) for args in commands])
    except TypeError:
        return None


# hiredis grows its buffer as it packs, so its time grows faster than the command's size: a
# 500-entry MSET of ~1.2 KB documents takes it 0.83 ms, 3.4 times what one join of the pieces
# takes. For a command of keys and numbers (a WATCH or MGET of 500 keys, a ZADD of 500 children,
# an EVAL's events) hiredis stays the faster of the two (39 µs against 59 for the WATCH), so
# only a command that carries documents, bytes as long as these, goes to the join: MSET, whose
# first value is a document.
_JOIN_FROM_ARGUMENTS = 32
_DOCUMENT_BYTES = 256
# `$<length>` for the usual lengths, made once.
_LENGTHS = tuple(b"$%d" % length for length in range(4096))


def _pack(args: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol, as hiredis packs it."""
    assert pack_command is not None
    if len(args) < _JOIN_FROM_ARGUMENTS or not _carries_documents(args):
        return pack_command(args)
    try:
        return _joined(args)
    except TypeError:  # a float, a memoryview
        return pack_command(args)


def _carries_documents(args: tuple[Any, ...]) -> bool:
    """Whether a command's first value (after its name and first key) is a document."""
    value = args[2]
    return type(value) is bytes and len(value) >= _DOCUMENT_BYTES


def _joined(args: tuple[Any, ...]) -> bytes:
    """`args` (str, bytes and int) packed by one join: `*<n>`, then `$<length>` and the
    argument for each, every part ended by CRLF. TypeError for an argument of another type."""
    parts = [b"*%d" % len(args)]
    append = parts.append
    lengths, known = _LENGTHS, len(_LENGTHS)
    for arg in args:
        kind = type(arg)
        if kind is str:
            arg = arg.encode()
        elif kind is int:
            arg = b"%d" % arg
        elif kind is not bytes:
            raise TypeError(f"not packed by a join: {kind.__name__}")
        length = len(arg)
        append(lengths[length] if length < known else b"$%d" % length)
        append(arg)
    append(b"")
    return b"\r\n".join(parts)


def _queued(conn: AbstractConnection, count: int) -> ResponseError | None:
    """Read MULTI's OK and each command's QUEUED; the first refusal (Redis then aborts EXEC)."""
    refused: ResponseError | None = None
    for _ in range(count + 1):
        try:
            conn.read_response()
        except ResponseError as e:
            refused = refused or e
    return refused
