"""Where feedstore's log lines go and how they read: `--log-format text|json`.

Every line goes to stderr, one per event: the access log's (access_log.py, one per request), the
embedded Redis's own lines (serve passes them on, logger `feedstore.redis`), and the server's
messages (errors with their tracebacks). In `json` each line is one object: an access line has
`"event": "request"` and the request's fields, any other `"event": "log"`, `level`, `logger`,
`message` (and `traceback`).
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import TextIO

import orjson

from feedstore import access_log
from feedstore.access_log import RequestRecord

ROOT = "feedstore"


class TextFormatter(logging.Formatter):
    """An access line as access_log renders it; anything else as `feedstore: LEVEL logger: text`."""

    def format(self, record: logging.LogRecord) -> str:
        request = getattr(record, "request", None)
        if isinstance(request, RequestRecord):
            return request.text()
        line = f"feedstore: {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        request = getattr(record, "request", None)
        if isinstance(request, RequestRecord):
            return json_line(request)
        line = {
            "event": "log",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def json_line(request: RequestRecord) -> str:
    """An access line in the json format."""
    return orjson.dumps({"event": "request", **request._asdict()}).decode()


class AccessWriter:
    """Writes access lines straight to the stream of feedstore's handler, in its format: one
    `write` and `flush` per line, under the handler's own lock, so a line never mixes with
    another line or with a logger's (access_log.write_lines_with)."""

    def __init__(self, handler: logging.StreamHandler[TextIO], log_format: str) -> None:
        self.stream = handler.stream
        self.lock = handler.lock or threading.RLock()
        self.render = json_line if log_format == "json" else RequestRecord.text

    def __call__(self, request: RequestRecord) -> None:
        line = self.render(request) + "\n"
        with self.lock:
            self.stream.write(line)
            self.stream.flush()


def configure(log_format: str, stream: TextIO | None = None) -> None:
    """Send feedstore's loggers to `stream` (stderr) in `log_format`, once per process."""
    logger = logging.getLogger(ROOT)
    for handler in list(logger.handlers):
        if getattr(handler, "feedstore", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.feedstore = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    access_log.write_lines_with(AccessWriter(handler, log_format))
    # What no line shows, left out of every record: the logging HOWTO's "Optimization" (the
    # access log writes one record per request).
    logging._srcfile = None  # no caller frame lookup
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


# redis-server marks each line's level with one character after the time (`*` notice).
_REDIS_LEVELS = {"#": logging.WARNING, "*": logging.INFO, "-": logging.DEBUG, ".": logging.DEBUG}


class RedisLogFollower(threading.Thread):
    """Passes the embedded redis-server's log lines on to feedstore's log (`feedstore.redis`),
    from where its file ended when the follower was made: what Redis says at start-up, on a
    crash and when it replays its AOF is seen where serve's own lines are."""

    def __init__(self, path: Path, interval: float = 0.2) -> None:
        super().__init__(name="feedstore-redis-log", daemon=True)
        self.path = path
        self.interval = interval
        self.offset = path.stat().st_size if path.exists() else 0
        self.stopping = threading.Event()
        self.logger = logging.getLogger(f"{ROOT}.redis")

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.pass_on()
        self.pass_on()

    def pass_on(self) -> None:
        """Log every whole line written since the last call."""
        try:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                data = log.read()
        except FileNotFoundError:
            return
        whole = data[: data.rfind(b"\n") + 1]
        self.offset += len(whole)
        for raw in whole.decode("utf-8", "replace").splitlines():
            line = raw.strip()
            if line:
                self.logger.log(_level(line), "%s", line)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


def _level(line: str) -> int:
    """`12:M 27 Nov 2026 18:00:00.123 * Ready to accept connections` -> INFO."""
    parts = line.split(" ", 6)
    return _REDIS_LEVELS.get(parts[5], logging.INFO) if len(parts) > 6 else logging.INFO
