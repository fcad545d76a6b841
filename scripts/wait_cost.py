"""What WAIT costs a write: PUTs per second through Store.write, with and without wait_replicas 1.

A primary and its replica on loopback (the test helper's servers, no Sentinels); forced PUTs of
one small entry each, by 1 and by 8 threads, in interleaved rounds; the median of each is
printed. Run it with scripts/wait-cost.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from feedstore import connection
from feedstore.replication import Replication
from feedstore.store import Action, Store, Write
from tests.sentinels import SentinelSet

SECONDS = 3.0
ROUNDS = 5


def rate(store: Store, threads: int, seconds: float) -> float:
    """Forced PUTs per second by `threads` threads, each to its own keys."""
    done = [0] * threads
    deadline = time.monotonic() + seconds

    def put(n: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            store.write([Write(Action.PUT, f"/bench/{n}-{i % 100}", {"title": "x" * 200})])
            i += 1
        done[n] = i

    workers = [threading.Thread(target=put, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / seconds


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        servers = SentinelSet(Path(directory), sentinel_count=0).start()
        try:
            url = f"redis://127.0.0.1:{servers.nodes[0].port}"
            stores = {
                "no WAIT": Store(connection.connect(url)),
                "WAIT 1": Store(connection.connect(url, replication=Replication(1, 1000))),
            }
            stores["no WAIT"].write([Write(Action.PUT, "/bench", {})])
            for threads in (1, 8):
                rates: dict[str, list[float]] = {name: [] for name in stores}
                for _ in range(ROUNDS):
                    for name, store in stores.items():
                        rates[name].append(rate(store, threads, SECONDS))
                medians = {name: statistics.median(values) for name, values in rates.items()}
                ratio = medians["WAIT 1"] / medians["no WAIT"]
                print(
                    f"{threads} thread(s): no WAIT {medians['no WAIT']:,.0f}/s, "
                    f"WAIT 1 {medians['WAIT 1']:,.0f}/s ({ratio:.2f}x)"
                )
        finally:
            servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
