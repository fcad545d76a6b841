"""`feedstore bench`: one run that serves the baseline and feedstore the same way and loads both.

Everything runs on this machine: one embedded Redis (AOF, fsync everysec, as in production) in a
temp dir, every app under every server with the same workers and threads, and wrk as the only
load generator. Rounds interleave the scenarios, so a burst of other load on the machine hits
all of them alike instead of skewing one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from feedstore.bench import report, scenarios, servers, wrk
from feedstore.bench.client import RequestFailed
from feedstore.bench.report import Report
from feedstore.bench.scenarios import Concurrency, Scenario
from feedstore.bench.servers import RunningServer, ServerError, ServerSettings
from feedstore.embedded import EmbeddedRedis, EmbeddedRedisError

Progress = Callable[[str], None]
_DURATION = re.compile(r"(\d+)(s|m)?")
# After wrk exits, a server may still be answering requests it had read (gunicorn's sync workers
# do); they would bump the revisions the next scenario seeds. This pause lets them land first.
SETTLE_SECONDS = 0.5


class BenchError(Exception):
    """A bad option or a run that can't go on; reported as one line on stderr."""


@dataclass(frozen=True)
class Options:
    """What one bench run does."""

    seconds: int  # per scenario and server, over all rounds
    rounds: int
    warmup: int
    servers: tuple[str, ...]
    scenarios: tuple[Scenario, ...]
    settings: ServerSettings
    concurrency: Concurrency
    json_path: str | None
    check: bool

    @property
    def seconds_per_round(self) -> int:
        return max(1, self.seconds // self.rounds)


def main(argv: list[str] | None = None) -> int:
    """Run the bench, print the table; 1 on errors, 3 with --check when a target is missed."""
    try:
        options = parse_options(argv)
        result = run(options, progress=lambda line: print(line, file=sys.stderr, flush=True))
    except (
        BenchError,
        EmbeddedRedisError,
        RequestFailed,
        ServerError,
        wrk.WrkError,
    ) as e:
        print(f"feedstore bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(report.table(result))
    for warning in report.warnings(result):
        print(f"warning: {warning}", file=sys.stderr)
    if options.json_path is not None:
        text = json.dumps(report.as_json(result))
        if options.json_path == "-":
            print(text)
        else:
            Path(options.json_path).write_text(text + "\n", encoding="utf-8")
    if options.check and not all(ratio.met for ratio in result.ratios):
        return 3
    return 0


def build_parser() -> argparse.ArgumentParser:
    names = [scenario.name for scenario in scenarios.SCENARIOS]
    parser = argparse.ArgumentParser(
        prog="feedstore bench",
        description="Measure feedstore against a bare Flask+Redis baseline on this machine.",
    )
    parser.add_argument(
        "--duration",
        type=parse_duration,
        default=10,
        help="load time per scenario and server, over all rounds, e.g. 10s or 1m (10s)",
    )
    parser.add_argument(
        "--rounds", type=_positive_int, default=2, help="interleaved rounds (%(default)s)"
    )
    parser.add_argument(
        "--warmup",
        type=parse_duration,
        default=2,
        help="unmeasured load before each scenario's first round (2s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1 s per scenario, one round, no warm-up",
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=2, help="worker processes (%(default)s)"
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=8,
        help="request threads per worker, granian and gunicorn-gthread (%(default)s)",
    )
    parser.add_argument(
        "--connections", type=_positive_int, default=16, help="wrk connections for reads"
    )
    parser.add_argument(
        "--writers",
        type=_positive_int,
        default=16,
        help="wrk threads for writes, one connection and one key each (%(default)s)",
    )
    parser.add_argument(
        "--servers",
        default="granian,gunicorn",
        help=f"comma-separated, from {', '.join(servers.SERVERS)} (%(default)s)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(names)}",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON (- for stdout)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 3 when a feedstore/baseline target is missed"
    )
    return parser


def parse_options(argv: list[str] | None) -> Options:
    args = build_parser().parse_args(argv)
    chosen = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in servers.SERVERS]
    if unknown or not chosen:
        raise BenchError(f"unknown server {', '.join(unknown) or '(none)'}")
    picked = set(args.scenario or [])
    return Options(
        seconds=1 if args.quick else args.duration,
        rounds=1 if args.quick else args.rounds,
        warmup=0 if args.quick else args.warmup,
        servers=tuple(dict.fromkeys(chosen)),
        scenarios=tuple(s for s in scenarios.SCENARIOS if not picked or s.name in picked),
        settings=ServerSettings(workers=args.workers, threads=args.threads),
        concurrency=Concurrency(
            connections=args.connections,
            reader_threads=min(2, args.connections),
            writers=args.writers,
        ),
        json_path=args.json,
        check=args.check,
    )


def parse_duration(text: str) -> int:
    """Whole seconds from `10`, `10s` or `1m` (wrk takes whole seconds)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration like 10s or 1m: {text}")
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def run(options: Options, progress: Progress) -> Report:
    """Start Redis and every server, run every scenario in rounds, stop everything, report."""
    wrk.executable()
    apps = list(dict.fromkeys(scenario.app for scenario in options.scenarios))
    results: dict[tuple[str, str], list[wrk.WrkResult]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    entries: dict[str, int] = {}
    with (
        _signals_as_exit(),
        tempfile.TemporaryDirectory(prefix="fsbench-") as temp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(temp)
        progress(f"bench: Redis with AOF (fsync everysec) in {work}")
        redis = stack.enter_context(EmbeddedRedis(work / "redis", fsync="everysec"))
        running: dict[tuple[str, str], RunningServer] = {}
        for server in options.servers:
            for app in apps:
                progress(
                    f"bench: starting {app.name} under {server} "
                    f"({options.settings.workers} workers)"
                )
                running[app.name, server] = stack.enter_context(
                    servers.running(app, server, options.settings, redis.url, work)
                )
        steps = len(options.scenarios) * len(options.servers) * options.rounds
        step = 0
        for round_number in range(1, options.rounds + 1):
            for scenario in options.scenarios:
                for server in options.servers:
                    step += 1
                    target = running[scenario.app.name, server]
                    if round_number == 1 and options.warmup:
                        warm = scenarios.check(
                            target.port, scenario.prepare(target.port, options.concurrency)
                        )
                        wrk.run(warm, target.url, options.warmup, work)
                        time.sleep(SETTLE_SECONDS)
                    load = scenarios.check(
                        target.port, scenario.prepare(target.port, options.concurrency)
                    )
                    progress(
                        f"[{step}/{steps}] round {round_number}: {scenario.name} under {server}, "
                        f"{options.seconds_per_round} s, {load.connections} connections"
                    )
                    before = (target.cpu_seconds(), servers.cpu_seconds([redis.pid or 0]))
                    result = wrk.run(load, target.url, options.seconds_per_round, work)
                    after = (target.cpu_seconds(), servers.cpu_seconds([redis.pid or 0]))
                    results.setdefault((scenario.name, server), []).append(result)
                    used = cpu.setdefault((scenario.name, server), [0.0, 0.0])
                    used[0] += after[0] - before[0]
                    used[1] += after[1] - before[1]
                    time.sleep(SETTLE_SECONDS)
                    entries[scenario.name] = load.entries_per_request
    return build_report(options, results, entries, cpu)


def build_report(
    options: Options,
    results: dict[tuple[str, str], list[wrk.WrkResult]],
    entries: dict[str, int],
    cpu: dict[tuple[str, str], list[float]],
) -> Report:
    measurements = [
        report.measure(
            scenario,
            server,
            results[scenario.name, server],
            entries[scenario.name],
            *cpu[scenario.name, server],
        )
        for scenario in options.scenarios
        for server in options.servers
        if (scenario.name, server) in results
    ]
    server_ratios, faster = report.rank_servers(measurements, options.servers)
    ratios = report.compare(measurements, scenarios.COMPARISONS, faster) if faster else []
    settings = {
        "seconds": options.seconds,
        "rounds": options.rounds,
        "warmup": options.warmup,
        "workers": options.settings.workers,
        "threads": options.settings.threads,
        "connections": options.concurrency.connections,
        "writers": options.concurrency.writers,
        "servers": list(options.servers),
        "redis": "embedded, AOF fsync everysec",
    }
    return Report(measurements, server_ratios, faster, ratios, settings)


@contextlib.contextmanager
def _signals_as_exit() -> Iterator[None]:
    """Let SIGTERM and SIGHUP unwind like Ctrl-C does, so every server and Redis is stopped."""
    handled = (signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.getsignal(signum) for signum in handled}
    for signum in handled:
        signal.signal(signum, _exit_on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
