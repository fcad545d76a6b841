"""Redis Sentinel: the `redis+sentinel://` URL, and a client that follows the primary it names.

    redis+sentinel://[[username]:password@]host[:port][,host[:port]...]/service[?db=N]

Each host:port is a Sentinel (port 26379 by default; an IPv6 address in brackets), `service` is
the name the Sentinels monitor (`sentinel monitor <service> ...`), `db` the database number (0).
The username and password, percent-encoded, authenticate to the primary; the Sentinels are asked
without. redis-py's `from_url` reads none of this, hence this parser.

The client is `Sentinel(...).master_for(service)`: every new connection asks a Sentinel where the
primary is, and a connection that finds its server demoted (READONLY) is closed and reported as a
ConnectionError, so the next attempt reaches the new primary. A failover is followed without a
restart; requests during it are retried or answered 503 (store.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379
_ADDRESS = re.compile(
    r"\[(?P<ipv6>[^\]]+)\](?::(?P<port6>[0-9]+))?|(?P<host>[^:\[\]]+)(?::(?P<port>[0-9]+))?"
)


@dataclass(frozen=True)
class SentinelUrl:
    """What a `redis+sentinel://` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith(SCHEME + "://")


def parse(url: str) -> SentinelUrl:
    """Read a `redis+sentinel://` URL; ValueError saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SCHEME:
        raise ValueError(f"a Sentinel URL starts with {SCHEME}://")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    if not hosts:
        raise ValueError("no Sentinel address: name at least one host:port")
    sentinels = tuple(_address(text) for text in hosts.split(","))
    service = unquote(parts.path.strip("/"))
    if not service or "/" in service:
        raise ValueError("name the monitored service as the path: redis+sentinel://host:port/name")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"db"})
    if unknown:
        raise ValueError(f"unknown URL option {unknown[0]} (only db is read)")
    db = query.get("db", ["0"])[-1]
    if not db.isascii() or not db.isdigit():
        raise ValueError(f"db must be a database number: {db}")
    return SentinelUrl(
        sentinels,
        service,
        int(db),
        unquote(username) or None,
        unquote(password) or None,
    )


def client(url: SentinelUrl, redis_class: type[redis.Redis], **options: Any) -> redis.Redis:
    """A client of the primary `url` names; `options` (timeouts, retry) apply to every connection,
    the socket ones to the Sentinels too."""
    sentinel_options: dict[str, Any] = {k: v for k, v in options.items() if k.startswith("socket_")}
    # Asking the next Sentinel is the retry: redis-py's default backs off for seconds first.
    sentinel_options["retry"] = Retry(NoBackoff(), 0)
    sentinels = Sentinel(list(url.sentinels), sentinel_kwargs=sentinel_options)
    return sentinels.master_for(
        url.service,
        redis_class=redis_class,
        db=url.db,
        username=url.username,
        password=url.password,
        **options,
    )


def _address(text: str) -> tuple[str, int]:
    found = _ADDRESS.fullmatch(text)
    if found is None:
        raise ValueError(f"not a Sentinel host:port: {text!r}")
    host = found["ipv6"] or found["host"]
    port = int(found["port6"] or found["port"] or DEFAULT_PORT)
    if not 0 < port < 65536:
        raise ValueError(f"not a TCP port: {port} in {text!r}")
    return host, port
