"""The servers under test: how each is started, waited for and stopped, identically.

`granian` and `gunicorn` are `feedstore serve` itself (bench/serve.py): its ASGI server with the
gateway in front of the app, for every app. `granian-wsgi`, `gunicorn-sync` and `gunicorn-gthread`
serve the WSGI app directly, to show what the gateway costs. Each server runs in its own process
group; serve's workers make groups of their own, so a server's processes are its leader and the
leader's descendants. They are sent SIGKILL if the thread that started them dies without cleaning
up.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis

from feedstore.bench import client
from feedstore.embedded import die_with_parent

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Idle: at most this many clock ticks of CPU (10 ms each) in IDLE_INTERVAL seconds, which an
# idle server and Redis (its cron, ten times a second) stay under.
IDLE_INTERVAL, IDLE_TICKS = 0.25, 2


class ServerError(Exception):
    """A server did not start, or did not answer its health check in time."""


@dataclass(frozen=True)
class App:
    """A WSGI app the bench serves: a zero-argument factory that reads FEEDSTORE_REDIS_URL."""

    name: str
    factory: str  # "module:function"
    health_path: str = "/_health"
    # Which of the run's Redis servers it is given: "main", or "scale" for the big data set,
    # kept apart so its schema and its million keys leave the other scenarios as they were.
    redis: str = "main"
    # The one server it runs under, whatever --servers says (None: each of them).
    server: str | None = None
    # Settings it is served with, as FEEDSTORE_* variables (auth on, say).
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ServerSettings:
    """What every server gets, so they differ only in the server itself."""

    workers: int
    threads: int


ArgvBuilder = Callable[[App, int, ServerSettings, str], list[str]]


def serve_argv(server: str) -> ArgvBuilder:
    """`feedstore serve --server <server>` of the app, on the given Redis."""

    def argv(app: App, port: int, settings: ServerSettings, redis_url: str) -> list[str]:
        return [
            *(sys.executable, "-m", "feedstore.bench.serve", app.factory, "--server", server),
            *("--host", client.HOST, "--port", str(port), "--redis-url", redis_url),
            *("--workers", str(settings.workers), "--threads", str(settings.threads)),
        ]

    return argv


def granian_wsgi_argv(app: App, port: int, settings: ServerSettings, redis_url: str) -> list[str]:
    return [
        *(sys.executable, "-m", "granian", "--interface", "wsgi", "--factory", app.factory),
        *("--host", client.HOST, "--port", str(port), "--workers", str(settings.workers)),
        *("--blocking-threads", str(settings.threads), "--log-level", "warning"),
    ]


def gunicorn_sync_argv(app: App, port: int, settings: ServerSettings, redis_url: str) -> list[str]:
    # Sync workers serve one request at a time and close the connection after it.
    return [
        *(sys.executable, "-m", "gunicorn", "--worker-class", "sync"),
        *("--workers", str(settings.workers), "--bind", f"{client.HOST}:{port}"),
        *("--log-level", "warning", f"{app.factory}()"),
    ]


def gunicorn_gthread_argv(
    app: App, port: int, settings: ServerSettings, redis_url: str
) -> list[str]:
    return [
        *(sys.executable, "-m", "gunicorn", "--worker-class", "gthread"),
        *("--workers", str(settings.workers), "--threads", str(settings.threads)),
        *("--bind", f"{client.HOST}:{port}", "--log-level", "warning", f"{app.factory}()"),
    ]


# Every server the bench knows, by the name --servers takes.
SERVERS: dict[str, ArgvBuilder] = {
    "granian": serve_argv("granian"),
    "gunicorn": serve_argv("gunicorn"),
    "granian-wsgi": granian_wsgi_argv,
    "gunicorn-sync": gunicorn_sync_argv,
    "gunicorn-gthread": gunicorn_gthread_argv,
}


@dataclass
class RunningServer:
    """One app under one server, leader of its own process group."""

    app: App
    server: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{client.HOST}:{self.port}"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the app's health path answers 200; ServerError with its log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.server} ({self.app.name}) exited with {self.process.returncode}: "
                    f"{self.log_tail()}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                if client.send(self.port, "GET", self.app.health_path, timeout=2).status == 200:
                    return
            time.sleep(0.05)
        raise ServerError(
            f"{self.server} ({self.app.name}) was not ready within {timeout:g} s: {self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the group, SIGKILL what is left after `timeout`, reap; safe to repeat."""
        group = self.process.pid
        workers = descendants(group)
        _signal_group(group, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(group, signal.SIGKILL)
            self.process.wait(timeout)
        # Workers outlive a leader that died first: those in its group, and those in their own.
        if group_members(group):
            _signal_group(group, signal.SIGKILL)
            _wait_until_empty(group, timeout)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._log.close()

    def cpu_seconds(self) -> float:
        """CPU time used so far by every process of the server (leader and workers)."""
        return cpu_seconds([self.process.pid, *descendants(self.process.pid)])

    def log_tail(self, lines: int = 10) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace").strip()
        return " | ".join(text.splitlines()[-lines:]) or "(no output)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((client.HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def start(
    app: App, server: str, settings: ServerSettings, redis_url: str, log_dir: Path
) -> RunningServer:
    """Start `app` under `server` on a free port; don't wait for it (see wait_ready)."""
    port = free_port()
    argv = SERVERS[server](app, port, settings, redis_url)
    log_path = log_dir / f"{app.name}-{server}.log"
    log = log_path.open("ab")
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **dict(app.env), "FEEDSTORE_REDIS_URL": redis_url},
            start_new_session=True,
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )
    except BaseException:
        log.close()
        raise
    return RunningServer(app, server, port, process, log_path, log)


@contextlib.contextmanager
def running(
    app: App, server: str, settings: ServerSettings, redis_url: str, log_dir: Path
) -> Iterator[RunningServer]:
    """Start `app` under `server`, wait until it is ready, and always stop it on the way out."""
    started = start(app, server, settings, redis_url, log_dir)
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes in process group `group`."""
    return [pid for pid, _, pgrp in _live_processes() if pgrp == group]


def descendants(pid: int) -> list[int]:
    """Live (not zombie) descendants of process `pid`: children, their children, and so on."""
    children: dict[int, list[int]] = {}
    for child, parent, _ in _live_processes():
        children.setdefault(parent, []).append(child)
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children.get(parent, [])]
        found += frontier
    return found


def _live_processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent, process group) of every live (not zombie) process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited while we looked
        # After the parenthesised command: state, ppid, pgrp, ...
        state, ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if state not in ("Z", "X"):
            yield int(entry.name), int(ppid), int(pgrp)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time of these processes so far; ones that are gone count 0."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # After the parenthesised command, utime and stime are the 12th and 13th fields.
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def wait_until_idle(
    cpu_seconds: Callable[[], float],
    interval: float = IDLE_INTERVAL,
    timeout: float = 60.0,
) -> float:
    """Wait until the processes `cpu_seconds` reads (a scenario's server and its Redis) use at
    most IDLE_TICKS clock ticks of CPU in `interval` seconds; the seconds waited.

    When wrk stops, the requests the server had read still run to their end: a 10,000-entry
    bulk's take seconds (its p99 is 2-3 s). Without this wait they ran into the next
    scenario's measured window, taking its cores, and on the same Redis their commands counted
    as its Redis time."""
    started = time.monotonic()
    before = cpu_seconds()
    while time.monotonic() - started < timeout:
        time.sleep(interval)
        now = cpu_seconds()
        if now - before <= IDLE_TICKS / _CLOCK_TICKS:
            break
        before = now
    return time.monotonic() - started


# What Redis does in the background after a burst of writes: an AOF rewrite or a snapshot in a
# forked child, or one scheduled to start.
_BACKGROUND = ("aof_rewrite_in_progress", "aof_rewrite_scheduled", "rdb_bgsave_in_progress")


def wait_for_quiet_redis(urls: Iterable[str], timeout: float = 120.0) -> float:
    """Wait until no Redis in `urls` has a rewrite or snapshot running or scheduled, and the
    page cache is written back, so the next scenario doesn't pay for the writes of the one
    before (an AOF rewrite the 10,000-entry PUTs started would take a core from whatever ran
    next, and the AOF's everysec fsync would flush their gigabytes); the seconds waited."""
    started = time.monotonic()
    for url in urls:
        with redis.Redis.from_url(url) as connection:
            while time.monotonic() - started < timeout:
                info = connection.info("persistence")
                if not any(int(info.get(name, 0)) for name in _BACKGROUND):
                    break
                time.sleep(0.1)
    os.sync()
    return time.monotonic() - started


def rewrite_aofs(urls: Iterable[str], timeout: float = 120.0) -> float:
    """Rewrite the AOF of each Redis at `urls` that keeps one, and wait for the rewrites to
    end; the seconds waited.

    Redis rewrites its AOF once it has doubled since the last rewrite (past 64 MB), so where
    a rewrite fell was decided by the writes of every scenario before: after the bulks, a
    single PUT's window caught one (26 µs of CPU per request charged to that scenario, none
    to the one it was compared with). A window that starts on a fresh AOF takes only the
    rewrites its own writes cause."""
    urls = list(urls)
    waited = wait_for_quiet_redis(urls, timeout)
    for url in urls:
        with redis.Redis.from_url(url) as connection:
            if int(connection.info("persistence").get("aof_enabled", 0)):
                connection.bgrewriteaof()
    return waited + wait_for_quiet_redis(urls, timeout)


def rewrite_work(urls: Iterable[str]) -> tuple[int, float]:
    """The forks (AOF rewrites, snapshots) the Redis servers at `urls` have made so far, and
    the CPU seconds of those children that have ended (INFO stats and cpu). Redis's own CPU
    (cpu_seconds of its pid) leaves them out, though each takes a core while it runs: a
    scenario that writes fast starts one every few seconds."""
    forks, seconds = 0, 0.0
    for url in urls:
        with redis.Redis.from_url(url) as connection:
            forks += int(connection.info("stats")["total_forks"])
            cpu = connection.info("cpu")
            seconds += float(cpu["used_cpu_user_children"]) + float(cpu["used_cpu_sys_children"])
    return forks, seconds


def command_usec(urls: Iterable[str]) -> dict[str, int]:
    """The microseconds each command has taken so far (INFO commandstats), summed over the
    Redis servers at `urls`: the difference of two readings is where a scenario's Redis time
    went. A command's time includes the commands it runs: EXEC's, those of its MULTI; EVAL's,
    the script's `redis.call`s."""
    spent: dict[str, int] = {}
    for url in urls:
        with redis.Redis.from_url(url) as connection:
            for name, stats in connection.info("commandstats").items():
                command = name.removeprefix("cmdstat_")
                spent[command] = spent.get(command, 0) + int(stats["usec"])
    return spent


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def _wait_until_empty(group: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
