"""The scenarios, as a table: each seeds its data over HTTP and says what wrk should send.

A scenario's `prepare` runs before every wrk run (seeding is idempotent), so write scenarios
start from the revisions the server holds right now. The scale scenarios read the data set the
run seeded once, in-process, before the servers started (scale.py). To add a scenario, write a
prepare function and a row in SCENARIOS; COMPARISONS pairs two scenarios and sets a target.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from feedstore import codec_xml
from feedstore.bench import client, scale
from feedstore.bench.client import RequestFailed
from feedstore.bench.load import REVISION, ConnectionPlan, Load, RequestTemplate
from feedstore.bench.scale import ScaleData
from feedstore.bench.servers import App

BASELINE = App("baseline", "feedstore.bench.baseline:create_app")
FEEDSTORE = App("feedstore", "feedstore.app:create_app")
# The same app on the Redis that holds the scale data set and its schema.
FEEDSTORE_SCALE = App("feedstore-scale", "feedstore.app:create_app", redis="scale")
APPS = {app.name: app for app in (BASELINE, FEEDSTORE, FEEDSTORE_SCALE)}

WRITE_HEADERS = {"X-Requested-With": "XMLHttpRequest", "Content-Type": "application/json"}
XML_HEADERS = {"X-Requested-With": "XMLHttpRequest", "Content-Type": "application/atom+xml"}
PARENT = "/bench"
ENTRY_BYTES = 1024
BATCH_ENTRIES = 100


@dataclass(frozen=True)
class Concurrency:
    """How hard wrk pushes: reads spread over connections, writes one key per thread."""

    connections: int = 16
    reader_threads: int = 2
    writers: int = 16


@dataclass(frozen=True)
class Target:
    """What a scenario prepares against: a running app, how hard to push it, the scale data."""

    port: int
    concurrency: Concurrency
    scale: ScaleData | None = None  # set when the run seeded the scale data set


Prepare = Callable[[Target], Load]


@dataclass(frozen=True)
class Scenario:
    """One thing to measure: an app, an operation, and how to seed and load it."""

    name: str
    app: App
    operation: str
    description: str
    prepare: Prepare

    @property
    def scale(self) -> bool:
        """Whether it reads the scale data set, which the run must seed first."""
        return self.app.redis == "scale"


@dataclass(frozen=True)
class Comparison:
    """One scenario's throughput over another's, measured in the same run, and the target."""

    name: str
    subject: str
    reference: str
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


def baseline_get(target: Target) -> Load:
    port, concurrency = target.port, target.concurrency
    body = json.dumps(entry("/read")).encode()
    client.expect(
        client.send(port, "PUT", "/b/read", body, WRITE_HEADERS), 200, doing="seed /b/read"
    )
    plan = ConnectionPlan(RequestTemplate("GET", "/b/read"))
    return Load((plan,), concurrency.reader_threads, concurrency.connections)


def baseline_put(target: Target) -> Load:
    port, concurrency = target.port, target.concurrency
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


def feedstore_get(target: Target) -> Load:
    return _read_entry(target, "")


def feedstore_get_xml(target: Target) -> Load:
    """The entry of feedstore-get, answered in Atom XML."""
    return _read_entry(target, "&x")


def _read_entry(target: Target, options: str) -> Load:
    port, concurrency = target.port, target.concurrency
    create_parent(port)
    key = f"{PARENT}/read"
    client.expect(
        client.send(port, "PUT", "/d/", feed_body(entry(key)), WRITE_HEADERS), 200, doing=key
    )
    plan = ConnectionPlan(RequestTemplate("GET", f"/d{key}?e{options}"))
    return Load((plan,), concurrency.reader_threads, concurrency.connections)


def feedstore_put(target: Target) -> Load:
    return _write_entries(
        target, "w", lambda key: put_request(feed_body(entry(key, REVISION)), WRITE_HEADERS)
    )


def feedstore_put_xml(target: Target) -> Load:
    """The entry of feedstore-put with its id, sent as an Atom feed."""
    return _write_entries(
        target, "x", lambda key: put_request(codec_xml.dumps([entry(key, REVISION)]), XML_HEADERS)
    )


def feedstore_patch(target: Target) -> Load:
    """`{"score": n}` on the entry of feedstore-put, n the revision, with `If-Match` of it."""
    return _write_entries(
        target,
        "p",
        lambda key: RequestTemplate(
            "PATCH",
            f"/d{key}",
            {**WRITE_HEADERS, "If-Match": f'"{REVISION}"'},
            f'{{"score": {REVISION}}}'.encode(),
        ),
    )


def put_request(body: bytes, headers: dict[str, str]) -> RequestTemplate:
    return RequestTemplate("PUT", "/d/", headers, body)


def _write_entries(target: Target, prefix: str, request: Callable[[str], RequestTemplate]) -> Load:
    """One key per writer, seeded by a forced PUT, then written conditionally by `request(key)`."""
    port, concurrency = target.port, target.concurrency
    create_parent(port)
    plans = []
    for writer in range(1, concurrency.writers + 1):
        key = f"{PARENT}/{prefix}{writer}"
        seeded = client.expect(
            client.send(port, "PUT", "/d/", feed_body(entry(key)), WRITE_HEADERS), 200, doing=key
        )
        resync = RequestTemplate("GET", f"/d{key}?e")
        plans.append(ConnectionPlan(request(key), _revision(seeded, key), resync))
    return Load(tuple(plans), concurrency.writers, concurrency.writers)


def feedstore_put_batch(target: Target) -> Load:
    """BATCH_ENTRIES entries with ids; always written together, they share one revision."""
    port, concurrency = target.port, target.concurrency
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


# -- feeds at scale (the data set of scale.py) -----------------------------------------------


def small_page(target: Target) -> Load:
    return _read_feed(target, scale.SMALL, "")


def big_page(target: Target) -> Load:
    return _read_feed(target, scale.BIG, "")


def big_middle_page(target: Target) -> Load:
    """The page after the first half of /big's children, from a cursor found once per run."""
    return _read_feed(target, scale.BIG, f"&p={_scale_data(target).middle_cursor}")


def small_filtered(target: Target) -> Load:
    return _read_feed(target, scale.SMALL, f"&{scale.INDEXED_FILTER}")


def big_filtered(target: Target) -> Load:
    return _read_feed(target, scale.BIG, f"&{scale.INDEXED_FILTER}")


def _read_feed(target: Target, parent: str, options: str) -> Load:
    _scale_data(target)
    plan = ConnectionPlan(RequestTemplate("GET", f"/d{parent}?f&l={scale.PAGE}{options}"))
    return Load((plan,), target.concurrency.reader_threads, target.concurrency.connections)


def _scale_data(target: Target) -> ScaleData:
    if target.scale is None:
        raise RequestFailed("the scale scenarios need the data set the run seeds (scale.seed)")
    return target.scale


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
    Scenario(
        "feedstore-patch", FEEDSTORE, "PATCH",
        'PATCH /d/bench/pN {"score": n}, If-Match (1 KB entry)', feedstore_patch,
    ),
    Scenario(
        "feedstore-get-xml", FEEDSTORE, "GET", "GET /d/bench/read?e&x (Atom)", feedstore_get_xml
    ),
    Scenario(
        "feedstore-put-xml", FEEDSTORE, "PUT",
        "PUT /d/ the 1 KB entry as Atom, with its id (conditional)", feedstore_put_xml,
    ),
    Scenario(
        "scale-small-page", FEEDSTORE_SCALE, "FEED",
        f"GET /d/small?f&l={scale.PAGE}, key order", small_page,
    ),
    Scenario(
        "scale-big-page", FEEDSTORE_SCALE, "FEED",
        f"GET /d/big?f&l={scale.PAGE}, key order", big_page,
    ),
    Scenario(
        "scale-big-middle", FEEDSTORE_SCALE, "FEED",
        f"GET /d/big?f&l={scale.PAGE}&p=<cursor at the middle>", big_middle_page,
    ),
    Scenario(
        "scale-small-g3", FEEDSTORE_SCALE, "FILTER",
        f"GET /d/small?f&l={scale.PAGE}&{scale.INDEXED_FILTER} (index)", small_filtered,
    ),
    Scenario(
        "scale-big-g3", FEEDSTORE_SCALE, "FILTER",
        f"GET /d/big?f&l={scale.PAGE}&{scale.INDEXED_FILTER} (index)", big_filtered,
    ),
)  # fmt: skip

# The issues' targets: feedstore's overhead (2, 3), PATCH against PUT (4), XML against JSON (5),
# a parent with a million children against one with a thousand (6).
COMPARISONS: tuple[Comparison, ...] = (
    Comparison("feedstore/baseline GET", "feedstore-get", "baseline-get", 0.8),
    Comparison("feedstore/baseline PUT", "feedstore-put", "baseline-put", 0.7),
    Comparison("PATCH/PUT", "feedstore-patch", "feedstore-put", round(1 / 1.2, 2)),
    Comparison("XML/JSON GET", "feedstore-get-xml", "feedstore-get", 0.5),
    Comparison("XML/JSON PUT", "feedstore-put-xml", "feedstore-put", 0.5),
    Comparison("big/small key order", "scale-big-page", "scale-small-page", round(1 / 1.5, 2)),
    Comparison("big middle/small", "scale-big-middle", "scale-small-page", round(1 / 1.5, 2)),
    Comparison("big/small group=g3", "scale-big-g3", "scale-small-g3", round(1 / 1.5, 2)),
)


def check(port: int, load: Load) -> Load:
    """Send each plan's request once, expecting 2xx; return the load with the revisions after it.

    A wrong template shows up here as one clear error instead of a run of 4xx answers.
    """
    checked = []
    for plan in load.plans:
        request = plan.request.render(plan.revision)
        reply = client.send(port, request.method, request.path, request.body, request.headers)
        client.expect(reply, *range(200, 300), doing=f"{request.method} {request.path}")
        if plan.revision is not None:
            plan = replace(plan, revision=reply.revision or plan.revision + 1)
        checked.append(plan)
    return replace(load, plans=tuple(checked))
