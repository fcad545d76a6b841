"""The access log: one line per request, a request id on every answer, never a secret."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
import redis
from flask.testing import FlaskClient

from feedstore import logs
from feedstore.app import create_app
from tests.conftest import make_token

HEADERS = {"X-Requested-With": "XMLHttpRequest"}
SELF = {"link": [{"___href": "/a", "___rel": "self"}]}


@pytest.fixture
def web(real_redis: redis.Redis) -> FlaskClient:
    return create_app(redis_client=real_redis).test_client()


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="feedstore.access")
    return caplog


def send(web: FlaskClient, method: str, path: str, **options: object) -> tuple[int, dict[str, str]]:
    """A request, its response closed as a server closes it (the log line is written then)."""
    with web.open(path, method=method, **options) as response:  # type: ignore[arg-type]
        return response.status_code, dict(response.headers)


def test_every_request_is_one_line(web: FlaskClient, logged: pytest.LogCaptureFixture) -> None:
    send(web, "PUT", "/d/", json={"feed": {"entry": [SELF]}}, headers=HEADERS)
    send(web, "GET", "/d/a?e")
    send(web, "GET", "/d/nothing?e&x")
    send(web, "PUT", "/d/a", data=b"{bad", headers=HEADERS)
    access = [r for r in logged.records if r.name == "feedstore.access"]
    assert [(r.request.method, r.request.status) for r in access] == [  # type: ignore[attr-defined]
        ("PUT", 200),
        ("GET", 200),
        ("GET", 204),
        ("PUT", 400),
    ]
    text = [r.getMessage() for r in access]
    assert re.fullmatch(r'\S+ anonymous "PUT /d/" 200 \d+ [\d.]+ms id=[0-9a-f]{32}', text[0])
    assert '"GET /d/a?e" 200' in text[1]
    assert text[3].endswith("error=invalid_body")
    body_sizes = [r.request.bytes for r in access]  # type: ignore[attr-defined]
    assert body_sizes[2] == 0 and all(size > 0 for size in body_sizes[:2])
    assert access[1].request.route == "/d/<entry_path:path>"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [("abc-123", True), ("a" * 128, True), ("a" * 129, False), ("two words", False), ("", False)],
)
def test_a_request_id_is_echoed_or_made(web: FlaskClient, sent: str, echoed: bool) -> None:
    _, headers = send(web, "GET", "/_health", headers={"X-Request-Id": sent})
    if echoed:
        assert headers["X-Request-Id"] == sent
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"])


def test_no_secret_reaches_the_log(web: FlaskClient, logged: pytest.LogCaptureFixture) -> None:
    """A token, a cookie and a body are in flight; the log, in both formats, has none of them."""
    secrets = ["fst_TOKENID0000_s3cr3tSecretValue", "SIDc00kieValue", "b0dy-secret"]
    send(
        web,
        "PUT",
        "/d/",
        json={"feed": {"entry": [{**SELF, "title": secrets[2]}]}},
        headers={
            **HEADERS,
            "Authorization": f"Bearer {secrets[0]}",
            "Cookie": f"SID={secrets[1]}",
        },
    )
    send(web, "GET", "/d/a?e", headers={"Authorization": f"Token {secrets[0]}"})
    assert len(logged.records) == 2
    for formatter in (logs.TextFormatter(), logs.JsonFormatter()):
        for record in logged.records:
            line = formatter.format(record)
            assert not any(secret in line for secret in secrets), line


def test_a_path_cannot_forge_a_log_line(web: FlaskClient, logged: pytest.LogCaptureFixture) -> None:
    send(web, "GET", "/d/a%0Afake%20200?e%0D")
    [record] = logged.records
    line = logs.TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line
    assert "/d/a\\x0afake 200?e%0D" in line  # the query is logged as sent, still encoded


def test_the_json_format_is_one_object_per_line(
    web: FlaskClient, logged: pytest.LogCaptureFixture
) -> None:
    send(web, "GET", "/d/a?e", headers={"X-Request-Id": "rid-1"})
    [record] = logged.records
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.handle(record)
    line = json.loads(stream.getvalue())
    assert line["event"] == "request"
    assert {k: line[k] for k in ("method", "path", "query", "status", "request_id")} == {
        "method": "GET",
        "path": "/d/a",
        "query": "e",
        "status": 204,
        "request_id": "rid-1",
    }
    assert line["principal"] == "anonymous" and line["duration_ms"] >= 0


def test_the_line_names_the_authenticated_account(
    real_redis: redis.Redis, logged: pytest.LogCaptureFixture
) -> None:
    web = create_app({"auth": "on"}, redis_client=real_redis).test_client()
    token = make_token(real_redis, "alice")
    send(web, "GET", "/d/?f", headers={"Authorization": f"Bearer {token}"})
    [record] = logged.records
    assert record.request.principal == "alice"  # type: ignore[attr-defined]
    assert token not in logs.TextFormatter().format(record)
