"""Supervision of the embedded Redis: `feedstore serve` restarts it when it dies, and says so.

The embedded redis-server is a detail of one `serve` process, which alone holds its data dir, so
`serve` restarts it itself rather than exiting for an outer supervisor: the HTTP workers, their
connections and the requests not touching Redis go on, and a restart takes a fraction of a second
(Redis replays its AOF, so every acknowledged write is back). Requests that need Redis meanwhile
are 503 with Retry-After, as for any Redis outage.

A Redis that dies again soon after a restart is restarted after a longer pause, doubling up to
`max_delay`; one that can't be started `max_failures` times in a row (a full disk, a damaged AOF)
is given up on: `on_give_up` runs (serve stops its workers and exits 1), since retrying can't mend
what a human must.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from feedstore.embedded import EmbeddedRedis, EmbeddedRedisError

# A Redis that ran at least this long before dying is restarted after the first delay again.
STABLE_SECONDS = 30.0


def describe_exit(status: int | None) -> str:
    """An exit status as people read it: `signal 9 (SIGKILL)` or `status 1`."""
    if status is not None and status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            return f"signal {-status}"
        return f"signal {-status} ({name})"
    return f"status {status}"


class Supervisor:
    """A thread that waits for `redis` to exit and restarts it, reporting each step.

    The thread restarts the server, so the server dies with it (embedded.die_with_parent): call
    stop() before redis.stop(), and let the thread end after it.
    """

    def __init__(
        self,
        redis: EmbeddedRedis,
        report: Callable[[str], None],
        on_give_up: Callable[[], None],
        *,
        first_delay: float = 0.5,
        max_delay: float = 4.0,
        max_failures: int = 5,
    ) -> None:
        self.redis = redis
        self.report = report
        self.on_give_up = on_give_up
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.max_failures = max_failures
        self.gave_up = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redis-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop restarting; the thread ends once the server has exited (redis.stop())."""
        self._stopping.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._supervise()
        except Exception as e:  # a bug here must not leave serve answering 503 in silence
            self.report(f"the Redis supervisor failed: {e!r}")
            self._give_up()

    def _supervise(self) -> None:
        delay = self.first_delay
        started = time.monotonic()
        while True:
            pid = self.redis.pid
            status = self.redis.wait()
            if self._stopping.is_set():
                return
            delay = self.first_delay if time.monotonic() - started >= STABLE_SECONDS else delay
            self.report(
                f"redis-server (pid {pid}) exited with {describe_exit(status)}; "
                f"restarting it in {delay:g} s"
            )
            if not self._restart(delay):
                return
            started = time.monotonic()
            delay = min(delay * 2, self.max_delay)

    def _restart(self, delay: float) -> bool:
        """Restart the server, pausing `delay` before each try; False when stopping or giving up."""
        for attempt in range(1, self.max_failures + 1):
            if self._stopping.wait(delay):
                return False
            try:
                self.redis.restart()
            except EmbeddedRedisError as e:
                if self._stopping.is_set():
                    return False
                self.report(f"can't restart redis-server (try {attempt}): {e}")
                delay = min(delay * 2, self.max_delay)
                continue
            self.report(f"redis-server restarted (pid {self.redis.pid}); its AOF was replayed")
            return True
        self._give_up()
        return False

    def _give_up(self) -> None:
        self.gave_up = True
        self.report("giving up on redis-server; stopping")
        self.on_give_up()
