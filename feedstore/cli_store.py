"""How a command reaches its store's Redis: the --data and --redis-url options every such
command takes, the client it opens, the settings it loads, and CliError, a problem the user can
fix, reported as one line on stderr (cli.main)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.exceptions import RedisClusterException

from feedstore import connection
from feedstore.embedded import EmbeddedRedis
from feedstore.replication import Replication
from feedstore.settings import Settings

DEFAULT_DATA_DIR = Path("feedstore-data")


class CliError(Exception):
    """A problem the user can fix, reported as one line on stderr with exit status 1 (or
    `status`)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """--data and --redis-url, as every command that works on a store's Redis takes them:
    the given Redis, or the embedded one of --data (a running serve's, or one started now)."""
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="./%(default)s")
    parser.add_argument(
        "--redis-url", help="the Redis a feedstore serve uses (any URL serve takes)"
    )


def load_settings() -> Settings:
    try:
        return Settings.load()
    except ValueError as e:
        raise CliError(str(e)) from e


@contextlib.contextmanager
def redis_url_of(redis_url: str | None, data_dir: Path) -> Iterator[str]:
    """The Redis URL to use: the given one, a running serve's, or an embedded one started now."""
    if redis_url is not None:
        yield redis_url
        return
    running = EmbeddedRedis(data_dir)
    if running.socket_path.exists() and answers(running.url):
        yield running.url
        return
    with EmbeddedRedis(data_dir) as embedded:
        yield embedded.url


def answers(url: str) -> bool:
    """Whether a Redis answers at `url` (a running serve's embedded one)."""
    try:
        # A local unix socket: a Redis there answers at once or is not a serve's.
        with connection.connect(url, timeout=2) as probe:
            return bool(probe.ping())
    except redis.RedisError:
        return False


def redis_client(url: str) -> redis.Redis | redis.RedisCluster:
    """A client with FEEDSTORE_REDIS_TIMEOUT and FEEDSTORE_WAIT_*; CliError for a bad URL or
    setting."""
    try:
        settings = Settings.load()
        replication = Replication.of(settings.wait_replicas, settings.wait_timeout_ms)
        return connection.connect(url, settings.redis_timeout, replication=replication)
    except (ValueError, RedisClusterException) as e:
        raise CliError(f"can't use Redis at {without_password(url)}: {e}") from e


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))
