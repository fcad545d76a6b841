"""The WSGI app served over ASGI: a body is read whole on the event loop, then the app runs.

`feedstore serve` runs granian's ASGI interface (or gunicorn's asgi workers) with this gateway in
front of the Flask app, rather than a WSGI server, which hands the app a body read on demand in
the app's own thread: a client that sent its head and then stalled held that thread, so 16 of
them froze a server of 2 threads, and a body cut short read as a shorter, complete one.

Here the body of a POST, PUT or PATCH is read by the event loop, chunk by chunk:

- each chunk must come within `body_timeout` seconds, or the answer is 408 (RequestTimeout);
- past `max_body` bytes, declared or sent, reading stops and the answer is 413 (PayloadTooLarge);
- a body that ends early (the client closed, a malformed chunk, fewer bytes than its
  Content-Length) is 400 (InvalidBody): the server reports each as `http.disconnect`.

Only a complete body reaches the app, which runs in a thread of the gateway's pool; a refused
one reaches it as `environ[BODY_ERROR]`, which app.py raises before any view, so the error is
rendered like every other and nothing is written. A stalled client costs a connection and a
coroutine, never a thread. Other methods take no body in the API: theirs is not read.

Change-feed waits (change_hub.py) hold no thread either: a long-poll that found no event hands
its wait to the gateway, which awaits the hub on the event loop and then runs the request again;
an event stream (SSE) is sent chunk by chunk, each wait it hands over awaited the same way.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_to_bytes

from feedstore import collector
from feedstore.access_log import DEFERRED, REQUEST_ID
from feedstore.app import BODY_ERROR, WsgiApp
from feedstore.change_hub import ASYNC_WAITS, Deferred
from feedstore.context import BODY
from feedstore.errors import (
    FeedstoreError,
    InvalidBody,
    PayloadTooLarge,
    RequestTimeout,
)

# DELETE too: `DELETE /d/` carries the feed of the entries to delete.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Answer = tuple[int, list[tuple[bytes, bytes]], bytes | Iterator[bytes]]


class Gateway:
    """An ASGI application that runs `app`, a WSGI one, in a pool of `threads` threads."""

    def __init__(self, app: WsgiApp, *, max_body: int, body_timeout: float, threads: int) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="feedstore-request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # serve turns websockets and lifespan events off; nothing else comes
        environ = wsgi_environ(scope)
        body = b""
        if scope["method"] in BODY_METHODS:
            try:
                body = await read_body(
                    receive, declared_length(scope), self.max_body, self.body_timeout
                )
            except FeedstoreError as error:
                environ[BODY_ERROR] = error
            else:
                environ[BODY] = body  # read whole: the app takes it as it is (context.py)
        environ[ASYNC_WAITS] = True  # the app hands waits for change-feed events to us
        loop = asyncio.get_running_loop()
        runner = run if len(body) < collector.LARGE_BODY else run_collector_paused
        while True:
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            answer = await loop.run_in_executor(self.pool, runner, self.app, environ)
            deferred: Deferred | None = environ.pop(DEFERRED, None)
            if deferred is None:
                break
            # A long-poll with no event yet: wait here, holding no thread, then run it again
            # (it keeps its deadline and request id).
            await deferred.hub.wait_deferred(deferred)
            environ = {**environ, "HTTP_X_REQUEST_ID": environ.get(REQUEST_ID, "")}
        status, headers, content = answer
        if BODY_ERROR in environ:
            # What is left of the body will never be read: the connection can't carry another
            # request, and the server must not wait for the rest before closing it.
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if isinstance(content, bytes):
            await send({"type": "http.response.body", "body": content})
            return
        await self._stream(content, environ, receive, send)

    async def _stream(
        self, chunks: Iterator[bytes], environ: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        """An event stream, chunk by chunk: each chunk made in the pool, each wait the app
        hands over done here, until the app ends it or the client goes."""
        loop = asyncio.get_running_loop()
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            while not gone.done():
                chunk = await loop.run_in_executor(self.pool, next, chunks, None)
                if chunk is None:
                    break
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                deferred: Deferred | None = environ.pop(DEFERRED, None)
                if deferred is not None:
                    waiting = asyncio.ensure_future(
                        deferred.hub.wait_async(deferred.stream, deferred.seq, deferred.timeout)
                    )
                    await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
                    waiting.cancel()
            if not gone.done():
                await send({"type": "http.response.body", "body": b""})
        except OSError:
            pass  # the client went while we sent
        finally:
            gone.cancel()
            close = getattr(chunks, "close", None)
            if close is not None:
                await loop.run_in_executor(self.pool, close)


async def _disconnected(receive: Receive) -> None:
    """Until the client disconnects (a streamed answer's request has no more body to read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def read_body(receive: Receive, declared: int | None, limit: int, timeout: float) -> bytes:
    """The whole body of a request, or RequestTimeout, PayloadTooLarge or InvalidBody (see above).

    `declared` is its Content-Length, if it has one; granian stops at that length, so a body
    declared shorter than it is can't be longer than declared here.
    """
    if declared is not None and declared > limit:
        raise PayloadTooLarge()
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            # Not asyncio.wait_for, which runs the read as a task of its own (13 µs a read
            # against 4, and every request with a body reads at least once).
            async with asyncio.timeout(timeout):
                message = await receive()
        except TimeoutError as e:
            raise RequestTimeout() from e
        if message["type"] != "http.request":
            raise InvalidBody("the body is incomplete.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if declared is not None and size != declared:
        raise InvalidBody("the body is incomplete.")
    return b"".join(chunks)


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length; None without one (a chunked body)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            # granian answers 400 itself to a Content-Length that isn't digits; this is a guard.
            if not value.isdigit():
                raise InvalidBody("Content-Length is not a number.")
            return int(value)
    return None


def wsgi_environ(scope: Scope) -> dict[str, Any]:
    """The PEP 3333 environ of an ASGI HTTP scope, without the body.

    PATH_INFO is built from the raw path, percent-decoded to bytes and held as latin-1 as PEP 3333
    says, so the app can tell a path that isn't UTF-8 (granian's `path` has U+FFFD there). Header
    values are latin-1 too: a full-width digit sent in UTF-8 stays three bytes, never a digit.
    """
    raw_path = scope.get("raw_path") or scope["path"].encode()
    server_host, server_port = scope.get("server") or ("localhost", 80)
    client_host, client_port = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", ""),
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server_host),
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client_host),
        "REMOTE_PORT": str(client_port),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        if name == "TRANSFER_ENCODING":
            continue  # the body reaches the app read whole, with its length
        value = raw_value.decode("latin-1")
        key = name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"
        if key in environ:
            value = f"{environ[key]}{'; ' if key == 'HTTP_COOKIE' else ', '}{value}"
        environ[key] = value
    return environ


def _streamed(headers: list[tuple[str, str]]) -> bool:
    """Whether an answer is an event stream (SSE), sent as the app makes it."""
    return any(
        name.lower() == "content-type" and value.startswith("text/event-stream")
        for name, value in headers
    )


def run_collector_paused(app: WsgiApp, environ: dict[str, Any]) -> Answer:
    """run(), with the garbage collector paused (collector.paused: a large body's request)."""
    with collector.paused():
        return run(app, environ)


def run(app: WsgiApp, environ: dict[str, Any]) -> Answer:
    """Call the WSGI app in this thread; its status, its headers for ASGI, and its whole body
    (an iterator of its chunks for an event stream, whose closing is the caller's)."""
    started: list[Any] = []
    written: list[bytes] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return written.append

    result: Iterable[bytes] = app(environ, start_response)
    if _streamed(started[1] if started else []):
        status, headers = started
        encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        return int(status.split(" ", 1)[0]), encoded, iter(result)
    try:
        written.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = started
    encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    return int(status.split(" ", 1)[0]), encoded, b"".join(written)
