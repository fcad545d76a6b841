"""The scenarios, as a table: each seeds its data over HTTP and says what wrk should send.

A scenario's `prepare` runs before every wrk run (seeding is idempotent), so write scenarios
start from the revisions the server holds right now. To add one (PATCH, XML, feed queries),
write a prepare function and a row in SCENARIOS; COMPARISONS pairs feedstore with the baseline.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from feedstore.bench import client
from feedstore.bench.client import RequestFailed
from feedstore.bench.load import REVISION, ConnectionPlan, Load, RequestTemplate
from feedstore.bench.servers import App

BASELINE = App("baseline", "feedstore.bench.baseline:create_app")
FEEDSTORE = App("feedstore", "feedstore.app:create_app")
APPS = {app.name: app for app in (BASELINE, FEEDSTORE)}

WRITE_HEADERS = {"X-Requested-With": "XMLHttpRequest", "Content-Type": "application/json"}
PARENT = "/bench"
ENTRY_BYTES = 1024
BATCH_ENTRIES = 100


@dataclass(frozen=True)
class Concurrency:
    """How hard wrk pushes: reads spread over connections, writes one key per thread."""

    connections: int = 16
    reader_threads: int = 2
    writers: int = 16


Prepare = Callable[[int, Concurrency], Load]


@dataclass(frozen=True)
class Scenario:
    """One thing to measure: an app, an operation, and how to seed and load it."""

    name: str
    app: App
    operation: str
    description: str
    prepare: Prepare


@dataclass(frozen=True)
class Comparison:
    """feedstore's throughput over the baseline's, for one operation, and the target ratio."""

    operation: str
    feedstore: str
    baseline: str
    target: float


def entry(key: str, revision: str | None = None) -> dict[str, Any]:
    """An entry of about ENTRY_BYTES of JSON at `key`, with `"id"` when a revision is given."""
    fields: dict[str, Any] = {
        "link": [{"___href": key, "___rel": "self"}],
        "title": f"Bench entry {key}",
        "userinfo": {"id": 1234, "email": "bench@example.com"},
        "favorite": {"food": "apple", "music": "J-POP"},
        "summary": "",
    }
    if revision is not None:
        fields = {"id": f"{key},{revision}", **fields}
    fields["summary"] = "x" * max(0, ENTRY_BYTES - len(json.dumps(fields)))
    return fields


def feed_body(*entries: dict[str, Any]) -> bytes:
    return json.dumps({"feed": {"entry": list(entries)}}).encode()


# -- baseline -------------------------------------------------------------------------------


def baseline_get(port: int, concurrency: Concurrency) -> Load:
    body = json.dumps(entry("/read")).encode()
    client.expect(
        client.send(port, "PUT", "/b/read", body, WRITE_HEADERS), 200, doing="seed /b/read"
    )
    plan = ConnectionPlan(RequestTemplate("GET", "/b/read"))
    return Load((plan,), concurrency.reader_threads, concurrency.connections)


def baseline_put(port: int, concurrency: Concurrency) -> Load:
    plans = []
    for writer in range(1, concurrency.writers + 1):
        path = f"/b/w{writer}"
        body = json.dumps(entry(path)).encode()
        forced = RequestTemplate("PUT", path, WRITE_HEADERS, body)
        seeded = client.expect(client.send(port, "PUT", path, body, WRITE_HEADERS), 200, doing=path)
        conditional = replace(forced, path=f"{path}?r={REVISION}")
        plans.append(ConnectionPlan(conditional, _revision(seeded, path), resync=forced))
    return Load(tuple(plans), concurrency.writers, concurrency.writers)


# -- feedstore ------------------------------------------------------------------------------


def feedstore_get(port: int, concurrency: Concurrency) -> Load:
    create_parent(port)
    key = f"{PARENT}/read"
    client.expect(
        client.send(port, "PUT", "/d/", feed_body(entry(key)), WRITE_HEADERS), 200, doing=key
    )
    plan = ConnectionPlan(RequestTemplate("GET", f"/d{key}?e"))
    return Load((plan,), concurrency.reader_threads, concurrency.connections)


def feedstore_put(port: int, concurrency: Concurrency) -> Load:
    create_parent(port)
    plans = []
    for writer in range(1, concurrency.writers + 1):
        key = f"{PARENT}/w{writer}"
        seeded = client.expect(
            client.send(port, "PUT", "/d/", feed_body(entry(key)), WRITE_HEADERS), 200, doing=key
        )
        conditional = RequestTemplate("PUT", "/d/", WRITE_HEADERS, feed_body(entry(key, REVISION)))
        resync = RequestTemplate("GET", f"/d{key}?e")
        plans.append(ConnectionPlan(conditional, _revision(seeded, key), resync))
    return Load(tuple(plans), concurrency.writers, concurrency.writers)


def feedstore_put_batch(port: int, concurrency: Concurrency) -> Load:
    """BATCH_ENTRIES entries with ids; always written together, they share one revision."""
    create_parent(port)
    plans = []
    for writer in range(1, concurrency.writers + 1):
        keys = [f"{PARENT}/b{writer}-{number:03d}" for number in range(BATCH_ENTRIES)]
        forced = feed_body(*(entry(key) for key in keys))
        client.expect(client.send(port, "PUT", "/d/", forced, WRITE_HEADERS), 200, doing=keys[0])
        first = client.expect(client.send(port, "GET", f"/d{keys[0]}?e"), 200, doing=keys[0])
        conditional = feed_body(*(entry(key, REVISION) for key in keys))
        plans.append(
            ConnectionPlan(
                RequestTemplate("PUT", "/d/", WRITE_HEADERS, conditional),
                _revision(first, keys[0]),
                resync=RequestTemplate("GET", f"/d{keys[0]}?e"),
            )
        )
    return Load(tuple(plans), concurrency.writers, concurrency.writers, BATCH_ENTRIES)


def create_parent(port: int) -> None:
    """POST the parent of the bench entries; 409 means an earlier run made it."""
    body = json.dumps({"link": [{"___href": PARENT, "___rel": "self"}]}).encode()
    client.expect(client.send(port, "POST", "/d/", body, WRITE_HEADERS), 201, 409, doing=PARENT)


def _revision(reply: client.Reply, key: str) -> int:
    if reply.revision is None:
        raise RequestFailed(f"{key}: no ETag in the answer")
    return reply.revision


# -- the tables -----------------------------------------------------------------------------

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "baseline-get", BASELINE, "GET", "GET /b/read: one Redis GET", baseline_get
    ),
    Scenario(
        "baseline-put", BASELINE, "PUT",
        "PUT /b/wN?r=REV (1 KB): WATCH/GET/MULTI/SET/INCR/EXEC", baseline_put,
    ),
    Scenario(
        "feedstore-get", FEEDSTORE, "GET", "GET /d/bench/read?e", feedstore_get
    ),
    Scenario(
        "feedstore-put", FEEDSTORE, "PUT",
        "PUT /d/ one 1 KB entry with its id (conditional)", feedstore_put,
    ),
    Scenario(
        "feedstore-put100", FEEDSTORE, "PUT100",
        f"PUT /d/ {BATCH_ENTRIES} entries with ids, atomic", feedstore_put_batch,
    ),
)  # fmt: skip

COMPARISONS: tuple[Comparison, ...] = (
    Comparison("GET", "feedstore-get", "baseline-get", 0.8),
    Comparison("PUT", "feedstore-put", "baseline-put", 0.7),
)


def check(port: int, load: Load) -> Load:
    """Send each plan's request once, expecting 2xx; return the load with the revisions after it.

    A wrong template shows up here as one clear error instead of a run of 4xx answers.
    """
    checked = []
    for plan in load.plans:
        path, body = plan.request.render(plan.revision)
        reply = client.send(port, plan.request.method, path, body, plan.request.headers)
        client.expect(reply, *range(200, 300), doing=f"{plan.request.method} {path}")
        if plan.revision is not None:
            plan = replace(plan, revision=reply.revision or plan.revision + 1)
        checked.append(plan)
    return replace(load, plans=tuple(checked))
