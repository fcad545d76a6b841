"""/metrics: Prometheus text that its own parser reads, counting exactly what was asked."""

from __future__ import annotations

import concurrent.futures
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from feedstore import cli, metrics, watch
from feedstore.app import create_app
from feedstore.embedded import EmbeddedRedis
from tests.conftest import make_token
from tests.serving import free_port, request, running_serve

HEADERS = {"X-Requested-With": "XMLHttpRequest"}


def entry(key: str, revision: int | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {"link": [{"___href": key, "___rel": "self"}]}
    if revision is not None:
        document["id"] = f"{key},{revision}"
    return {"feed": {"entry": [document]}}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics text, read by prometheus_client's own parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def send(web: FlaskClient, method: str, path: str, **options: Any) -> int:
    with web.open(path, method=method, **options) as response:
        return int(response.status_code)


@pytest.fixture
def web(real_redis: redis.Redis) -> FlaskClient:
    return create_app(redis_client=real_redis).test_client()


def test_the_counts_match_a_known_mix_of_requests(web: FlaskClient) -> None:
    for n in range(3):
        assert send(web, "PUT", "/d/", json=entry(f"/m{n}"), headers=HEADERS) == 200
    assert send(web, "GET", "/d/m0?e") == 200
    assert send(web, "GET", "/d/m1?e") == 200
    assert send(web, "PUT", "/d/", json=entry("/m0", 7), headers=HEADERS) == 409
    assert (
        send(web, "PUT", "/d/m1", json=entry("/m1"), headers={**HEADERS, "If-Match": '"9"'}) == 412
    )
    assert send(web, "GET", "/nowhere") == 404
    got = samples(web.get("/metrics").get_data(as_text=True))
    route = "/d/<entry_path:path>"

    def requests(route: str, method: str, status: str) -> float:
        labels = (("method", method), ("route", route), ("status", status))
        return got.get(("feedstore_requests_total", labels), 0)

    assert requests("/d/", "PUT", "200") == 3
    assert requests(route, "GET", "200") == 2
    assert requests("/d/", "PUT", "409") == 1
    assert requests(route, "PUT", "412") == 1
    assert requests("unmatched", "GET", "404") == 1
    errors = {
        labels: value for (name, labels), value in got.items() if name == "feedstore_errors_total"
    }
    assert errors == {
        (("code", "revision_conflict"), ("status", "409")): 1,
        (("code", "precondition_failed"), ("status", "412")): 1,
        (("code", "not_found"), ("status", "404")): 1,
    }
    count = got[("feedstore_request_duration_seconds_count", (("method", "GET"), ("route", route)))]
    assert count == 2


def test_a_write_run_again_after_a_watch_error_is_counted(
    web: FlaskClient, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client writes the watched revision between the read and EXEC, once."""
    assert send(web, "PUT", "/d/", json=entry("/w"), headers=HEADERS) == 200
    watch_and_read = watch.watch_and_read
    interfered: list[bool] = []

    def interfering(pipe: Any, watched: Any, *command: Any, **options: Any) -> Any:
        result = watch_and_read(pipe, watched, *command, **options)
        if not interfered:
            interfered.append(True)
            real_redis.incrby(watched[0], 0)  # a write that changes nothing still breaks WATCH
        return result

    monkeypatch.setattr(watch, "watch_and_read", interfering)
    assert send(web, "PUT", "/d/", json=entry("/w"), headers=HEADERS) == 200
    got = samples(web.get("/metrics").get_data(as_text=True))
    assert got[("feedstore_write_retries_total", ())] == 1


def test_redis_errors_are_counted(tmp_path: Path) -> None:
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=1)
    web = create_app(redis_client=unreachable).test_client()
    assert send(web, "GET", "/d/a?e") == 503
    got = samples(web.get("/metrics").get_data(as_text=True))
    assert got[("feedstore_redis_errors_total", ())] == 1


def test_metrics_can_be_turned_off(real_redis: redis.Redis) -> None:
    web = create_app({"metrics": "off"}, redis_client=real_redis).test_client()
    assert web.get("/metrics").status_code == 404


def test_the_workers_of_a_server_are_counted_together(tmp_path: Path) -> None:
    """Two worker processes each count their requests; /metrics adds them up."""
    counts = tmp_path / "metrics"
    counts.mkdir()
    with (
        EmbeddedRedis(tmp_path / "redis", persistent=False) as redis_server,
        running_serve(
            "--redis-url",
            redis_server.url,
            data_dir=None,
            log_path=tmp_path / "serve.log",
            workers=2,
            env={"PROMETHEUS_MULTIPROC_DIR": str(counts)},
        ) as server,
    ):
        # Which worker accepts a connection is the kernel's choice, and a busy machine may give
        # one worker many in a row: send batches until both have answered some (each keeps its
        # counts in a file of its own).
        sent = 0
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            for _batch in range(50):
                statuses = list(
                    pool.map(lambda n: request(server.port, "GET", "/d/x?e").status, range(60))
                )
                assert statuses == [204] * 60
                sent += 60
                if len(list(counts.glob("counter_*.db"))) == 2:
                    break
        assert len(list(counts.glob("counter_*.db"))) == 2, "one worker answered all requests"
        got = samples(request(server.port, "GET", "/metrics").body.decode())
        labels = (("method", "GET"), ("route", "/d/<entry_path:path>"), ("status", "204"))
        assert got[("feedstore_requests_total", labels)] == sent


def test_with_auth_on_only_administrators_read_the_metrics(real_redis: redis.Redis) -> None:
    app = create_app({"auth": "on"}, redis_client=real_redis)
    web = app.test_client()
    admin, alice = make_token(real_redis, "admin", admin=True), make_token(real_redis, "alice")
    assert send(web, "GET", "/metrics") == 401
    with web.get("/metrics", headers={"Authorization": f"Bearer {alice}"}) as denied:
        assert (denied.status_code, denied.json["error"]["code"]) == (403, "access_denied")
    allowed = web.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
    assert allowed.status_code == 200
    got = samples(allowed.get_data(as_text=True))
    labels = (("code", "authentication_required"), ("status", "401"))
    assert got[("feedstore_errors_total", labels)] == 1


def test_a_serve_that_stops_early_leaves_this_process_counting_alone(
    real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """serve gives its workers a directory to count in; stopped before serving (a busy port)
    it leaves no such setting behind, so apps made after it count their own requests."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert cli.main(["serve", "--port", str(busy.getsockname()[1])]) == 1
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    web = create_app(redis_client=real_redis).test_client()
    assert send(web, "GET", "/d/x?e") == 204
    got = samples(web.get("/metrics").get_data(as_text=True))
    labels = (("method", "GET"), ("route", "/d/<entry_path:path>"), ("status", "204"))
    assert got[("feedstore_requests_total", labels)] == 1


def test_the_pid_the_counts_are_filed_under_follows_a_fork() -> None:
    """Each value written asks metrics._process_id, not os.getpid: a forked worker must get
    its own pid (its own files), or two workers would write the same file."""
    assert metrics._process_id() == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports, and leaves without running pytest's exit handlers
        os.write(write, f"{metrics._process_id()} {os.getpid()}".encode())
        os._exit(0)
    os.close(write)
    seen, actual = os.read(read, 100).decode().split()
    os.close(read)
    os.waitpid(child, 0)
    assert seen == actual == str(child)
