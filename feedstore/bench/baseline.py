"""The yardstick: a bare Flask app doing only the Redis round trips feedstore cannot avoid.

GET /b/<key> is one Redis GET; PUT /b/<key>[?r=<revision>] is one WATCH/GET/MULTI/SET/INCR/EXEC
cycle. Served by the same server, workers and Redis as feedstore, it shows what the framework,
the server and Redis cost on their own, so feedstore's overhead is the ratio of the two.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, Response, current_app, request

REDIS_URL_ENV = "FEEDSTORE_REDIS_URL"
JSON = "application/json; charset=utf-8"
UPDATED = b'{"feed":{"title":"Updated."}}'
CONFLICT = b'{"feed":{"title":"Optimistic locking failed."}}'
BUSY = b'{"feed":{"title":"Too many concurrent writes. Please retry."}}'
WRITE_ATTEMPTS = 50


def create_app(redis_client: redis.Redis | None = None) -> Flask:
    """Build the baseline app; its Redis comes from FEEDSTORE_REDIS_URL unless one is passed."""
    client = redis_client or redis.Redis.from_url(
        os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0")
    )
    app = Flask(__name__)
    app.extensions["baseline_redis"] = client
    app.add_url_rule("/b/<key>", view_func=read, methods=["GET"])
    app.add_url_rule("/b/<key>", view_func=write, methods=["PUT"])
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
                pipe.watch(revision_key)
                current = int(pipe.get(revision_key) or 0)
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


def health() -> Response:
    get_redis().ping()
    return Response(b'{"feed":{"title":"OK"}}', 200, content_type=JSON)
