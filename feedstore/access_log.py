"""One access-log line per request, and the request id that ties it to the client's own logs.

`AccessLog` wraps the WSGI app, outermost: it takes the client's `X-Request-Id` (or makes one),
returns it on the answer, times the request to its last byte, and then logs one line with the
method, path and query, status, bytes sent, duration, principal and request id — never a body,
a header's value other than the id, a token or a cookie. The app notes what only it knows (the
route matched, the principal, the error code) in the WSGI environ (`note`). Each finished
request is also handed to `observers` (metrics.py counts them).

The line goes to the `feedstore.access` logger, unless `serve` gave a direct writer
(`write_lines_with`, logs.configure): then it is written straight to the stream, the same line
without the logging module's record, lock and handler lookup on every request.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any, NamedTuple

REQUEST_ID_HEADER = "X-Request-Id"
# What a client's id may be: what logs and headers carry safely (visible ASCII, no quotes).
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
ROUTE, PRINCIPAL, ERROR_CODE, REQUEST_ID = (
    "feedstore.route",
    "feedstore.principal",
    "feedstore.error_code",
    "feedstore.request_id",
)
# When the request started (kept when the gateway runs a long-poll again after its wait), and
# the wait a request handed to the gateway (change_hub.Deferred): that run is not logged.
STARTED, DEFERRED = "feedstore.started", "feedstore.deferred"
# Escaped in logged paths and queries: C0 and C1 controls, and the line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
logger = logging.getLogger("feedstore.access")

Environ = MutableMapping[str, Any]
WsgiApp = Callable[[Any, Callable[..., Any]], Iterable[bytes]]


class RequestRecord(NamedTuple):
    """What the access log says of one request (a tuple: made once per request, cheaply)."""

    method: str
    path: str
    query: str
    status: int
    bytes: int
    duration_ms: float
    route: str | None
    principal: str
    request_id: str
    remote: str
    error: str | None = None

    def text(self) -> str:
        """The line in the text format: like a common log line, with the rest as key=value."""
        target = f"{self.path}?{self.query}" if self.query else self.path
        line = (
            f'{self.remote} {self.principal} "{self.method} {target}" {self.status} '
            f"{self.bytes} {self.duration_ms:.1f}ms id={self.request_id}"
        )
        return f"{line} error={self.error}" if self.error else line


# Where a line goes when not to `logger`: set by logs.configure for serve (one per process).
_direct_writer: Callable[[RequestRecord], None] | None = None


def write_lines_with(writer: Callable[[RequestRecord], None] | None) -> None:
    """Write each request's line with `writer` instead of through `logger` (None: the logger)."""
    global _direct_writer
    _direct_writer = writer


def note(environ: Environ, name: str, value: str | None) -> None:
    """Tell the access log something only the app knows (ROUTE, PRINCIPAL, ERROR_CODE)."""
    environ[name] = value


def request_id(environ: Environ) -> str:
    """The id of the request being served (the client's, or the one AccessLog made)."""
    return str(environ.get(REQUEST_ID, ""))


class AccessLog:
    """WSGI middleware: a request id on every answer, one log line and one record per request."""

    def __init__(
        self, app: WsgiApp, *, observers: Iterable[Callable[[RequestRecord], None]] = ()
    ) -> None:
        self.app = app
        self.observers = tuple(observers)

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        # A long-poll the gateway runs again after its wait keeps its start (and its id).
        started = environ.setdefault(STARTED, time.perf_counter())
        sent = environ.get("HTTP_X_REQUEST_ID", "")
        # An id of 32 hex digits, as a uuid4's: random (reseeded in each forked worker), not
        # secret, so without a system call per request as os.urandom makes.
        rid = sent if sent and _CLIENT_ID.fullmatch(sent) else f"{random.getrandbits(128):032x}"
        environ[REQUEST_ID] = rid
        status: list[int] = [0]

        def starting(status_line: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            status[0] = int(status_line.split(" ", 1)[0])
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, rid))
            return start_response(status_line, headers, *rest)

        body = self.app(environ, starting)
        return _Counted(body, lambda size: self._finish(environ, status[0], size, started))

    def _finish(self, environ: Environ, status: int, size: int, started: float) -> None:
        if environ.get(DEFERRED):
            return  # run again after its wait (gateway.py): one line, for the last run
        record = RequestRecord(
            method=environ.get("REQUEST_METHOD", ""),
            path=_printable(environ.get("PATH_INFO", "")),
            query=_printable(environ.get("QUERY_STRING", "")),
            status=status,
            bytes=size,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            route=environ.get(ROUTE),
            principal=environ.get(PRINCIPAL) or "-",
            request_id=environ[REQUEST_ID],
            remote=environ.get("REMOTE_ADDR") or "-",
            error=environ.get(ERROR_CODE),
        )
        if _direct_writer is not None:
            _direct_writer(record)
        else:
            # The line as text; logs.py's formatters render `request` in the chosen format.
            logger.info("%s", record.text(), extra={"request": record})
        for observe in self.observers:
            observe(record)


def _printable(wsgi_text: str) -> str:
    """A PEP 3333 string (UTF-8 bytes held as latin-1) as readable text, with control
    characters escaped, so that no request can forge a line of the log."""
    if wsgi_text.isascii() and wsgi_text.isprintable():
        return wsgi_text  # almost every path and query: nothing to decode or escape
    text = wsgi_text.encode("latin-1", "replace").decode("utf-8", "replace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class _Counted:
    """A response body that counts its bytes and reports once, when the server closes it."""

    def __init__(self, body: Iterable[bytes], done: Callable[[int], None]) -> None:
        self.body = body
        self.done = done
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.body:
            self.size += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.done(self.size)
