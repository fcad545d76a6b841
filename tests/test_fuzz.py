"""schemathesis against the real app on a real redis-server: the document and the server agree.

Every operation of `GET /d/_openapi` is fuzzed with schemathesis's checks: no 5xx, every status
documented, every response body and header as documented, invalid requests (by the document)
refused. Without a schema and with the README's (`examples/schema.json`), so the custom fields it
generates are the ones the document declares; and once more in the bare JSON style, whose
document describes its bare answers.

Not checked: `positive_data_acceptance`, which expects every request the document allows to
succeed. The contract answers 400 for refusals that depend on the data stored rather than on the
request's shape (a parent that doesn't exist, a cursor this server didn't sign, a regular
expression that doesn't compile; vte.cx's status), and OpenAPI can't describe state.

The budget is FEEDSTORE_FUZZ_EXAMPLES examples per operation (scripts/fuzz raises it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import redis
import schemathesis
from flask import Flask
from schemathesis.config import SchemathesisConfig

from feedstore import create_app, openapi
from feedstore.embedded import EmbeddedRedis
from feedstore.schema import Schema

EXAMPLES = int(os.environ.get("FEEDSTORE_FUZZ_EXAMPLES", "25"))
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "examples" / "schema.json"
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {"positive_data_acceptance": {"enabled": False}},
        "generation": {"max-examples": EXAMPLES},
        # Chains need each step to succeed; the per-operation phases send the invalid requests.
        "phases": {"stateful": {"generation": {"mode": "positive"}}},
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
    }
)


def fuzzed_app(
    redis_server: EmbeddedRedis, schema_document: dict[str, Any] | None, app: Flask | None = None
) -> Flask:
    """The app (a new one, or `app` again) on the test process's redis-server, emptied, with the
    schema and two seeds."""
    # A change feed's `_wait` waits one second at most here, not the minute a case may ask.
    app = app or create_app({"changes_wait_max": 1}, redis.Redis.from_url(redis_server.url))
    store = app.extensions["feedstore"].store
    store.redis.flushdb()
    store.set_schema(schema_document)
    tester = app.test_client()
    headers = {"X-Requested-With": "XMLHttpRequest"}
    for key in ("/11", "/11/0-8-2-9-1-1-1"):
        tester.put(f"/d{key}", json={"title": "seed"}, headers=headers)
    return app


EXAMPLE_SCHEMA = json.loads(SCHEMA_FILE.read_text())
without_schema = schemathesis.openapi.from_dict(openapi.document(None), config=CONFIG)
with_schema = schemathesis.openapi.from_dict(
    openapi.document(Schema(EXAMPLE_SCHEMA)), config=CONFIG
)
bare_style = schemathesis.openapi.from_dict(openapi.document(None, "bare"), config=CONFIG)


# schemathesis's WSGI transport leaves the page's file response unclosed (the app streams it).
PAGE_LEFT_OPEN = "ignore:Exception ignored in.*index.html:pytest.PytestUnraisableExceptionWarning"


@pytest.fixture(scope="module")
def app_without_schema(redis_server: EmbeddedRedis) -> Flask:
    return fuzzed_app(redis_server, None)


@pytest.fixture(scope="module")
def app_with_schema(redis_server: EmbeddedRedis) -> Flask:
    return fuzzed_app(redis_server, EXAMPLE_SCHEMA)


@pytest.fixture(scope="module")
def app_bare_style(redis_server: EmbeddedRedis) -> Flask:
    # A database of its own, like the stateful phase's.
    client = redis.Redis.from_url(redis_server.url, db=2)
    return fuzzed_app(
        redis_server, None, create_app({"json_style": "bare", "changes_wait_max": 1}, client)
    )


@pytest.mark.filterwarnings(PAGE_LEFT_OPEN)
@without_schema.parametrize()
def test_without_schema(case: schemathesis.Case, app_without_schema: Flask) -> None:
    case.call_and_validate(app=app_without_schema)


@pytest.mark.filterwarnings(PAGE_LEFT_OPEN)
@with_schema.parametrize()
def test_with_schema(case: schemathesis.Case, app_with_schema: Flask) -> None:
    case.call_and_validate(app=app_with_schema)


@pytest.mark.filterwarnings(PAGE_LEFT_OPEN)
@bare_style.parametrize()
def test_bare_style(case: schemathesis.Case, app_bare_style: Flask) -> None:
    case.call_and_validate(app=app_bare_style)


def test_create_read_update_delete_chains(redis_server: EmbeddedRedis) -> None:
    """The stateful phase: requests chained along the document's links (a PUT's entry is read,
    patched and deleted with the ETag it answered) and along the `Location` of a POST's 201, so
    they meet entries that exist, with every check after each step."""
    # A database of its own: its scenarios empty it, the module's apps keep theirs.
    app = fuzzed_app(
        redis_server,
        None,
        create_app({"changes_wait_max": 1}, redis.Redis.from_url(redis_server.url, db=1)),
    )

    class Workflow(without_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Each scenario starts from the same store, so hypothesis can replay and shrink it.
            fuzzed_app(redis_server, None, app)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"app": app}

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=max(EXAMPLES // 2, 5),
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
