"""redis+sentinel:// URLs, and a real Sentinel set failing over under `feedstore serve` writers.

The failover tests run HTTP writers (POSTs of new entries) against a real `feedstore serve
--redis-url redis+sentinel://...`, fail the primary over (SENTINEL FAILOVER, or kill -9), and
check that every answer was 2xx, 409 or 503 and, with --wait-replicas, that every acknowledged
insert is still there. Each test gets its own set: a new one is ready in ~2 s, while a set that
has just failed over needs ~20 s (Sentinel's 10 s INFO period) before it can fail over again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from feedstore import cli, connection, sentinel
from feedstore.keys import KeyScheme
from feedstore.sentinel import SentinelUrl
from tests.sentinels import SentinelSet
from tests.serving import WRITE_HEADERS, Server, request, running_serve

document_key = KeyScheme().document_key


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("redis+sentinel://h:1/svc", SentinelUrl((("h", 1),), "svc")),
        (
            "redis+sentinel://a:1,b,[::1]:3/svc?db=2",
            SentinelUrl((("a", 1), ("b", 26379), ("::1", 3)), "svc", 2),
        ),
        ("redis+sentinel://:p%40ss@h:1/svc", SentinelUrl((("h", 1),), "svc", 0, None, "p@ss")),
        ("redis+sentinel://u:p@h:1/svc/", SentinelUrl((("h", 1),), "svc", 0, "u", "p")),
    ],
)
def test_a_sentinel_url_names_sentinels_service_db_and_credentials(
    url: str, parsed: SentinelUrl
) -> None:
    assert sentinel.parse(url) == parsed


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel:///svc", "no Sentinel address: name at least one host:port"),
        ("redis+sentinel://h:1", "name the monitored service as the path: " + (
            "redis+sentinel://host:port/name")),
        ("redis+sentinel://h:1/a/b", "name the monitored service as the path: " + (
            "redis+sentinel://host:port/name")),
        ("redis+sentinel://h:x/svc", "not a Sentinel host:port: 'h:x'"),
        ("redis+sentinel://h:1,/svc", "not a Sentinel host:port: ''"),
        ("redis+sentinel://h:70000/svc", "not a TCP port: 70000 in 'h:70000'"),
        ("redis+sentinel://h/svc?db=x", "db must be a database number: x"),
        ("redis+sentinel://h/svc?timeout=1", "unknown URL option timeout (only db is read)"),
    ],
)  # fmt: skip
def test_a_bad_sentinel_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        connection.connect(url)
    assert str(refused.value) == message


def test_the_client_has_the_timeouts_and_retry_of_every_client() -> None:
    client = connection.connect("redis+sentinel://127.0.0.1:1/svc?db=3", timeout=3)
    options = client.connection_pool.connection_kwargs
    assert (options["socket_timeout"], options["socket_connect_timeout"], options["db"]) == (
        3,
        3,
        3,
    )
    assert options["retry"].get_retries() == 2


def test_schema_show_reports_unreachable_sentinels(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEEDSTORE_REDIS_TIMEOUT", "1")
    assert cli.main(["schema", "show", "--redis-url", "redis+sentinel://127.0.0.1:1/svc"]) == 1
    assert capsys.readouterr().err == "feedstore: Redis is unavailable. Please retry.\n"


# -- a real Sentinel set --------------------------------------------------------------------------


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    cluster = SentinelSet(tmp_path)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class Writers:
    """Threads POSTing new entries under /w until stopped; what each answer was."""

    def __init__(self, server: Server, threads: int = 4) -> None:
        self.server = server
        self.statuses: Counter[int] = Counter()
        self.acknowledged: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._write, args=(n,)) for n in range(threads)]

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()

    def _write(self, writer: int) -> None:
        n = 0
        while not self.stopping.is_set():
            key = f"/w/{writer}-{n}"
            try:
                status = request(self.server.port, "POST", "/d/w", entry(key), WRITE_HEADERS).status
            except OSError:
                status = 0  # no answer at all: counted, and never acknowledged
            with self.lock:
                self.statuses[status] += 1
                if 200 <= status < 300:
                    self.acknowledged.append(key)
            # Paced, so as not to starve the tests running alongside; a 503 as a client
            # honouring Retry-After would, if less patiently.
            time.sleep(0.02 if status == 503 else 0.005)
            n += 1

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Wait until `count` more writes were acknowledged; fail after `timeout` seconds."""
        start = len(self.acknowledged)
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < start + count:
            assert time.monotonic() < deadline, f"{count} writes not acknowledged: {self.statuses}"
            time.sleep(0.01)

    def unexpected(self) -> dict[int, int]:
        """Answers other than 2xx, 409 and 503."""
        return {s: n for s, n in self.statuses.items() if not (200 <= s < 300 or s in (409, 503))}


def entry(key: str) -> dict[str, Any]:
    return {"link": [{"___href": key, "___rel": "self"}]}


def stored_keys(server: Server) -> set[str]:
    """The keys of every entry under /w, read through the server."""
    response = server.request("GET", "/d/w?f&l=*")
    assert response.status in (200, 204), response.body
    if response.status == 204:
        return set()
    entries = response.json()["feed"]["entry"]
    return {link["___href"] for entry in entries for link in entry["link"]}


@contextlib.contextmanager
def serve_on(sentinels: SentinelSet, tmp_path: Path, *args: str) -> Iterator[Server]:
    """`feedstore serve` on the set's URL, with a /w to write under."""
    with running_serve(
        "--redis-url", sentinels.url, "--threads", "8", *args,
        data_dir=None, log_path=tmp_path / "serve.log", workers=1,
    ) as server:  # fmt: skip
        created = server.request("POST", "/d/", entry("/w"), WRITE_HEADERS)
        assert created.status == 201, created.body
        yield server


def test_serve_follows_a_failover_without_a_restart(
    sentinels: SentinelSet,
    tmp_path: Path,
    record_property: pytest.RecordProperty,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serve_on(sentinels, tmp_path) as server:
        with Writers(server) as writers:
            writers.wait_for(50)
            old = sentinels.failover()
            new = sentinels.wait_promoted(old)
            # Until Sentinel demotes it (~10 s), the old primary takes the writes of the
            # connections still open to it; then they move to the new one.
            sentinels.wait_demoted(old)
            writers.wait_for(50)
        assert writers.unexpected() == {}, writers.statuses
        after = server.request("POST", "/d/w", entry("/w/after"), WRITE_HEADERS)
        assert after.status == 201, after.body
        with new.client() as client:
            assert client.info("replication")["role"] == "master"
            assert client.exists(document_key("/w/after"))
        stored = stored_keys(server)
        assert "/w/after" in stored
        assert cli.main(["schema", "show", "--redis-url", sentinels.url]) == 0
        assert capsys.readouterr().out.endswith("no schema\n")
        # Without WAIT a failover loses the writes the old primary took after the promotion:
        # measured here, not asserted (README quotes it).
        lost = set(writers.acknowledged) - stored
        record_property("acknowledged", len(writers.acknowledged))
        record_property("lost", len(lost))
        print(f"failover without WAIT: {len(lost)} of {len(writers.acknowledged)} acknowledged "
              f"inserts lost; answers {dict(writers.statuses)}")  # fmt: skip


@pytest.mark.parametrize("failure", ["failover", "kill -9"])
def test_with_wait_replicas_no_acknowledged_write_is_lost(
    sentinels: SentinelSet, tmp_path: Path, failure: str
) -> None:
    sentinels.require_replicas(1)
    with serve_on(sentinels, tmp_path, "--wait-replicas", "1", "--wait-timeout", "200") as server:
        with Writers(server) as writers:
            writers.wait_for(50)
            if failure == "failover":
                old = sentinels.failover()
                sentinels.wait_promoted(old)
                sentinels.wait_demoted(old)
                writers.wait_for(50)
                acknowledged_at_least = 100
            else:
                # The promoted replica has no replica of its own: from the kill on, every
                # write is refused, so what was acknowledged is what came before it.
                old = sentinels.primary()
                old.kill()
                sentinels.wait_promoted(old)
                acknowledged_at_least = 50
        assert writers.unexpected() == {}, writers.statuses
        assert writers.statuses[503] > 0  # the writes made while the replica was away
        stored = stored_keys(server)
        assert set(writers.acknowledged) - stored == set()
        assert len(writers.acknowledged) >= acknowledged_at_least
        print(f"{failure} with WAIT: 0 of {len(writers.acknowledged)} acknowledged inserts lost; "
              f"answers {dict(writers.statuses)}")  # fmt: skip
