"""The gateway under a real `feedstore serve`, granian and gunicorn, spoken to with raw sockets.

An HTTP client would hide what these tests send: a head without its body, a body shorter than its
Content-Length, a chunked body without its last chunk, bytes that aren't UTF-8 in a path or a
header. werkzeug's test client can't send any of them, so every test here goes over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
import threading
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from lxml import etree

from feedstore import collector
from feedstore.app import BODY_ERROR
from feedstore.codec_xml import ATOM
from feedstore.context import BODY
from feedstore.errors import (
    FeedstoreError,
    InvalidBody,
    PayloadTooLarge,
    RequestTimeout,
)
from feedstore.gateway import Gateway, wsgi_environ
from tests.conftest import snapshot
from tests.serving import Server, running_serve

BODY_TIMEOUT = 6  # above the 5 s a health check gets below, so it can't wait for the timeouts
HEADER_TIMEOUT = 2
WRITE = b"X-Requested-With: XMLHttpRequest\r\nContent-Type: application/json\r\n"
MIB = 1024 * 1024
INCOMPLETE = "Request format is invalid: the body is incomplete."


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def read_all(connection: socket.socket, timeout: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection.

    A server that stops reading a body closes with unread bytes, which resets the connection
    once its answer is sent: what came before the reset is the answer.
    """
    connection.settimeout(timeout)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := connection.recv(65536):
            received += chunk
    return received


def exchange(port: int, request: bytes, *, half_close: bool = False) -> Answer:
    """Send `request` on a new connection (then close our side, if asked); read the answer."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(request)
        if half_close:
            connection.shutdown(socket.SHUT_WR)
        return parse(read_all(connection))


def put(key: str, headers: bytes = b"", close: bool = True) -> bytes:
    """The head of a PUT to /d<key>, to be followed by a body and its framing headers."""
    connection = b"Connection: close\r\n" if close else b""
    return f"PUT /d{key} HTTP/1.1\r\nHost: test\r\n".encode() + WRITE + connection + headers


def get(port: int, path: str, headers: bytes = b"") -> Answer:
    request = f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n".encode()
    return exchange(port, request + headers + b"\r\n")


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts)


def assert_refused(answer: Answer, status: int, title: str, code: str) -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    if status in (408, 413) or title == INCOMPLETE:
        # The rest of the body is never read, so the connection can carry nothing more.
        assert answer.headers["connection"] == "close"
    assert answer.json()["feed"]["title"] == title
    assert answer.json()["error"]["code"] == code


def serving(factory: pytest.TempPathFactory, name: str) -> Iterator[Server]:
    """`serve --server <name>`: one worker of two threads, as in the issue, short timeouts."""
    directory = factory.mktemp(name)
    settings = {
        "FEEDSTORE_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "FEEDSTORE_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    }
    with running_serve(
        *("--server", name, "--threads", "2"),
        data_dir=directory / "data",
        log_path=directory / "serve.log",
        workers=1,
        env=settings,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def granian(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(tmp_path_factory, "granian")


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(tmp_path_factory, "gunicorn")


@pytest.fixture(params=["granian", "gunicorn"])
def server(request: pytest.FixtureRequest) -> Server:
    """Either server: both run the gateway in front of the app."""
    served: Server = request.getfixturevalue(request.param)
    return served


# -- slow clients -------------------------------------------------------------------------------


def test_stalled_bodies_cost_a_connection_not_a_thread(server: Server) -> None:
    attackers = []
    for n in range(16):
        attacker = socket.create_connection(("127.0.0.1", server.port))
        attacker.sendall(put(f"/stalled{n}", b"Content-Length: 1000\r\n\r\n") + b'{"ti')
        attackers.append(attacker)
    try:
        started = time.monotonic()
        health = get(server.port, "/_health")
        assert (health.status, health.json()) == (200, {"feed": {"title": "OK"}})
        assert time.monotonic() - started < 5, "health waited for the stalled uploads"
        for attacker in attackers:
            # Each is answered once the body timeout passes, and its connection closed.
            answer = parse(read_all(attacker))
            assert_refused(answer, 408, "Request timeout.", "request_timeout")
    finally:
        for attacker in attackers:
            attacker.close()
    assert get(server.port, "/d/stalled0?e").status == 204, "nothing was written"


def test_a_stalled_head_is_closed_after_the_header_timeout(granian: Server) -> None:
    """granian's own timeout; gunicorn has none (docs/api.md §12.2)."""
    server = granian
    stalled = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(16)]
    try:
        for connection in stalled:
            connection.sendall(b"PUT /d/head HTTP/1.1\r\nHost: test\r\nContent-Le")
        assert get(server.port, "/_health").status == 200
        started = time.monotonic()
        for connection in stalled:
            assert read_all(connection) == b"", "closed without an answer"
        assert time.monotonic() - started < HEADER_TIMEOUT + 10
    finally:
        for connection in stalled:
            connection.close()


# -- bodies that are cut short --------------------------------------------------------------------


CUT_SHORT = {
    "fewer bytes than Content-Length": b"Content-Length: 100\r\n\r\n" + b'{"title":"cut"}',
    "no last chunk": b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b'{"title":"cut"}'),
    "a chunk cut short": b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"{") + b"9\r\nab",
    "a malformed chunk": b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"{}") + b"zz\r\n",
}


@pytest.mark.parametrize("rest", CUT_SHORT.values(), ids=CUT_SHORT.keys())
def test_a_body_cut_short_is_answered_400_and_never_executed(granian: Server, rest: bytes) -> None:
    answer = exchange(granian.port, put("/cut") + rest, half_close=True)
    assert_refused(answer, 400, INCOMPLETE, "invalid_body")
    assert get(granian.port, "/d/cut?e").status == 204


@pytest.mark.parametrize("rest", CUT_SHORT.values(), ids=CUT_SHORT.keys())
def test_a_body_cut_short_is_never_executed_by_gunicorn(gunicorn: Server, rest: bytes) -> None:
    """gunicorn drops a half-closed connection unanswered, and answers a malformed chunk with
    its own plain 400: either way the request is not run."""
    with socket.create_connection(("127.0.0.1", gunicorn.port)) as connection:
        connection.sendall(put("/cut") + rest)
        connection.shutdown(socket.SHUT_WR)
        answered = read_all(connection)
    assert answered == b"" or parse(answered).status == 400
    assert get(gunicorn.port, "/d/cut?e").status == 204


def test_a_whole_chunked_body_is_read_with_its_trailers(server: Server) -> None:
    head = put("/whole", b"Transfer-Encoding: chunked\r\n\r\n")
    body = chunked(b'{"title":', b'"in three', b' chunks"}') + b"0\r\nX-Checksum: 1\r\n\r\n"
    answer = exchange(server.port, head + body)
    assert (answer.status, answer.json()) == (200, {"feed": {"title": "Updated."}})
    entry = get(server.port, "/d/whole?e").json()["feed"]["entry"][0]
    assert entry["title"] == "in three chunks"


def test_a_delete_carries_its_feed_through_the_gateway(server: Server) -> None:
    for key in ("/gone", "/gone/a", "/gone/b"):
        assert exchange(server.port, put(key, b"Content-Length: 2\r\n\r\n") + b"{}").status == 200
    body = b'[{"id":"/gone/a,1"},{"link":[{"___href":"/gone/b","___rel":"self"}]}]'
    head = b"DELETE /d/ HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" + WRITE
    answer = exchange(server.port, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert (answer.status, answer.json()) == (200, {"feed": {"title": "Deleted."}})
    assert get(server.port, "/d/gone?c").json() == {"feed": {"title": "0"}}


# -- bodies that are too large --------------------------------------------------------------------


def send_chunked(port: int, key: str, first: bytes, filler: bytes, total: int) -> Answer:
    """PUT a chunked body of `first` then `filler` repeated to `total` bytes, reading meanwhile.

    The server answers 413 as soon as the body passes max_body and stops reading, so the sender
    may meet a closed connection: that is expected, the answer is what counts.
    """
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(put(key, b"Transfer-Encoding: chunked\r\n\r\n"))

        def send() -> None:
            with contextlib.suppress(OSError):
                connection.sendall(chunked(first))
                for _ in range(total // len(filler)):
                    connection.sendall(chunked(filler))
                connection.sendall(b"0\r\n\r\n")

        sender = threading.Thread(target=send)
        sender.start()
        try:
            return parse(read_all(connection))
        finally:
            with contextlib.suppress(OSError):  # wake a sender blocked on a full buffer
                connection.shutdown(socket.SHUT_RDWR)
            sender.join()


def test_a_valid_entry_followed_by_11_mib_of_chunked_white_space_is_413(server: Server) -> None:
    answer = send_chunked(server.port, "/padded", b'{"title":"x"}', b" " * 65536, 11 * MIB)
    assert_refused(answer, 413, "Payload too large.", "payload_too_large")
    assert get(server.port, "/d/padded?e").status == 204


def test_a_50_mb_chunked_body_is_413(server: Server) -> None:
    entries = b'{"title":"y"},' * 4096
    answer = send_chunked(server.port, "/huge", b"[", entries, 50 * 1000 * 1000)
    assert_refused(answer, 413, "Payload too large.", "payload_too_large")


def test_a_declared_length_over_the_limit_is_413_before_any_body(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(put("/declared", b"Content-Length: %d\r\n\r\n" % (11 * MIB)))
        answer = parse(read_all(connection))
    assert_refused(answer, 413, "Payload too large.", "payload_too_large")


def test_keep_alive_goes_on_after_a_complete_body(server: Server) -> None:
    body = b'{"title":"kept"}'
    first = put("/kept", b"Content-Length: %d\r\n\r\n" % len(body), close=False) + body
    second = b"GET /d/kept?e HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(first + second)
        raw = read_all(connection)
    assert raw.count(b"HTTP/1.1 200 OK") == 2
    assert b'"title":"kept"' in raw


# -- what reaches the app -------------------------------------------------------------------------


def test_a_path_that_is_not_utf8_is_refused_and_a_real_replacement_character_is_a_key(
    server: Server,
) -> None:
    for method in (b"PUT", b"GET"):
        head = method + b" /d/t/%FF HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" + WRITE
        answer = exchange(server.port, head + b"Content-Length: 2\r\n\r\n{}")
        assert_refused(answer, 400, "Key must be valid UTF-8. /t/%FF", "invalid_key")
    replacement = put("/%EF%BF%BD", b"Content-Length: 2\r\n\r\n") + b"{}"
    assert exchange(server.port, replacement).status == 200
    assert get(server.port, "/d/%EF%BF%BD?e").json()["feed"]["entry"][0]["id"] == "/\ufffd,1"


def test_dot_segments_sent_as_is_are_refused(server: Server) -> None:
    for path in ("/t/../b", "/t/%2E%2E/b", "/t/./b"):
        answer = exchange(server.port, put(path, b"Content-Length: 2\r\n\r\n") + b"{}")
        shown = path.replace("%2E", ".")
        assert_refused(
            answer, 400, f"Key must not contain a . or .. segment. {shown}", "invalid_key"
        )


def test_a_full_width_digit_sent_in_utf8_is_no_revision(server: Server) -> None:
    exchange(server.port, put("/fw", b"Content-Length: 2\r\n\r\n") + b"{}")
    digit = "\uff11".encode()
    request = put("/fw", b'If-Match: "' + digit + b'"\r\nContent-Length: 2\r\n\r\n') + b"{}"
    answer = exchange(server.port, request)
    assert (answer.status, answer.json()["error"]["code"]) == (400, "invalid_option")
    assert get(server.port, "/d/fw?e").headers["etag"] == '"1"'


def test_answers_without_a_body_carry_no_content_type_on_the_wire(server: Server) -> None:
    exchange(server.port, put("/empty", b"Content-Length: 2\r\n\r\n") + b"{}")
    missing = get(server.port, "/d/nothing?e")
    not_modified = get(server.port, "/d/empty?e", b'If-None-Match: W/"1"\r\n')
    assert (missing.status, not_modified.status) == (204, 304)
    for answer in (missing, not_modified):
        assert "content-type" not in answer.headers
        assert answer.body == b""


def test_the_environ_keeps_raw_bytes_and_drops_the_chunked_framing() -> None:
    scope = {
        "type": "http",
        "method": "PUT",
        "path": "/d/\ufffd",
        "raw_path": b"/d/%FF%2Fa",
        "query_string": b"x=%FF",
        "headers": [
            (b"x-dup", b"a"),
            (b"x-dup", b"b"),
            (b"if-match", '"\uff11"'.encode()),
            (b"transfer-encoding", b"chunked"),
            (b"content-type", b"application/json"),
        ],
    }
    environ = wsgi_environ(scope)
    assert environ["PATH_INFO"] == "/d/\xff/a"
    assert environ["QUERY_STRING"] == "x=%FF"
    assert environ["HTTP_X_DUP"] == "a, b"
    assert environ["HTTP_IF_MATCH"] == '"\xef\xbc\x91"'
    assert environ["CONTENT_TYPE"] == "application/json"
    assert "HTTP_TRANSFER_ENCODING" not in environ


def test_bad_timeouts_stop_serve_at_once(tmp_path: Path) -> None:
    from tests.serving import run_serve

    result = run_serve(
        "--data", str(tmp_path / "data"), cwd=tmp_path, env={"FEEDSTORE_BODY_TIMEOUT": "0"}
    )
    assert result.returncode == 1
    assert result.stderr == "feedstore: FEEDSTORE_BODY_TIMEOUT must be at least 1: 0\n"


@pytest.mark.parametrize(
    "error",
    [RequestTimeout(), PayloadTooLarge(), InvalidBody("the body is incomplete.")],
    ids=lambda error: error.code,
)
def test_a_refused_body_is_answered_before_any_view_in_the_one_error_shape(
    app: Flask, redis_client: Any, error: FeedstoreError
) -> None:
    before = snapshot(redis_client)
    # No CSRF header and an unknown URL: the body's error comes first all the same.
    for url in ("/d/x?x", "/nowhere?x"):
        response = app.test_client().put(url, data=b"{}", environ_overrides={BODY_ERROR: error})
        assert response.status_code == error.status
        feed = etree.fromstring(response.data)
        assert feed.findtext(f"{{{ATOM}}}title") == error.message
    assert snapshot(redis_client) == before


@pytest.mark.parametrize("size", [collector.LARGE_BODY - 1, collector.LARGE_BODY])
def test_a_large_body_runs_with_the_collector_paused(size: int) -> None:
    seen: list[tuple[int, bool]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        assert environ[BODY] is body  # the bytes read, handed over as they are
        seen.append((len(environ["wsgi.input"].read()), gc.isenabled()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    sent: list[MutableMapping[str, Any]] = []

    body = b"x" * size

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    gateway = Gateway(app, max_body=2 * collector.LARGE_BODY, body_timeout=5, threads=1)
    scope = {
        "type": "http", "method": "PUT", "path": "/d/", "raw_path": b"/d/", "query_string": b"",
        "headers": [(b"content-length", str(size).encode())],
    }  # fmt: skip
    asyncio.run(gateway(scope, receive, send))
    assert seen == [(size, size < collector.LARGE_BODY)]
    assert [m.get("status") for m in sent] == [200, None] and gc.isenabled()
