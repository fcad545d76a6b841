"""`feedstore bench`: one run that serves the baseline and feedstore the same way and loads both.

Everything runs on this machine: one embedded Redis (AOF, fsync everysec, as in production) in a
temp dir, every app under every server with the same workers and threads, and wrk as the only
load generator. Rounds interleave the scenarios, each next to the ones compared with it, so a
burst of other load on the machine hits both sides of a ratio alike instead of skewing one; each
scenario starts on a freshly rewritten AOF, with no rewrite or snapshot running and the page
cache written back, so none pays for the writes of the ones before; the rewrites a scenario's own
writes cause are reported beside its Redis time. The scale scenarios get a second Redis, seeded
once before the servers start; the codec micro-benchmark runs first, in-process, on a quiet
machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from feedstore import cli
from feedstore.bench import cluster, codecs, report, scale, scenarios, servers, transfer, wrk
from feedstore.bench.client import RequestFailed
from feedstore.bench.cluster import ServerGroup
from feedstore.bench.codecs import CodecTiming
from feedstore.bench.load import Load
from feedstore.bench.report import Report
from feedstore.bench.scale import Probe, ScaleData
from feedstore.bench.scenarios import Concurrency, Scenario, Target
from feedstore.bench.servers import RunningServer, ServerError, ServerSettings
from feedstore.cluster_launcher import LocalCluster
from feedstore.embedded import EmbeddedRedis, EmbeddedRedisError
from feedstore.settings import Settings

_Run = tuple[Scenario, str]  # a scenario and the server it runs under

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
    scale_children: int = scale.BIG_CHILDREN
    seed_processes: int = 2
    codecs: bool = True
    cluster_servers: int = 1  # serve processes in front of the cluster (bench/cluster.py)
    transfer_entries: int = transfer.ENTRIES  # export and import (bench/transfer.py); 0 skips

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
    if options.check and not result.met:
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
        "--rounds", type=_positive_int, default=2,
        help="interleaved rounds, every other one in reverse order (%(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--warmup",
        type=parse_duration,
        default=2,
        help="unmeasured load of each scenario, every one before the first round (2s)",
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
        default=cli.default_threads(),
        help="request threads per worker, serve's default on this machine (%(default)s)",
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
        "--bulk-writers",
        type=_positive_int,
        default=4,
        help="wrk connections for the 10,000-entry bulk PUTs, one key range each (%(default)s)",
    )
    parser.add_argument(
        "--servers",
        default="granian,gunicorn",
        help=f"comma-separated, from {', '.join(servers.SERVERS)}; granian and gunicorn are "
        "feedstore serve's (%(default)s)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(names)}",
    )
    parser.add_argument(
        "--scale",
        type=_positive_int,
        default=scale.BIG_CHILDREN,
        metavar="N",
        help="children of /big for the scale-* scenarios, seeded once per run (%(default)s)",
    )
    parser.add_argument(
        "--no-scale",
        action="store_true",
        help="skip the scale-* scenarios and their seeding, for quick runs",
    )
    parser.add_argument(
        "--seed-processes",
        type=_positive_int,
        default=2,
        help="processes that seed /big (%(default)s)",
    )
    parser.add_argument(
        "--no-cluster",
        action="store_true",
        help="skip the cluster-* scenarios and their 3-primary Redis Cluster",
    )
    parser.add_argument(
        "--cluster-servers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="feedstore serve processes in front of the cluster, each with --workers, the load "
        "split over them: N servers x W workers for a scaling curve (%(default)s)",
    )
    parser.add_argument(
        "--no-codecs", action="store_true", help="skip the in-process codec micro-benchmark"
    )
    parser.add_argument(
        "--transfer-entries",
        type=int,
        default=transfer.ENTRIES,
        metavar="N",
        help="entries that feedstore export and import --mode restore are timed over "
        "(%(default)s; 1000000 for the issue's figure; 0 skips them)",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON (- for stdout)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 3 when a comparison or codec target is missed"
    )
    return parser


def parse_options(argv: list[str] | None) -> Options:
    args = build_parser().parse_args(argv)
    chosen = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in servers.SERVERS]
    if unknown or not chosen:
        raise BenchError(f"unknown server {', '.join(unknown) or '(none)'}")
    picked = set(args.scenario or [])
    chosen_scenarios = tuple(
        s
        for s in scenarios.SCENARIOS
        if (not picked or s.name in picked)
        and not (args.no_scale and s.scale)
        and not (args.no_cluster and s.cluster)
    )
    if not chosen_scenarios:
        raise BenchError(
            "no scenario left to run (--no-scale and --no-cluster drop the scale-* and "
            "cluster-* ones)"
        )
    if args.scale < 2:
        raise BenchError(f"--scale must be at least 2, for /big to have a middle, not {args.scale}")
    return Options(
        seconds=1 if args.quick else args.duration,
        rounds=1 if args.quick else args.rounds,
        warmup=0 if args.quick else args.warmup,
        servers=tuple(dict.fromkeys(chosen)),
        scenarios=chosen_scenarios,
        settings=ServerSettings(workers=args.workers, threads=args.threads),
        concurrency=Concurrency(
            connections=args.connections,
            reader_threads=min(2, args.connections),
            writers=args.writers,
            bulk_writers=args.bulk_writers,
        ),
        json_path=args.json,
        check=args.check,
        scale_children=args.scale,
        seed_processes=args.seed_processes,
        codecs=not args.no_codecs,
        cluster_servers=args.cluster_servers,
        transfer_entries=max(0, args.transfer_entries),
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
    codec_timings: list[CodecTiming] = []
    if options.codecs:
        progress(f"bench: codec micro-benchmark, {codecs.ENTRIES} stored entries, in-process")
        codec_timings = codecs.measure()
    apps = list(dict.fromkeys(scenario.app for scenario in options.scenarios))
    results: dict[tuple[str, str], list[wrk.WrkResult]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    commands: dict[tuple[str, str], dict[str, int]] = {}  # Redis's µs by command
    rewrites: dict[tuple[str, str], list[float]] = {}  # Redis's forks and their CPU seconds
    loads: dict[str, Load] = {}
    probes: list[Probe] = []
    with (
        _signals_as_exit(),
        tempfile.TemporaryDirectory(prefix="fsbench-") as temp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(temp)
        redis_servers, scale_data = _start_redis(apps, options, work, stack, progress)
        running: dict[tuple[str, str], RunningServer | ServerGroup] = {}
        for app in apps:
            for server in servers_of(app, options.servers):
                group = options.cluster_servers if app.redis == cluster.REDIS else 1
                shape = f"{group} servers x " if group > 1 else ""
                progress(
                    f"bench: starting {app.name} under {server} ({shape}"
                    f"{options.settings.workers} workers, {options.settings.threads} threads)"
                )
                url = redis_servers[app.redis].url
                if group > 1:
                    running[app.name, server] = stack.enter_context(
                        cluster.running_group(app, server, options.settings, url, work, group)
                    )
                else:
                    running[app.name, server] = stack.enter_context(
                        servers.running(app, server, options.settings, url, work)
                    )
        if scale_data is not None:
            probed = running[scenarios.FEEDSTORE_SCALE.name, options.servers[0]]
            progress(f"bench: timing the unindexed filter over /big under {probed.server}")
            probes = scale.probes(probed.port)
        runs = [
            (scenario, server)
            for scenario in measuring_order(options.scenarios)
            for server in servers_of(scenario.app, options.servers)
        ]
        steps = len(runs) * options.rounds
        step = 0
        # Every scenario's warm-up before any is measured: a Redis that no bulk has filled yet
        # is faster (in_round_order), and no measured run should have it to itself.
        if options.warmup:
            progress(f"bench: warming up each scenario for {options.warmup} s")
        for scenario, server in runs if options.warmup else ():
            target = running[scenario.app.name, server]
            redis = redis_servers[scenario.app.redis]
            servers.wait_for_quiet_redis(cluster.redis_urls(redis))
            prepared = Target(target.port, options.concurrency, scale_data, redis.url)
            warm = scenarios.check(target.port, scenario.prepare(prepared))
            cluster.run_wrk(warm, target, options.warmup, work)
            time.sleep(SETTLE_SECONDS)
            _wait_until_idle(scenario, target, cluster.redis_pids(redis), progress)
        for round_number in range(1, options.rounds + 1):
            for scenario, server in in_round_order(runs, round_number):
                step += 1
                target = running[scenario.app.name, server]
                redis_pids = cluster.redis_pids(redis_servers[scenario.app.redis])
                redis_urls = cluster.redis_urls(redis_servers[scenario.app.redis])
                waited = servers.rewrite_aofs(redis_urls)
                if waited > 2:
                    progress(f"bench: waited {waited:.0f} s for Redis to rewrite its AOF")
                redis_url = redis_servers[scenario.app.redis].url
                prepared = Target(target.port, options.concurrency, scale_data, redis_url)
                load = scenarios.check(target.port, scenario.prepare(prepared))
                progress(
                    f"[{step}/{steps}] round {round_number}: {scenario.name} under {server}, "
                    f"{options.seconds_per_round} s, {load.connections} connections"
                )
                spent_before = servers.command_usec(redis_urls)
                forks_before, forked_before = servers.rewrite_work(redis_urls)
                before = (target.cpu_seconds(), servers.cpu_seconds(redis_pids))
                result = cluster.run_wrk(load, target, options.seconds_per_round, work)
                after = (target.cpu_seconds(), servers.cpu_seconds(redis_pids))
                spent = commands.setdefault((scenario.name, server), {})
                for command, usec in servers.command_usec(redis_urls).items():
                    spent[command] = spent.get(command, 0) + usec - spent_before.get(command, 0)
                results.setdefault((scenario.name, server), []).append(result)
                used = cpu.setdefault((scenario.name, server), [0.0, 0.0])
                used[0] += after[0] - before[0]
                used[1] += after[1] - before[1]
                time.sleep(SETTLE_SECONDS)
                _wait_until_idle(scenario, target, redis_pids, progress)
                # The rewrites the window started, run to their end: their children's CPU.
                servers.wait_for_quiet_redis(redis_urls)
                forks, forked = servers.rewrite_work(redis_urls)
                rewrote = rewrites.setdefault((scenario.name, server), [0, 0.0])
                rewrote[0] += forks - forks_before
                rewrote[1] += forked - forked_before
                loads[scenario.name] = load
        transfers = []
        if options.transfer_entries:
            transfers = transfer.measure(work, options.transfer_entries, progress)
    measured = build_report(options, results, loads, cpu, commands, rewrites)
    return dataclasses.replace(
        measured,
        transfers=transfers,
        codecs=codec_timings,
        scale=scale_data,
        probes=probes,
        probe_server=options.servers[0] if probes else None,
    )


def measuring_order(
    chosen: Sequence[Scenario],
    comparisons: Sequence[scenarios.Comparison] = scenarios.COMPARISONS,
) -> list[Scenario]:
    """`chosen` in the order a round runs them: each scenario right before the ones compared
    with it either way (and theirs, depth first), the rest as listed.

    A ratio is only as good as the likeness of its two windows. The machine's speed drifts
    within a run (the baseline's own rate moved by a fifth between runs, and within one), and
    the table's order, every baseline first, put baseline-put and plain-put at the two ends of
    a round: ABBA evens out a steady drift, not a slow spell in the middle, which both of a
    middle scenario's windows then caught. Side by side, a pair shares its spells."""
    partners: dict[str, list[str]] = {}
    for comparison in comparisons:
        partners.setdefault(comparison.reference, []).append(comparison.subject)
        partners.setdefault(comparison.subject, []).append(comparison.reference)
    by_name = {scenario.name: scenario for scenario in chosen}
    order: list[Scenario] = []

    def place(scenario: Scenario) -> None:
        if scenario in order:
            return
        order.append(scenario)
        for name in partners.get(scenario.name, ()):
            if name in by_name:
                place(by_name[name])

    for scenario in chosen:
        place(scenario)
    return order


def in_round_order(runs: Sequence[_Run], round_number: int) -> Sequence[_Run]:
    """The runs of a round: in order in odd rounds, reversed in even ones (ABBA), so that no
    scenario is always measured after the same ones. Redis slows down as the run fills it (a
    10,000-entry bulk left a 100-entry PUT's commands ~50% slower on a Redis of 40 MB against
    140 MB; the same seen with the streams deleted), so a fixed order charged the scenarios late
    in it, feedstore's after the baseline's, with the run's growth. (The warm-ups, all run
    first, take the step of the first bulk out of the measured runs.)"""
    return runs if round_number % 2 else runs[::-1]


def _wait_until_idle(
    scenario: Scenario,
    target: RunningServer | ServerGroup,
    redis_pids: list[int],
    progress: Progress,
) -> None:
    """Until the requests `scenario` left running on `target` and its Redis are done
    (servers.wait_until_idle), so the next scenario's window has the machine to itself."""
    waited = servers.wait_until_idle(lambda: target.cpu_seconds() + servers.cpu_seconds(redis_pids))
    if waited > 1:
        progress(f"bench: waited {waited:.1f} s for {scenario.name}'s last requests to end")


def _start_redis(
    apps: list[servers.App],
    options: Options,
    work: Path,
    stack: contextlib.ExitStack,
    progress: Progress,
) -> tuple[dict[str, EmbeddedRedis | LocalCluster], ScaleData | None]:
    """Start the Redis servers the apps use, by App.redis; seed the scale one if it is used."""
    started: dict[str, EmbeddedRedis | LocalCluster] = {}
    if any(app.redis == "main" for app in apps):
        progress(f"bench: Redis with AOF (fsync everysec) in {work}")
        started["main"] = stack.enter_context(EmbeddedRedis(work / "redis", fsync="everysec"))
    if any(app.redis == cluster.REDIS for app in apps):
        progress(f"bench: Redis Cluster, {cluster.PRIMARIES} primaries with AOF, in {work}")
        started[cluster.REDIS] = cluster.start(work, stack)
    if not any(app.redis == "scale" for app in apps):
        return started, None
    # No AOF: its scenarios only read, and rewriting a million keys' AOF would fork a big Redis
    # in the middle of the run.
    progress(
        f"bench: scale Redis (no AOF) in {work}; seeding /small and "
        f"{options.scale_children:,} children of /big from {options.seed_processes} processes"
    )
    started["scale"] = stack.enter_context(EmbeddedRedis(work / "scale", persistent=False))
    seeded = scale.seed(
        started["scale"].url,
        options.scale_children,
        processes=options.seed_processes,
        progress=progress,
    )
    progress(f"bench: seeded /big in {seeded.seconds:.0f} s")
    return started, seeded


def servers_of(app: servers.App, chosen: tuple[str, ...]) -> tuple[str, ...]:
    """The servers an app runs under: its own one, or every one the run has."""
    return (app.server,) if app.server is not None else chosen


def build_report(
    options: Options,
    results: dict[tuple[str, str], list[wrk.WrkResult]],
    loads: dict[str, Load],
    cpu: dict[tuple[str, str], list[float]],
    commands: Mapping[tuple[str, str], Mapping[str, int]] | None = None,
    rewrites: Mapping[tuple[str, str], Sequence[float]] | None = None,
) -> Report:
    measurements = [
        report.measure(
            scenario,
            server,
            results[scenario.name, server],
            loads[scenario.name].entries_per_request,
            cpu[scenario.name, server][0],
            cpu[scenario.name, server][1],
            connections=(
                loads[scenario.name].connections if loads[scenario.name].long_requests else None
            ),
            redis_usec=(commands or {}).get((scenario.name, server)),
            rewrites=(rewrites or {}).get((scenario.name, server), (0, 0.0)),
        )
        for scenario in options.scenarios
        for server in servers_of(scenario.app, options.servers)
        if (scenario.name, server) in results
    ]
    server_ratios, faster = report.rank_servers(measurements, options.servers)
    # Without the baseline to rank the servers by, compare under the first one.
    compared = faster or options.servers[0]
    ratios = report.compare(measurements, scenarios.COMPARISONS, compared)
    rates = report.entry_rates(measurements, scenarios.ENTRY_RATE_TARGETS, compared)
    settings = {
        "seconds": options.seconds,
        "rounds": options.rounds,
        "warmup": options.warmup,
        "workers": options.settings.workers,
        "threads": options.settings.threads,
        "connections": options.concurrency.connections,
        "writers": options.concurrency.writers,
        "bulk_writers": options.concurrency.bulk_writers,
        "servers": list(options.servers),
        "redis": "embedded, AOF fsync everysec",
    }
    if any(scenario.scale for scenario in options.scenarios):
        settings["scale"] = options.scale_children
        settings["scale_redis"] = "embedded, no AOF"
        settings["fetch_limit"] = Settings.load().fetch_limit
    if any(scenario.cluster for scenario in options.scenarios):
        settings["cluster"] = f"{cluster.PRIMARIES} primaries, embedded, AOF fsync everysec"
        settings["cluster_servers"] = options.cluster_servers
    return Report(measurements, server_ratios, faster, ratios, settings, entry_rates=rates)


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
