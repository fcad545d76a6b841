"""`/metrics` in the Prometheus text format, counted by every worker process of a server.

`feedstore serve` runs several worker processes; each counts its own requests. With
PROMETHEUS_MULTIPROC_DIR set (serve sets it, to a directory of its own, before any worker starts),
prometheus_client keeps the values in files there and `/metrics` adds up every worker's; without
it (one process: tests, `create_app` in your own server) they are kept in memory.

What is counted: requests by route, method and status, their latency, errors by status and code
(so conflicts, 409 and 412, and authentication failures, 401 and 429, each by their code), write
transactions run again after a WatchError, Redis errors, and the change feed's waiting clients.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)

from feedstore.access_log import RequestRecord

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Latency buckets from a cached GET (~1 ms) to a 10 MB bulk (seconds).
# Only the counts: the `_created` series (when each counter was made) would double the output.
disable_created_metrics()
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))
_multiprocess_values: dict[str, Any] = {}


def _process_id() -> int:
    """This process's id, known without a system call: each value written to a file asks it
    (prometheus_client calls os.getpid three times per request otherwise)."""
    return _pid[0]


def multiprocess_values(directory: str) -> Any:
    """prometheus_client's values kept in this process's files in `directory`, made once per
    process and directory (two would open the same files apart), each write asking the pid
    of _process_id."""
    made = _multiprocess_values.get(directory)
    if made is None:
        made = values.MultiProcessValue(process_identifier=_process_id)
        _multiprocess_values[directory] = made
    return made


class Metrics:
    """The instruments of one app, and the text of `/metrics`."""

    def __init__(self) -> None:
        directory = os.environ.get(MULTIPROC_ENV)
        # prometheus_client chose where values live when it was first imported: a process
        # that imported it before serve set the directory (or after it was dropped) would keep
        # its counts in the wrong place.
        wanted = multiprocess_values(directory) if directory else values.MutexValue
        if values.ValueClass is not wanted:
            values.ValueClass = wanted
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "feedstore_requests",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "feedstore_request_duration_seconds",
            "Time from the request's arrival at the app to its last byte.",
            ["route", "method"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "feedstore_errors",
            "Error answers, by status and code (API.md's error table).",
            ["status", "code"],
            registry=self.registry,
        )
        self.write_retries = Counter(
            "feedstore_write_retries",
            "Write transactions run again because another writer changed a watched key.",
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "feedstore_redis_errors",
            "Requests answered 503 because Redis could not be reached or refused the write.",
            registry=self.registry,
        )
        # Requests waiting for change-feed events (long-poll and SSE), added up over workers.
        self.change_waiters = Gauge(
            "feedstore_change_feed_waiters",
            "Change-feed waiters: requests waiting for events (long-poll _wait and SSE).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, record: RequestRecord) -> None:
        """Count a finished request (an AccessLog observer)."""
        route = record.route or "unmatched"
        # The labelled children, looked up once per route, method and status (every request
        # comes here, and labels() checks and hashes its arguments each time).
        labels = (route, record.method, record.status)
        children = self._children.get(labels)
        if children is None:
            children = self._children[labels] = (
                self.requests.labels(route, record.method, str(record.status)),
                self.latency.labels(route, record.method),
            )
        children[0].inc()
        children[1].observe(record.duration_ms / 1000)
        if record.status >= 400:
            self.errors.labels(str(record.status), record.error or "unknown").inc()

    def write_retried(self) -> None:
        self.write_retries.inc()

    def redis_failed(self) -> None:
        self.redis_errors.inc()

    def waiters(self, count: int) -> None:
        """The change feed's waiters of this process (change_hub.py)."""
        self.change_waiters.set(count)

    def render(self) -> bytes:
        """The text of `/metrics`: every worker's counts added up, when there are several."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
