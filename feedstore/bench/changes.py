"""The change feed's bench (issue 14): SSE delivery latency under writes, and memory.

    python -m feedstore.bench.changes [--clients 100] [--writes 300] [--interval 0.01]

It starts a Redis and `feedstore serve` (granian, the bench's server settings), opens `--clients`
Server-Sent Event streams on /d/sse, then PUTs `--writes` entries under it, one every
`--interval` seconds, and reports how long each write's event took to reach each client (from
just before its PUT was sent to the event's arrival): p50 and p99 over every (write, client),
against the 100 ms target. Then, on the same Redis, memory: the MEMORY USAGE of a stream of
10,000 events (each a written entry) divided by 10,000, and the bytes per revision kept by a
history prefix (one 1 KB entry written 51 times under `/memhist=50`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from feedstore.bench import client as bench_client
from feedstore.bench.servers import App, ServerSettings, running
from feedstore.embedded import EmbeddedRedis
from feedstore.history import HistoryRules
from feedstore.keys import KeyScheme
from feedstore.store import Action, Store, Write

SSE_APP = App(
    "feedstore-sse",
    "feedstore.app:create_app",
    env=(("FEEDSTORE_CHANGES", "on"), ("FEEDSTORE_CHANGES_WAITERS_MAX", "1000")),
)
WRITE_HEADERS = {"X-Requested-With": "XMLHttpRequest", "Content-Type": "application/json"}
TARGET_MS = 100.0
EVENTS = 10_000
KEPT = 50


@dataclass(frozen=True)
class Delivery:
    """Event delivery latencies, in milliseconds, over every (write, client)."""

    clients: int
    writes: int
    delivered: int
    p50_ms: float
    p99_ms: float

    @property
    def met(self) -> bool:
        return self.delivered == self.clients * self.writes and self.p99_ms <= TARGET_MS


@dataclass(frozen=True)
class Memory:
    bytes_per_event: float
    bytes_per_kept_revision: float
    entry_bytes: int


def deliver(port: int, clients: int, writes: int, interval: float) -> Delivery:
    """Open `clients` SSE streams, write `writes` entries, time each event's arrival."""
    sent: dict[str, float] = {}
    arrived: list[dict[str, float]] = [{} for _ in range(clients)]
    ready = threading.Barrier(clients + 1)

    def follow(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request(
            "GET", "/d/sse?_changes&_since=now", headers={"Accept": "text/event-stream"}
        )
        answer = connection.getresponse()
        ready.wait()
        data = None
        while len(arrived[index]) < writes:
            line = answer.readline()
            if not line:
                break
            text = line.decode().rstrip("\n")
            if text.startswith("data: "):
                data = text[len("data: ") :]
            elif not text and data is not None:
                arrived[index][json.loads(data)["id"]] = time.perf_counter()
                data = None
        connection.close()

    readers = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(clients)]
    for reader in readers:
        reader.start()
    ready.wait()
    for number in range(writes):
        key = f"/sse/{number}"
        sent[f"{key},1"] = time.perf_counter()
        reply = bench_client.send(port, "PUT", f"/d{key}", b"{}", WRITE_HEADERS)
        bench_client.expect(reply, 200, doing=f"PUT {key}")
        time.sleep(interval)
    for reader in readers:
        reader.join(60)
    latencies = [
        (seen[entry_id] - started) * 1000
        for seen in arrived
        for entry_id, started in sent.items()
        if entry_id in seen
    ]
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Delivery(
        clients,
        writes,
        len(latencies),
        round(statistics.median(latencies), 2) if latencies else 0.0,
        round(quantiles[98], 2),
    )


def weigh(redis_url: str) -> Memory:
    """Bytes per change-feed event and per kept revision (MEMORY USAGE, whole keys)."""
    client = redis.Redis.from_url(redis_url)
    keys = KeyScheme()
    try:
        store = Store(client, history=HistoryRules.parse([f"/memhist={KEPT}"]))
        store.write([Write(Action.PUT, "/memevents", {})])
        for start in range(0, EVENTS - 1, 1000):
            batch = range(start, min(start + 1000, EVENTS - 1))
            store.write([Write(Action.PUT, f"/memevents/{n:06d}", {}) for n in batch])
        stream = keys.change_stream_key("/memevents")
        per_event = int(client.memory_usage(stream, samples=0) or 0) / int(client.xlen(stream))
        fields = {"title": "revision", "summary": "x" * 900}
        store.write([Write(Action.PUT, "/memhist", {})])
        for _ in range(KEPT + 1):
            store.write([Write(Action.PUT, "/memhist/1", fields)])
        history = keys.history_key("/memhist/1")
        per_revision = int(client.memory_usage(history, samples=0) or 0) / int(client.hlen(history))
        found = store.get("/memhist/1")
        return Memory(round(per_event, 1), round(per_revision, 1), len(found[1]) if found else 0)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feedstore.bench.changes", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--clients", type=int, default=100, help="%(default)s")
    parser.add_argument("--writes", type=int, default=300, help="%(default)s")
    parser.add_argument("--interval", type=float, default=0.01, help="%(default)s s")
    parser.add_argument("--workers", type=int, default=2, help="%(default)s")
    parser.add_argument("--threads", type=int, default=8, help="%(default)s")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="fsbench-changes-") as temp,
        EmbeddedRedis(Path(temp) / "redis", persistent=False) as embedded,
    ):
        settings = ServerSettings(args.workers, args.threads)
        with running(SSE_APP, "granian", settings, embedded.url, Path(temp)) as server:
            bench_client.send(server.port, "PUT", "/d/sse", b"{}", WRITE_HEADERS)
            delivery = deliver(server.port, args.clients, args.writes, args.interval)
        memory = weigh(embedded.url)
    verdict = "met" if delivery.met else "NOT met"
    print(
        f"sse: {delivery.clients} clients x {delivery.writes} writes, "
        f"{delivery.delivered:,} events delivered; p50 {delivery.p50_ms} ms, "
        f"p99 {delivery.p99_ms} ms (target p99 <= {TARGET_MS:g} ms: {verdict})"
    )
    print(
        f"memory: {memory.bytes_per_event:,.1f} B per change-feed event "
        f"(a stream of {EVENTS:,}); {memory.bytes_per_kept_revision:,.1f} B per kept revision "
        f"(an entry of {memory.entry_bytes} B of JSON, {KEPT} kept)"
    )
    return 0 if delivery.met else 1


if __name__ == "__main__":
    sys.exit(main())
