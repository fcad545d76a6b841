"""ChangeHub: one thread per worker process that waits for change-feed events on behalf of every
waiting request (long-poll `_wait`, Server-Sent Events), on one Redis connection at a time.

A request that found no event registers a waiter (a stream and the sequence it has seen) and
blocks on it (a threading.Event, or an asyncio future in the gateway, which then holds no
thread). The hub's thread runs `XREAD BLOCK` over the streams with waiters, from the oldest
sequence any of them has seen, and wakes each waiter once an event past its sequence exists; the
request then reads the events itself. Waiting costs no pooled Redis connection, and at most
`changes_waiters_max` requests of a process may wait at once (then 503, with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from feedstore.changes import sequence_order
from feedstore.errors import ServiceUnavailable

log = logging.getLogger(__name__)
# How long one XREAD blocks: a waiter registered meanwhile on another stream is first read
# when it returns.
BLOCK_MS = 100
IDLE_SECONDS = 1.0


# In a request's WSGI environ: set by the gateway (gateway.py), which can wait on its event loop;
# then the app hands it each wait (a Deferred) instead of blocking a thread.
ASYNC_WAITS = "feedstore.async_waits"
DEADLINE = "feedstore.deadline"


class Deferred:
    """A wait for the gateway to do: for an event on `stream` after `seq`, at most `timeout`
    seconds, then run the request again (long-poll) or go on with its body (SSE)."""

    __slots__ = ("hub", "seq", "stream", "timeout")

    def __init__(self, hub: ChangeHub, stream: str, seq: str, timeout: float) -> None:
        self.hub = hub
        self.stream = stream
        self.seq = seq
        self.timeout = timeout


class _Waiter:
    __slots__ = ("fire", "seq", "stream")

    def __init__(self, stream: str, seq: str, fire: Callable[[], None]) -> None:
        self.stream = stream
        self.seq = sequence_order(seq)
        self.fire = fire


class ChangeHub:
    """The waiters of one process, and the thread that wakes them."""

    def __init__(
        self,
        client: Any,
        cluster: bool,
        most: int,
        on_count: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.redis = client
        self.cluster = cluster
        self.most = most
        self.on_count = on_count
        self.count = 0  # requests holding a waiter place (waiting(), below)
        self._waiters: set[_Waiter] = set()
        self._lock = threading.Condition()
        self._pid: int | None = None

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Hold one of the process's waiter places while a request may wait; 503 when all
        `most` are taken."""
        with self._lock:
            if self.count >= self.most:
                raise ServiceUnavailable("Too many waiting clients. Please retry.", retry_after=5)
            self.count += 1
            count = self.count
        self.on_count(count)
        try:
            yield
        finally:
            with self._lock:
                self.count -= 1
                count = self.count
            self.on_count(count)

    def check_room(self) -> None:
        """503 when every waiter place is taken (before a request defers its wait)."""
        with self._lock:
            if self.count >= self.most:
                raise ServiceUnavailable("Too many waiting clients. Please retry.", retry_after=5)

    async def wait_deferred(self, wait: Deferred) -> bool:
        """A wait a request handed to the gateway (long-poll), counted as a waiter."""
        with self._lock:
            self.count += 1
            count = self.count
        self.on_count(count)
        try:
            return await self.wait_async(wait.stream, wait.seq, wait.timeout)
        finally:
            with self._lock:
                self.count -= 1
                count = self.count
            self.on_count(count)

    def wait(self, stream: str, seq: str, timeout: float) -> bool:
        """Block until `stream` has an event after `seq`, or `timeout` seconds; whether one
        came."""
        arrived = threading.Event()
        waiter = self._register(stream, seq, arrived.set)
        try:
            return arrived.wait(max(timeout, 0))
        finally:
            self._unregister(waiter)

    async def wait_async(self, stream: str, seq: str, timeout: float) -> bool:
        """`wait` for an event loop: awaits without holding a thread."""
        loop = asyncio.get_running_loop()
        arrived = loop.create_future()

        def settle() -> None:
            if not arrived.done():
                arrived.set_result(True)

        def fire() -> None:
            loop.call_soon_threadsafe(settle)

        waiter = self._register(stream, seq, fire)
        try:
            await asyncio.wait_for(arrived, max(timeout, 0))
            return True
        except TimeoutError:
            return False
        finally:
            self._unregister(waiter)

    def _register(self, stream: str, seq: str, fire: Callable[[], None]) -> _Waiter:
        waiter = _Waiter(stream, seq, fire)
        with self._lock:
            self._waiters.add(waiter)
            if self._pid != os.getpid():  # first use in this process (workers fork)
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="change-hub", daemon=True).start()
            self._lock.notify_all()
        return waiter

    def _unregister(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiters:
                    self._lock.wait(IDLE_SECONDS)
                oldest: dict[str, tuple[int, int]] = {}
                for waiter in self._waiters:
                    if waiter.stream not in oldest or waiter.seq < oldest[waiter.stream]:
                        oldest[waiter.stream] = waiter.seq
            try:
                newest = self._read(oldest)
            except redis.RedisError as e:
                log.warning("the change hub can't read the change streams: %s", e)
                time.sleep(IDLE_SECONDS)
                continue
            if not newest:
                continue
            with self._lock:
                woken = [
                    w for w in self._waiters if w.stream in newest and w.seq < newest[w.stream]
                ]
            for waiter in woken:
                waiter.fire()
                self._unregister(waiter)

    def _read(self, oldest: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        """The newest sequence found after each stream's oldest waiter, after blocking up to
        BLOCK_MS for one (on a cluster, where one XREAD can't span slots, without blocking)."""
        streams = {name: f"{ms}-{counter}" for name, (ms, counter) in oldest.items()}
        if self.cluster:
            found: list[Any] = []
            for name, seq in streams.items():
                found += self.redis.xread({name: seq}, count=1000) or []
            if not found:
                time.sleep(BLOCK_MS / 1000)
        else:
            found = self.redis.xread(streams, count=1000, block=BLOCK_MS) or []
        newest: dict[str, tuple[int, int]] = {}
        for name, entries in found:
            if entries:
                stream = name.decode() if isinstance(name, bytes) else name
                newest[stream] = sequence_order(entries[-1][0].decode())
        return newest
