"""Run `feedstore serve` as a real subprocess in tests, and always clean up after it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
# Set in the environment of each serve subprocess, and so inherited by all it starts.
MARK_VARIABLE = "FEEDSTORE_TESTS_SERVE_MARK"
WRITE_HEADERS = {"X-Requested-With": "XMLHttpRequest", "Content-Type": "application/json"}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_command(*args: str) -> list[str]:
    """The argv of `feedstore serve` run by this test's Python."""
    return [sys.executable, "-m", "feedstore.cli", "serve", *args]


@dataclass
class Response:
    """An HTTP answer, read whole."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    """Send one request to 127.0.0.1:port on a new connection; a non-bytes body goes as JSON."""
    payload = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=payload, headers=dict(headers or {}))
        answer = connection.getresponse()
        content = answer.read()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, content)
    finally:
        connection.close()


def living_processes(*, marked: str | None = None, mentioning: str | None = None) -> list[int]:
    """Pids of live processes with MARK_VARIABLE=`marked` or whose argv mentions `mentioning`."""
    wanted = f"{MARK_VARIABLE}={marked}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            # The state is the first field after the parenthesised command name.
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0") if marked else []
        except OSError:
            continue  # it exited while we looked
        if state in ("Z", "X"):
            continue  # dead, waiting for a parent that may never reap it
        if wanted in environ or (mentioning and mentioning in argv):
            found.append(int(entry.name))
    return found


def wait_until_gone(
    *, marked: str | None = None, mentioning: str | None = None, timeout: float = 10.0
) -> list[int]:
    """Wait until no such process lives; return the ones still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while (alive := living_processes(marked=marked, mentioning=mentioning)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return alive


@dataclass
class Server:
    """A `feedstore serve` subprocess; every process it starts inherits its `marker`."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path | None
    log_path: Path
    marker: str
    _log: Any = field(repr=False)

    @property
    def pid(self) -> int:
        """The serve process."""
        return self.process.pid

    def request(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Send one request to this server."""
        return request(self.port, method, path, body, headers)

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until GET /_health answers 200; fail with the server's output otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"serve exited with {self.process.returncode}: {self.output()}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                if request(self.port, "GET", "/_health", timeout=2).status == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"serve was not healthy within {timeout} s: {self.output()}")

    def processes(self) -> list[int]:
        """Live processes of this server: the serve process, its workers, its Redis."""
        # redis-server overwrites its environ with its process title, which names its socket.
        mentioning = str(self.data_dir) if self.data_dir is not None else None
        return living_processes(marked=self.marker, mentioning=mentioning)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """Send SIGTERM to the serve process and return its exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL all its processes at once (serve, workers, Redis), as a crash would."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)
        mentioning = str(self.data_dir) if self.data_dir is not None else None
        wait_until_gone(marked=self.marker, mentioning=mentioning)

    def crash(self) -> None:
        """SIGKILL the serve process and its workers at once, not Redis: a crash of feedstore.

        The kernel then sends its embedded Redis SIGTERM (embedded.die_with_parent), and this
        waits until that Redis is gone too."""
        for pid in living_processes(marked=self.marker):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "redis-server":
                    continue
                os.kill(pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)
        mentioning = str(self.data_dir) if self.data_dir is not None else None
        assert wait_until_gone(marked=self.marker, mentioning=mentioning) == []

    def close(self) -> None:
        """Kill whatever is left and release the log file; safe to call more than once."""
        self.kill()
        self._log.close()


def start_serve(
    *args: str,
    data_dir: Path | None,
    log_path: Path,
    workers: int = 2,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Server:
    """Start `feedstore serve` on a free port (with --data when data_dir is given); don't wait.

    `env` adds to the environment (FEEDSTORE_* settings)."""
    port = port or free_port()
    argv = ["--port", str(port), "--workers", str(workers), *args]
    if data_dir is not None:
        argv += ["--data", str(data_dir)]
    marker = uuid.uuid4().hex
    log = log_path.open("ab")
    process = subprocess.Popen(
        serve_command(*argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=log_path.parent,
        env={**os.environ, **(env or {}), MARK_VARIABLE: marker},
        start_new_session=True,
    )
    return Server(process, port, data_dir, log_path, marker, log)


@contextlib.contextmanager
def running_serve(
    *args: str,
    data_dir: Path | None,
    log_path: Path,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """Start `feedstore serve`, wait until it is healthy, and kill what remains on the way out."""
    server = start_serve(*args, data_dir=data_dir, log_path=log_path, workers=workers, env=env)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.close()


def run_serve(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = START_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run `feedstore serve` expecting it to exit by itself (an error); return its result."""
    return subprocess.run(
        serve_command(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        start_new_session=True,
    )
