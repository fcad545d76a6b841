"""Where serve's log lines go: the access log and the embedded Redis's lines, text or JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from feedstore import logs
from tests.serving import running_serve


def test_the_redis_log_is_passed_on_line_by_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="feedstore.redis")
    path = tmp_path / "redis.log"
    path.write_text("1:M 27 Nov 2026 18:00:00.000 * from an earlier run\n")
    follower = logs.RedisLogFollower(path)
    with path.open("a") as log:
        log.write("2:M 27 Nov 2026 18:00:01.000 * Ready to accept connections\n")
        log.write("2:M 27 Nov 2026 18:00:02.000 # Warning: something\n")
        log.write("2:M 27 Nov 2026 18:00:03.000 * half a line")
    follower.pass_on()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "2:M 27 Nov 2026 18:00:01.000 * Ready to accept connections"),
        (logging.WARNING, "2:M 27 Nov 2026 18:00:02.000 # Warning: something"),
    ]
    with path.open("a") as log:
        log.write(", and the rest\n")
    follower.pass_on()
    assert caplog.records[-1].getMessage().endswith("* half a line, and the rest")


def test_serve_writes_json_lines(tmp_path: Path) -> None:
    log_path = tmp_path / "serve.log"
    with running_serve(
        "--log-format", "json", data_dir=tmp_path / "data", log_path=log_path
    ) as server:
        assert server.request("GET", "/d/a?e", headers={"X-Request-Id": "json-1"}).status == 204
        assert server.terminate() == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    [request] = [line for line in lines if line.get("request_id") == "json-1"]
    assert request["event"] == "request"
    assert (request["method"], request["path"], request["query"], request["status"]) == (
        "GET",
        "/d/a",
        "e",
        204,
    )
    redis_lines = [line["message"] for line in lines if line.get("logger") == "feedstore.redis"]
    assert any("ready to accept connections" in message for message in redis_lines)
