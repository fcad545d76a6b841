"""The yardstick: a bare Flask app doing only the Redis round trips feedstore cannot avoid.

GET /b/<key> is one Redis GET; PUT /b/<key>[?r=<revision>] is one WATCH/GET/MULTI/SET/INCR/EXEC
cycle. PUT /b/ takes a feed of entries with ids `<key>,<revision>`, as feedstore's PUT /d/ does,
and issues the Redis commands feedstore's transaction issues for them, with no validation: WATCH
of each entry's revision key, one MGET of its document, revision and alias keys and the schema
version, the revision checks, then MULTI, one MSET of the documents and revisions, one ZADD per
parent that gains children, with the change feed on (feedstore's default, its `changes`
setting) the script of XADDs that records each entry's event, on streams of its own, EXEC. Each
WATCH is sent with the read after it, in one round trip, as feedstore sends them. With `?_bulk`
it does that per chunk of `max_entries`, `bulk_workers` chunks at a time, as bulk.py does.
Served by the same server, workers and Redis as feedstore, it shows what the framework, the
server and Redis cost on their own, so feedstore's overhead is the ratio of the two.

The single PUT stays the bare cycle, without the change feed's XADDs: the yardstick issue 11
(>= 0.8x) and the change feed's design (>= 0.7x with its XADDs) hold feedstore's PUT to.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import redis
from flask import Flask, Response, current_app, request

from feedstore import changes, watch
from feedstore.keys import KeyScheme
from feedstore.principal import ANONYMOUS_NAME
from feedstore.settings import Settings

REDIS_URL_ENV = "FEEDSTORE_REDIS_URL"
JSON = "application/json; charset=utf-8"
UPDATED = b'{"feed":{"title":"Updated."}}'
CONFLICT = b'{"feed":{"title":"Optimistic locking failed."}}'
BUSY = b'{"feed":{"title":"Too many concurrent writes. Please retry."}}'
WRITE_ATTEMPTS = 50
SCHEMA_VERSION_KEY = "b:schema:v"
WHOLE_STREAM = "b:x:/"
_PARTITION = KeyScheme().partition


class Conflict(Exception):
    """An entry's revision is not the stored one."""


class Busy(Exception):
    """Other writers kept slipping in between WATCH and EXEC."""


def create_app(redis_client: redis.Redis | None = None) -> Flask:
    """Build the baseline app; its Redis comes from FEEDSTORE_REDIS_URL unless one is passed."""
    client = redis_client or redis.Redis.from_url(
        os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0")
    )
    app = Flask(__name__)
    app.extensions["baseline_redis"] = client
    app.extensions["baseline_settings"] = Settings.load()
    app.add_url_rule("/b/<key>", view_func=read, methods=["GET"])
    app.add_url_rule("/b/<key>", view_func=write, methods=["PUT"])
    app.add_url_rule("/b/", view_func=write_feed, methods=["PUT"])
    app.add_url_rule("/b/_revision", view_func=read_revision, methods=["GET"])
    app.add_url_rule("/_health", view_func=health, methods=["GET"])
    return app


def get_redis() -> redis.Redis:
    client: redis.Redis = current_app.extensions["baseline_redis"]
    return client


def read(key: str) -> Response:
    """One GET; 204 when the key is empty, as feedstore answers."""
    value = get_redis().get(f"b:d:{key}")
    if value is None:
        return Response(status=204)
    return Response(value, 200, content_type=JSON)


def write(key: str) -> Response:
    """Store the body if `?r=` is the current revision (or absent); answer the new one as ETag.

    Like feedstore, a WatchError re-runs the check, a bounded number of times, so a forced write
    still lands when another writer slips in; the bench's writers never share a key, so there
    each request is exactly one cycle.
    """
    body = request.get_data()
    expected = request.args.get("r", type=int)
    revision_key = f"b:r:{key}"
    with get_redis().pipeline(transaction=True) as pipe:
        for _ in range(WRITE_ATTEMPTS):
            try:
                current = int(watch.watch_and_read(pipe, [revision_key], "GET", revision_key) or 0)
                if expected is not None and expected != current:
                    return Response(CONFLICT, 409, content_type=JSON)
                pipe.multi()
                pipe.set(f"b:d:{key}", body)
                pipe.incr(revision_key)
                _, revision = pipe.execute()
                return Response(UPDATED, 200, {"ETag": f'"{revision}"'}, content_type=JSON)
            except redis.WatchError:
                continue
    return Response(BUSY, 503, content_type=JSON)


def read_revision() -> Response:
    """GET /b/_revision?k=<key>: the revision of an entry of PUT /b/, as its ETag."""
    revision = int(get_redis().get(f"b:r:{request.args['k']}") or 0)
    return Response(UPDATED, 200, {"ETag": f'"{revision}"'}, content_type=JSON)


def write_feed() -> Response:
    """PUT /b/[?_bulk]: the entries of a feed, in one transaction or, in bulk, in chunks."""
    entries = orjson.loads(request.get_data())["feed"]["entry"]
    settings: Settings = current_app.extensions["baseline_settings"]
    size = settings.max_entries if "_bulk" in request.args else len(entries)
    chunks = [entries[start : start + size] for start in range(0, len(entries), size)]
    client = get_redis()
    events = settings.changes == "on"
    try:
        if len(chunks) == 1:
            write_entries(client, chunks[0], events)
        else:
            with ThreadPoolExecutor(min(settings.bulk_workers, len(chunks))) as pool:
                futures = [pool.submit(write_entries, client, chunk, events) for chunk in chunks]
            for future in futures:
                future.result()
    except Conflict:
        return Response(CONFLICT, 409, content_type=JSON)
    except Busy:
        return Response(BUSY, 503, content_type=JSON)
    return Response(UPDATED, 200, content_type=JSON)


def write_entries(
    client: redis.Redis, entries: Sequence[dict[str, Any]], events: bool = True
) -> None:
    """feedstore's Redis commands for a PUT of `entries`, all or none; Conflict on a stale id.
    `events`: the change feed's too."""
    # An entry without an id (a forced write) is at its first link, the self link in the bench.
    sent = [
        entry["id"].rpartition(",") if "id" in entry else (entry["link"][0]["___href"], "", "")
        for entry in entries
    ]
    keys = [key for key, _, _ in sent]
    revisions = [f"b:r:{key}" for key in keys]
    names = [*(f"b:d:{key}" for key in keys), *revisions, *(f"b:a:{key}" for key in keys)]
    n = len(keys)
    with client.pipeline(transaction=True) as pipe:
        for _ in range(WRITE_ATTEMPTS):
            try:
                raw = watch.watch_and_read(pipe, revisions, "MGET", *names, SCHEMA_VERSION_KEY)
                stored: dict[str, bytes | int] = {}
                children: dict[str, dict[str, int]] = {}
                written: list[tuple[str, int, str]] = []
                for i, (key, _, revision) in enumerate(sent):
                    current = int(raw[n + i] or 0)
                    if revision and int(revision) != current:
                        raise Conflict(key)
                    stored[f"b:d:{key}"] = orjson.dumps(entries[i])
                    stored[f"b:r:{key}"] = current + 1
                    written.append((key, current + 1, "u" if raw[i] is not None else "c"))
                    if raw[i] is None:
                        children.setdefault(f"b:c:{key.rpartition('/')[0]}", {})[key] = 0
                pipe.multi()
                pipe.mset(stored)
                for name, added in children.items():
                    pipe.zadd(name, added)
                if events:
                    changes.queue_events(pipe, _stream, WHOLE_STREAM, ANONYMOUS_NAME, written)
                pipe.execute()
                return
            except redis.WatchError:
                continue
    raise Busy()


def _stream(key: str) -> str:
    """The baseline's change stream of `key`'s partition, as feedstore partitions keys."""
    return f"b:x:{_PARTITION(key)}"


def health() -> Response:
    get_redis().ping()
    return Response(b'{"feed":{"title":"OK"}}', 200, content_type=JSON)
