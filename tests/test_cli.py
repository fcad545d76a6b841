from __future__ import annotations

import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from feedstore import cli, collector
from feedstore.cli import build_parser, main
from feedstore.embedded import AOF_FILE, EmbeddedRedis
from tests.redis_cluster import RedisCluster
from tests.serving import (
    WRITE_HEADERS,
    free_port,
    run_serve,
    running_serve,
    wait_until_gone,
)


def test_serve_defaults() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.server) == ("127.0.0.1", 8080, "granian")
    assert args.workers == (os.cpu_count() or 1)
    assert (args.data, args.redis_url, args.fsync) == (None, None, None)


def test_a_worker_freezes_its_app_for_the_collector_and_collects_less_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    called: list[object] = []
    monkeypatch.setattr(gc, "collect", lambda: called.append("collect"))
    monkeypatch.setattr(gc, "freeze", lambda: called.append("freeze"))
    monkeypatch.setattr(gc, "set_threshold", lambda *values: called.append(values))
    monkeypatch.setattr(gc, "get_threshold", lambda: (700, 10, 10))
    loader = cli._WorkerAppLoader(os.getpid(), None, threads=1, app="feedstore.app:create_app")
    monkeypatch.setattr(loader, "create_app", lambda: lambda environ, start: [])
    loader.gateway()
    assert called == ["collect", "freeze", (collector.GC_THRESHOLD, 10, 10)]


def test_serve_refuses_zero_workers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["serve", "--workers", "0"])
    assert caught.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value"), [("--workers", "\uff12"), ("--port", "8_080")])
def test_serve_takes_ascii_digits_only(
    capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["serve", option, value])
    assert caught.value.code == 2
    assert f"must be a whole number, not {value}" in capsys.readouterr().err


def test_serve_answers_health_and_says_where(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_serve(data_dir=data, log_path=tmp_path / "serve.log") as server:
        health = server.request("GET", "/_health")
        assert health.status == 200
        assert health.json() == {"feed": {"title": "OK"}}
        assert (data / AOF_FILE).exists()
        banner = (
            f"feedstore: serving http://127.0.0.1:{server.port} with 2 granian workers; "
            f"data in {data} (embedded Redis, AOF fsync everysec)"
        )
        lines = server.output().splitlines()
        assert banner in lines
        # The rest: the embedded Redis's own lines and one access-log line per request.
        others = [line for line in lines if line != banner]
        assert all(
            (line.startswith("feedstore: ") and " feedstore.redis: " in line)
            or re.fullmatch(r'127\.0\.0\.1 anonymous "GET /_health" 200 \d+ \S+ms id=\w+', line)
            for line in others
        ), others


def test_second_serve_on_the_same_data_dir_exits_1(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_serve(data_dir=data, log_path=tmp_path / "serve.log") as server:
        second = run_serve("--port", str(free_port()), "--data", str(data), cwd=tmp_path)
        assert second.returncode == 1
        assert second.stderr == (
            f"feedstore: {data} is in use by another feedstore serve (pid {server.pid})\n"
        )
        assert server.request("GET", "/_health").status == 200


def test_serve_on_a_busy_port_exits_1_without_starting_redis(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_serve("--port", str(port), "--data", str(tmp_path / "data"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"feedstore: port {port} on 127.0.0.1 is already in use\n"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1/", "bad --redis-url http://127.0.0.1/: Redis URL must specify"),
        ("redis://127.0.0.1:{port}/0", "can't reach Redis at redis://127.0.0.1:{port}/0: "),
        (
            "redis+sentinel://:secret@h:1",
            "bad --redis-url redis+sentinel://:***@h:1: name the monitored service as the path",
        ),
        (
            "redis+sentinel://127.0.0.1:{port}/svc",
            "can't reach Redis at redis+sentinel://127.0.0.1:{port}/svc: No master found for 'svc'",
        ),
    ],
)
def test_serve_with_a_bad_redis_url_exits_1(tmp_path: Path, url: str, message: str) -> None:
    port = free_port()
    result = run_serve(
        "--port", str(free_port()), "--redis-url", url.format(port=port), cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"feedstore: {message.format(port=port)}")
    assert result.stderr.count("\n") == 1


def test_serve_refuses_data_with_redis_url(tmp_path: Path) -> None:
    result = run_serve("--redis-url", "redis://x", "--data", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "drop them with --redis-url" in result.stderr


def test_serve_refuses_wait_replicas_with_the_embedded_redis(tmp_path: Path) -> None:
    result = run_serve("--wait-replicas", "1", "--data", str(tmp_path / "data"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        "feedstore: --wait-replicas needs --redis-url: the embedded Redis has no replicas\n"
    )


def test_serve_refuses_wait_replicas_on_a_cluster(
    tmp_path: Path, redis_cluster: RedisCluster
) -> None:
    result = run_serve("--redis-url", redis_cluster.url, "--wait-replicas", "1", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"feedstore: bad --redis-url {redis_cluster.url}: "
        "--wait-replicas is not available on a Redis Cluster (WAIT is per node)\n"
    )


def test_serve_passes_wait_replicas_to_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEEDSTORE_WAIT_REPLICAS", raising=False)
    monkeypatch.delenv("FEEDSTORE_WAIT_TIMEOUT_MS", raising=False)
    args = ["serve", "--redis-url", "redis://h", "--wait-replicas", "2", "--wait-timeout", "50"]
    options = cli.serve_options(build_parser().parse_args(args))
    assert (options.wait_replicas, options.wait_timeout_ms) == (2, 50)


def test_serve_refuses_a_missing_schema_file(tmp_path: Path) -> None:
    result = run_serve("--schema", "nope.json", "--data", str(tmp_path / "data"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"feedstore: no schema file at {tmp_path / 'nope.json'}\n"


def test_serve_json_style_bare_answers_entries_as_vtecx_does(tmp_path: Path) -> None:
    with running_serve(
        "--json-style", "bare", data_dir=tmp_path / "data", log_path=tmp_path / "serve.log"
    ) as server:
        assert server.request("PUT", "/d/a", {"title": "x"}, WRITE_HEADERS).status == 200
        assert server.request("GET", "/d/a?e&_nometa").json() == {
            "link": [{"___href": "/a", "___rel": "self"}],
            "title": "x",
        }
        assert [e["title"] for e in server.request("GET", "/d/?f").json()] == ["x"]
        assert server.request("GET", "/d/?c").json() == {"feed": {"title": "1"}}


def test_serve_refuses_an_unknown_json_style(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["serve", "--json-style", "xml"])
    assert caught.value.code == 2 and "invalid choice: 'xml'" in capsys.readouterr().err
    env = {"FEEDSTORE_JSON_STYLE": "xml"}
    result = run_serve("--data", str(tmp_path / "data"), cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr == "feedstore: FEEDSTORE_JSON_STYLE must be feed or bare: xml\n"


def test_serve_refuses_bad_settings_in_the_environment(tmp_path: Path) -> None:
    env = {"FEEDSTORE_MAX_BODY": "lots"}
    result = run_serve("--data", str(tmp_path / "data"), cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr == "feedstore: FEEDSTORE_MAX_BODY must be a whole number: lots\n"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("server_name", ["granian", "gunicorn"])
def test_sigterm_stops_workers_then_redis_and_leaves_nothing(
    tmp_path: Path, server_name: str
) -> None:
    data = tmp_path / "data"
    log = tmp_path / "serve.log"
    with running_serve("--server", server_name, data_dir=data, log_path=log) as server:
        # The serve process, its two workers (gunicorn boots them lazily) and redis-server.
        deadline = time.monotonic() + 10
        while len(server.processes()) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.processes()) == 4
        assert server.terminate() == 0
        assert wait_until_gone(marked=server.marker, mentioning=str(data)) == []
        # Redis shut down by itself (flushing its AOF) rather than being killed.
        assert "ready to exit, bye bye" in (data / "redis.log").read_text()


def test_kill_9_of_serve_takes_workers_and_redis_with_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_serve(data_dir=data, log_path=tmp_path / "serve.log") as server:
        assert len(server.processes()) >= 3
        os.kill(server.pid, signal.SIGKILL)
        server.process.wait(10)
        assert wait_until_gone(marked=server.marker, mentioning=str(data)) == []
    with running_serve(data_dir=data, log_path=tmp_path / "again.log") as server:
        assert server.request("GET", "/_health").status == 200


def test_serve_uses_the_redis_url_given(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", persistent=False) as redis_server:
        log = tmp_path / "serve.log"
        with running_serve("--redis-url", redis_server.url, data_dir=None, log_path=log) as server:
            assert server.request("GET", "/_health").status == 200
            assert f"data in {redis_server.url}" in server.output()
            assert server.terminate() == 0
            assert wait_until_gone(marked=server.marker) == []
        assert not (tmp_path / "feedstore-data").exists()


SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "default": 0}}}


def test_serve_loads_the_schema_for_every_worker(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    with running_serve(
        "--schema", str(schema), data_dir=tmp_path / "data", log_path=tmp_path / "serve.log"
    ) as server:
        assert server.request("GET", "/d/_schema").json() == SCHEMA
        for _ in range(4):  # whichever worker answers, it refuses what the schema doesn't declare
            response = server.request("PUT", "/d/a", {"colour": 1}, WRITE_HEADERS)
            assert response.json()["feed"]["title"] == "Unknown field: colour"


def test_schema_set_show_clear_on_a_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema, data = tmp_path / "schema.json", tmp_path / "data"
    schema.write_text(json.dumps(SCHEMA))
    assert main(["schema", "set", str(schema), "--data", str(data)]) == 0
    assert main(["schema", "show", "--data", str(data)]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1]) == SCHEMA
    with running_serve(data_dir=data, log_path=tmp_path / "serve.log") as server:
        assert server.request("GET", "/d/_schema").json() == SCHEMA
        assert main(["schema", "clear", "--data", str(data)]) == 0, "works beside a running serve"
        assert server.request("GET", "/d/_schema").status == 204


def test_schema_set_refuses_a_bad_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "nonsense"}')
    assert main(["schema", "set", str(schema), "--data", str(tmp_path / "data")]) == 1
    assert "The schema is invalid" in capsys.readouterr().err


def test_schema_and_migrate_commands_work_on_a_cluster(
    redis_cluster: RedisCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    redis_cluster.flush()
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    assert main(["schema", "set", str(schema), "--redis-url", redis_cluster.url]) == 0
    assert main(["schema", "show", "--redis-url", redis_cluster.url]) == 0
    assert json.loads(capsys.readouterr().out.removeprefix("schema set\n")) == SCHEMA
    assert main(["migrate", "--redis-url", redis_cluster.url, "--partition-depth", "2"]) == 0
    assert capsys.readouterr().out == "migrated: 0 keys moved to partition depth 2\n"
    cli.check_redis_url(redis_cluster.url, 5)


def test_serve_refuses_another_partition_depth_than_the_data_has(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", persistent=False) as redis_server:
        assert main(["migrate", "--redis-url", redis_server.url, "--partition-depth", "2"]) == 0
        port = str(free_port())
        result = run_serve("--port", port, "--redis-url", redis_server.url, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        "feedstore: The data in Redis is partitioned at depth 2, not 1. Start with "
        "--partition-depth 2, or stop the servers and run: feedstore migrate --partition-depth 1\n"
    )


def test_serve_refuses_a_bad_history_setting(tmp_path: Path) -> None:
    result = run_serve("--port", str(free_port()), "--history", "notes", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        "feedstore: FEEDSTORE_HISTORY must be prefixes with counts, as /notes=50: notes\n"
    )


def test_a_store_command_loads_no_http_layer() -> None:
    """`import feedstore.cli` (every command's start) leaves Flask and the app unloaded: a
    command that never serves doesn't pay their import (~0.15 s)."""
    probe = (
        "import sys, feedstore.cli, feedstore.port_cli;"
        "print(sorted(m for m in ('flask', 'feedstore.app', 'feedstore.api') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"
