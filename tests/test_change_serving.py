"""The change feed's waits through `feedstore serve` (granian and the gateway): long-polls and
Server-Sent Events hold no request thread, and an SSE reader resumed by Last-Event-ID over 1,000
writes sees every event once."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path

from tests.serving import WRITE_HEADERS, Server, request, running_serve

WAITERS = "feedstore_change_feed_waiters"


def waiters(server: Server) -> float:
    for line in server.request("GET", "/metrics").body.decode().splitlines():
        if line.startswith(WAITERS + " ") or line.startswith(WAITERS + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def until(condition: object, what: str) -> None:
    """Poll `condition` (no timing asserted: bounded generously)."""
    for _ in range(3000):
        if condition():  # type: ignore[operator]
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"never: {what}")


def test_long_polls_hold_no_thread_and_wake_on_a_write(tmp_path: Path) -> None:
    """Four long-polls on a worker of two threads: reads are still answered while they wait,
    and one write wakes them all with its event."""
    with running_serve(
        "--threads", "2", data_dir=tmp_path / "data", log_path=tmp_path / "serve.log", workers=1
    ) as server:
        server.request("PUT", "/d/n", {}, WRITE_HEADERS)
        seq = server.request("GET", "/d/n?_changes&_since=now").headers["x-feedstore-seq"]
        answers: list[object] = []

        def poll() -> None:
            path = f"/d/n?_changes&_since={seq}&_wait=60"
            answers.append(request(server.port, "GET", path, timeout=90))

        polls = [threading.Thread(target=poll) for _ in range(4)]
        for thread in polls:
            thread.start()
        until(lambda: waiters(server) == 4, "four waiters counted in /metrics")
        assert server.request("GET", "/d/n?e").status == 200, "a read while four wait"
        server.request("PUT", "/d/n/1", {}, WRITE_HEADERS)
        for thread in polls:
            thread.join(60)
        assert not any(thread.is_alive() for thread in polls), "a long-poll did not wake"
        for answer in answers:
            assert answer.status == 200  # type: ignore[attr-defined]
            [item] = answer.json()["feed"]["entry"]  # type: ignore[attr-defined]
            assert item["id"] == "/n/1,1"
        until(lambda: waiters(server) == 0, "no waiter left")


def test_an_sse_reader_resumed_by_last_event_id_misses_nothing(tmp_path: Path) -> None:
    """A writer PUTs 1,000 entries while a reader follows the stream, reconnecting with
    Last-Event-ID after every 100 events: it sees each creation once, in commit order."""
    total = 1000
    with running_serve(
        data_dir=tmp_path / "data", log_path=tmp_path / "serve.log", workers=1
    ) as server:
        server.request("PUT", "/d/n", {}, WRITE_HEADERS)
        start = server.request("GET", "/d/n?_changes&_since=now").headers["x-feedstore-seq"]

        def write() -> None:
            for i in range(total):
                assert server.request("PUT", f"/d/n/{i}", {}, WRITE_HEADERS).status == 200

        writer = threading.Thread(target=write)
        writer.start()
        seen: list[str] = []
        last = start
        while len(seen) < total:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            headers = {"Accept": "text/event-stream", "Last-Event-ID": last}
            connection.request("GET", "/d/n?_changes&_since=0", headers=headers)
            answer = connection.getresponse()
            assert answer.status == 200
            assert answer.getheader("Content-Type", "").startswith("text/event-stream")
            taken = 0
            event: dict[str, str] = {}
            while taken < 100 and len(seen) < total:
                line = answer.readline().decode().rstrip("\n")
                if line:
                    name, _, value = line.partition(": ")
                    event[name] = value
                    continue
                if "id" in event:
                    item = json.loads(event["data"])
                    assert event["event"] == item["category"][-1]["___term"] == "created"
                    seen.append(item["id"])
                    last = event["id"]
                    taken += 1
                event = {}
            connection.close()
        writer.join(60)
        assert seen == [f"/n/{i},1" for i in range(total)]
