"""Running wrk on a generated Lua script and reading the summary line the script prints."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from feedstore.bench import lua
from feedstore.bench.load import Load
from feedstore.embedded import die_with_parent

# Seconds wrk gets beyond its duration to connect, finish and print before it is killed.
GRACE = 30
# A request slower than this counts as a timeout rather than a latency sample.
REQUEST_TIMEOUT = "30s"


class WrkError(Exception):
    """wrk is missing, failed, or printed no summary."""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured; latencies in milliseconds."""

    requests: int
    seconds: float
    ok: int
    conflicts: int
    failed: int
    resyncs: int
    socket_errors: int
    timeouts: int
    p50_ms: float
    p99_ms: float
    mean_ms: float

    @property
    def measured(self) -> int:
        """Requests of the scenario itself, without the reads that re-synced a revision."""
        return self.requests - self.resyncs

    @property
    def non_2xx(self) -> int:
        return self.conflicts + self.failed


def parse_output(text: str) -> WrkResult:
    """Read the summary line of lua.script's done() out of wrk's stdout."""
    for line in text.splitlines():
        if line.startswith(lua.SUMMARY_MARKER):
            try:
                summary = json.loads(line[len(lua.SUMMARY_MARKER) :])
                return WrkResult(
                    requests=int(summary["requests"]),
                    seconds=summary["duration_us"] / 1e6,
                    ok=int(summary["ok"]),
                    conflicts=int(summary["conflicts"]),
                    failed=int(summary["failed"]),
                    resyncs=int(summary["resyncs"]),
                    socket_errors=int(summary["socket_errors"]),
                    timeouts=int(summary["timeouts"]),
                    p50_ms=summary["p50_us"] / 1000,
                    p99_ms=summary["p99_us"] / 1000,
                    mean_ms=summary["mean_us"] / 1000,
                )
            except (ValueError, KeyError, TypeError) as e:
                raise WrkError(f"unreadable wrk summary: {line!r}") from e
    raise WrkError(f"wrk printed no summary: {text.strip()[-500:]!r}")


def executable() -> str:
    """The wrk on PATH; WrkError when there is none."""
    found = shutil.which("wrk")
    if found is None:
        raise WrkError("wrk is not installed; scripts/bench installs it with apt-get")
    return found


def command(script_path: Path, url: str, load: Load, seconds: int) -> list[str]:
    """The wrk argv for one run of `load` against `url`."""
    return [
        executable(),
        f"--threads={load.threads}",
        f"--connections={load.connections}",
        f"--duration={seconds}s",
        f"--timeout={REQUEST_TIMEOUT}",
        f"--script={script_path}",
        url,
    ]


def run(load: Load, url: str, seconds: int, work_dir: Path) -> WrkResult:
    """Run wrk with the script of `load` for `seconds`; kill it if it overruns or we are stopped."""
    script_path = work_dir / "load.lua"
    script_path.write_text(lua.script(load), encoding="utf-8")
    process = subprocess.Popen(
        command(script_path, url, load, seconds),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Its own session, so a Ctrl-C reaches only us and we decide when wrk stops.
        start_new_session=True,
        preexec_fn=functools.partial(die_with_parent, os.getpid()),
    )
    try:
        stdout, stderr = process.communicate(timeout=seconds + GRACE)
    except subprocess.TimeoutExpired as e:
        raise WrkError(f"wrk did not finish within {seconds + GRACE} s") from e
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    if process.returncode != 0:
        raise WrkError(f"wrk exited with {process.returncode}: {(stderr or stdout).strip()}")
    return parse_output(stdout)
