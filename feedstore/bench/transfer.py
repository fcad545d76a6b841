"""The export and import benchmark: `feedstore export` and `feedstore import --mode restore` of
~1 KB entries, each run as the command a person runs, its entries/s and peak RSS measured.

No server and no wrk: a Redis of its own is seeded in-process, the export is written to a file,
the Redis is emptied and the file restored into it. Peak RSS is the command process's own
high-water mark (VmHWM, read from /proc while it runs), which must not grow with the number of
entries. Not the child's `ru_maxrss`: Linux carries the parent's over into a child across fork
and exec, so that figure was the bench process's own peak, the seeding's included.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from feedstore.bench.scenarios import entry
from feedstore.embedded import EmbeddedRedis
from feedstore.store import Action, Store, Write

ENTRIES = 100_000
PARENT = "/bench"
SEED_BATCH = 1000
POLL_SECONDS = 0.02  # how often a command's peak RSS is read while it runs
# The targets, entries per second.
TARGETS = {"export": 50_000.0, "import-restore": 20_000.0}


@dataclass(frozen=True)
class TransferTiming:
    """One command over `entries` entries: how long it took and its peak resident memory."""

    operation: str
    entries: int
    seconds: float
    peak_rss_bytes: int
    target: float

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds else 0.0

    @property
    def met(self) -> bool:
        return self.entries_per_s >= self.target


def measure(
    work: Path, entries: int = ENTRIES, progress: Callable[[str], None] = lambda line: None
) -> list[TransferTiming]:
    """Seed `entries` entries under /bench, export them, restore them into the emptied Redis."""
    with EmbeddedRedis(work / "transfer-redis", persistent=False) as server:
        client = redis.Redis.from_url(server.url)
        try:
            progress(f"bench: seeding {entries:,} entries of ~1 KB for export and import")
            seed(client, entries)
            path = work / "transfer.jsonl"
            exported = run(["export", "-o", str(path), "--no-progress"], server.url)
            client.flushall()
            restored = run(["import", str(path), "--mode", "restore", "--no-progress"], server.url)
        finally:
            client.close()
    count = entries + 1  # the parent too
    return [
        TransferTiming("export", count, *exported, TARGETS["export"]),
        TransferTiming("import-restore", count, *restored, TARGETS["import-restore"]),
    ]


def seed(client: redis.Redis, entries: int) -> None:
    store = Store(client)
    store.write([Write(Action.PUT, PARENT, {})])
    for start in range(0, entries, SEED_BATCH):
        writes = [
            Write(Action.PUT, key, {k: v for k, v in entry(key).items() if k != "link"})
            for key in (f"{PARENT}/{n:08d}" for n in range(start, min(entries, start + SEED_BATCH)))
        ]
        store.write(writes)


def run(arguments: list[str], url: str) -> tuple[float, int]:
    """Run `feedstore <arguments> --redis-url url`; its wall seconds and peak RSS in bytes."""
    command = [sys.executable, "-m", "feedstore.cli", *arguments, "--redis-url", url]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        peak = 0
        while process.poll() is None:
            peak = max(peak, high_water_mark(process.pid))
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            errors.seek(0)
            said = errors.read().decode(errors="replace")
            raise RuntimeError(f"feedstore {arguments[0]} failed: {said}")
    return seconds, peak


def high_water_mark(pid: int) -> int:
    """The peak resident set size of a running process, in bytes (0 once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    return 0


def lines(timings: list[TransferTiming]) -> list[str]:
    """The export and import figures, one line each."""
    if not timings:
        return []
    found = ["", "export and import, the feedstore command, ~1 KB entries:"]
    for timing in timings:
        verdict = "met" if timing.met else "MISSED"
        found.append(
            f"  {timing.operation:<15} {timing.entries:>10,} entries  "
            f"{timing.entries_per_s:>9,.0f} entries/s (target >= {timing.target:,.0f}) {verdict}"
            f"  peak RSS {timing.peak_rss_bytes / 2**20:,.0f} MiB"
        )
    return found
