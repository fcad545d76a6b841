"""Where serve's log lines go: the access log and the embedded Redis's lines, text or JSON."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from feedstore import access_log, logs
from feedstore.app import create_app
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


@pytest.fixture
def configured() -> Iterator[Callable[[str], io.StringIO]]:
    """logs.configure to a StringIO in a format, undone afterwards (it sets process state)."""
    logger = logging.getLogger(logs.ROOT)
    saved = (list(logger.handlers), logger.level, logger.propagate)

    def configure(log_format: str) -> io.StringIO:
        stream = io.StringIO()
        logs.configure(log_format, stream)
        return stream

    yield configure
    access_log.write_lines_with(None)
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_configured_log_writes_one_access_line_per_request_to_its_stream(
    configured: Callable[[str], io.StringIO], real_redis: redis.Redis, log_format: str
) -> None:
    stream = configured(log_format)
    web = create_app(redis_client=real_redis).test_client()
    for path in ("/d/a?e", "/d/b%0Ax?e"):  # no entry (204); a key with a control (400)
        with web.get(path, headers={"X-Request-Id": f"r{len(path)}"}):
            pass
    logging.getLogger("feedstore.test").warning("between")
    with web.get("/d/?f&_nonsense", headers={"X-Request-Id": "r3"}) as response:
        assert response.status_code == 400
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    if log_format == "text":
        assert re.fullmatch(r'\S+ anonymous "GET /d/a\?e" 204 0 [\d.]+ms id=r6', lines[0])
        assert '"GET /d/b\\x0ax?e" 400' in lines[1]  # a path can't forge a line
        assert lines[2] == "feedstore: WARNING feedstore.test: between"
        assert lines[3].endswith("id=r3 error=invalid_option")
        return
    first, second, between, last = map(json.loads, lines)
    assert first == {
        "event": "request", "method": "GET", "path": "/d/a", "query": "e", "status": 204,
        "bytes": 0, "duration_ms": first["duration_ms"], "route": "/d/<entry_path:path>",
        "principal": "anonymous", "request_id": "r6", "remote": "127.0.0.1", "error": None,
    }  # fmt: skip
    assert second["path"] == "/d/b\\x0ax"
    assert between == {
        "event": "log",
        "level": "warning",
        "logger": "feedstore.test",
        "message": "between",
    }
    assert (last["status"], last["error"], last["request_id"]) == (400, "invalid_option", "r3")
