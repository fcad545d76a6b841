"""`feedstore changes trim` (changes.py's retention pass), with a progress bar on stderr, and the
thread `feedstore serve` runs it in every minute.

It takes `--data DIR | --redis-url URL` as `feedstore schema` does, so it runs while a server
serves: trimming only ever drops events older than the ones writes add.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable

import redis
from tqdm import tqdm

from feedstore.changes import DISCOVERY_SECONDS, ChangeStreams
from feedstore.cli_store import add_store_options, load_settings, redis_client, redis_url_of
from feedstore.settings import Settings

Subcommands = argparse._SubParsersAction
EVERY_SECONDS = 60.0
# The lease serve's trim threads share on their Redis: the thread that sets it runs the pass,
# and it lasts most of a period, so that of the serve processes sharing one Redis only one
# runs each period's pass (each ran its own, every one SCANning the keyspace).
TRIM_LEASE_KEY = "fs:xtrim"
LEASE_SHARE = 0.9


def add_commands(subcommands: Subcommands) -> None:
    """Register `feedstore changes trim`."""

    parser = subcommands.add_parser(
        "changes",
        help="trim the change feed's streams to their retention (serve does it every minute)",
        description="Drop the change-feed events older than FEEDSTORE_CHANGES_RETENTION "
        "seconds and those past the newest FEEDSTORE_CHANGES_MAX of each stream, recording "
        "each stream's 410 horizon in the same transaction.",
    )
    parser.add_argument("action", choices=("trim",))
    add_store_options(parser)
    parser.set_defaults(command=run_changes)


def run_changes(args: argparse.Namespace) -> int:

    settings = load_settings()
    with redis_url_of(args.redis_url, args.data.absolute()) as url:
        client = redis_client(url)
        try:
            streams = ChangeStreams(client, settings.keys, isinstance(client, redis.RedisCluster))
            names = list(streams.stream_names())
            trimmed = 0
            with tqdm(
                names, unit=" streams", desc="changes trim", disable=not sys.stderr.isatty()
            ) as bar:
                for _, removed in streams.trim(
                    settings.changes_retention, settings.changes_max, names=names
                ):
                    trimmed += removed
                    bar.update()
        finally:
            client.close()
    print(f"changes trim: {len(names)} streams, {trimmed} events trimmed")
    return 0


class Trimmer:
    """A thread that runs the retention pass at start, then every `every` seconds until
    stopped; a failure is reported and the next pass runs on time. It trims the streams a SCAN
    found, SCANning again at most every `discover_every` seconds (known_stream_names)."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        report: Callable[[str], None],
        every: float = EVERY_SECONDS,
        discover_every: float = DISCOVERY_SECONDS,
    ) -> None:
        self.url = url
        self.settings = settings
        self.report = report
        self.every = every
        self.discover_every = discover_every  # how often the pass SCANs for new streams
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="changes-trim", daemon=True)

    def start(self) -> Trimmer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def run_once(self) -> int:
        """One pass; how many events went."""
        client = redis_client(self.url)
        try:
            streams = ChangeStreams(
                client, self.settings.keys, isinstance(client, redis.RedisCluster)
            )
            settings = self.settings
            names = streams.known_stream_names(int(self.discover_every * 1000))
            passes = streams.trim(settings.changes_retention, settings.changes_max, names=names)
            return sum(removed for _, removed in passes)
        finally:
            client.close()

    def run_if_due(self) -> int | None:
        """One pass (run_once), unless another serve on this Redis has run one within the
        period (None then): whoever sets TRIM_LEASE_KEY first runs it."""
        client = redis_client(self.url)
        try:
            lease_ms = max(1, int(self.every * 1000 * LEASE_SHARE))
            if not client.set(TRIM_LEASE_KEY, os.getpid(), nx=True, px=lease_ms):
                return None
        finally:
            client.close()
        return self.run_once()

    def _run(self) -> None:
        # The first pass at start: what piled up while no serve ran goes at once, and the SCAN
        # for streams is over before the first requests rather than in their midst.
        while not self._stopping.is_set():
            try:
                self.run_if_due()
            except redis.RedisError as e:
                self.report(f"the change feed's trim pass failed: {e}")
            self._stopping.wait(self.every)
