"""Turning wrk results into measurements, the faster server, the ratios, a table and JSON.

Beside wrk's numbers a report carries what the run measured without wrk: the codec
micro-benchmark, and the scale data set's seeding, memory and one-off timed requests.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from feedstore.bench.codecs import CodecTiming
from feedstore.bench.scale import PROBE_REPEATS, Probe, ScaleData
from feedstore.bench.scenarios import Comparison, Scenario, server_of
from feedstore.bench.transfer import TransferTiming
from feedstore.bench.transfer import lines as transfer_lines
from feedstore.bench.wrk import WrkResult


@dataclass(frozen=True)
class Measurement:
    """One scenario under one server, over all rounds.

    Throughput is over all rounds together (for long requests, from their latency: see
    load.Load); p50 is the median of the rounds' p50s, p99 the worst round's p99 (an upper bound
    of the p99 over all requests).
    """

    scenario: str
    operation: str
    app: str
    server: str
    description: str
    rounds: int
    requests: int
    seconds: float
    requests_per_s: float
    entries_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    conflicts: int
    socket_errors: int
    timeouts: int
    # CPU time per request, of all the server's processes and of Redis: unlike throughput, it
    # hardly moves when something else on the machine competes for the cores.
    cpu_ms: float
    redis_cpu_ms: float
    # Redis's time by command, µs per entry, most first (servers.command_usec): what its CPU
    # per request is spent on.
    redis_commands: dict[str, float] = dataclasses.field(default_factory=dict)
    # The AOF rewrites (Redis's forks) the rounds started, and their children's CPU, µs per
    # entry: not in redis_cpu_ms, though each takes a core while it runs.
    rewrites: int = 0
    rewrite_us: float = 0.0


# A command's share of a scenario's Redis time below this (µs per entry) is not shown.
MIN_COMMAND_US = 0.01


@dataclass(frozen=True)
class Ratio:
    """One comparison's throughput ratio under one server, and its CPU per request ratios."""

    name: str
    server: str
    ratio: float
    target: float | None  # None: shown, never missed
    cpu_ratio: float  # the subject's server CPU per request over the reference's
    redis_cpu_ratio: float  # the same for Redis's CPU

    @property
    def met(self) -> bool:
        return self.target is None or self.ratio >= self.target


@dataclass(frozen=True)
class EntryRate:
    """A scenario's entries per second under one server, against its target."""

    scenario: str
    server: str
    entries_per_s: float
    target: float

    @property
    def met(self) -> bool:
        return self.entries_per_s >= self.target


@dataclass(frozen=True)
class Report:
    measurements: list[Measurement]
    server_ratios: dict[str, float]
    faster_server: str | None
    ratios: list[Ratio]
    settings: dict[str, Any]
    codecs: list[CodecTiming] = dataclasses.field(default_factory=list)
    scale: ScaleData | None = None
    probes: list[Probe] = dataclasses.field(default_factory=list)
    probe_server: str | None = None
    entry_rates: list[EntryRate] = dataclasses.field(default_factory=list)
    transfers: list[TransferTiming] = dataclasses.field(default_factory=list)

    @property
    def met(self) -> bool:
        """Whether every target of the run was met: the ratios, the entry rates, the codecs'."""
        return (
            all(r.met for r in self.ratios)
            and all(r.met for r in self.entry_rates)
            and all(c.met for c in self.codecs)
            and all(t.met for t in self.transfers)
        )


def measure(
    scenario: Scenario,
    server: str,
    results: Sequence[WrkResult],
    entries_per_request: int,
    cpu_seconds: float = 0.0,
    redis_cpu_seconds: float = 0.0,
    connections: int | None = None,
    redis_usec: Mapping[str, int] | None = None,
    rewrites: Sequence[float] = (0, 0.0),
) -> Measurement:
    """Combine the rounds of `scenario` under `server`; CPU seconds and `redis_usec` (Redis's
    microseconds by command) are their totals.

    With `connections` (a load of long requests), the rate is connections / mean latency, and
    the requests are that rate over the rounds' time, for the CPU per request. `rewrites`:
    the forks the rounds started, and their CPU seconds.
    """
    requests = sum(result.measured for result in results)
    seconds = sum(result.seconds for result in results)
    rate = requests / seconds if seconds else 0.0
    if connections is not None and requests:
        mean_ms = sum(r.mean_ms * r.measured for r in results) / requests
        rate = 1000 * connections / mean_ms if mean_ms else 0.0
        requests = round(rate * seconds)
    return Measurement(
        scenario=scenario.name,
        operation=scenario.operation,
        app=scenario.app.name,
        server=server,
        description=scenario.description,
        rounds=len(results),
        requests=requests,
        seconds=round(seconds, 3),
        requests_per_s=round(rate, 1),
        entries_per_s=round(rate * entries_per_request, 1),
        p50_ms=round(statistics.median(result.p50_ms for result in results), 2),
        p99_ms=round(max(result.p99_ms for result in results), 2),
        non_2xx=sum(result.non_2xx for result in results),
        conflicts=sum(result.conflicts for result in results),
        socket_errors=sum(result.socket_errors for result in results),
        timeouts=sum(result.timeouts for result in results),
        cpu_ms=round(1000 * cpu_seconds / requests, 3) if requests else 0.0,
        redis_cpu_ms=round(1000 * redis_cpu_seconds / requests, 3) if requests else 0.0,
        redis_commands=_per_entry(redis_usec or {}, requests * entries_per_request),
        rewrites=int(rewrites[0]),
        rewrite_us=(
            round(1e6 * rewrites[1] / (requests * entries_per_request), 2) if requests else 0.0
        ),
    )


def _per_entry(usec: Mapping[str, int], entries: int) -> dict[str, float]:
    """Microseconds by command over `entries`, most first, without the ones under
    MIN_COMMAND_US (the bench's own INFO between readings, a stray PING)."""
    if not entries:
        return {}
    spent = {command: round(total / entries, 2) for command, total in usec.items()}
    return {
        command: us
        for command, us in sorted(spent.items(), key=lambda item: -item[1])
        if us >= MIN_COMMAND_US
    }


def throughput(measurements: Iterable[Measurement]) -> dict[tuple[str, str], float]:
    """Requests per second by (scenario, server)."""
    return {(m.scenario, m.server): m.requests_per_s for m in measurements}


def rank_servers(
    measurements: Sequence[Measurement], servers: Sequence[str], app: str = "baseline"
) -> tuple[dict[str, float], str | None]:
    """Each server's speed relative to the first (geometric mean over `app`'s scenarios), and
    the fastest; None when fewer than two servers ran the same scenarios."""
    rates = throughput(measurements)
    scenarios = sorted({m.scenario for m in measurements if m.app == app})
    common = [s for s in scenarios if all(rates.get((s, server), 0) > 0 for server in servers)]
    if len(servers) < 2 or not common:
        return {}, servers[0] if len(servers) == 1 else None
    first = servers[0]
    relative = {
        server: round(
            math.exp(
                statistics.fmean(math.log(rates[s, server] / rates[s, first]) for s in common)
            ),
            3,
        )
        for server in servers
    }
    return relative, max(servers, key=lambda server: relative[server])


def compare(
    measurements: Sequence[Measurement], comparisons: Sequence[Comparison], server: str
) -> list[Ratio]:
    """subject/reference throughput under `server` (or the one server a scenario's app runs
    under) for every comparison both sides ran."""
    found = {(m.scenario, m.server): m for m in measurements}
    ratios = []
    for comparison in comparisons:
        subject = found.get((comparison.subject, server_of(comparison.subject, server)))
        reference = found.get((comparison.reference, server_of(comparison.reference, server)))
        if subject is not None and reference is not None and reference.requests_per_s:
            ratios.append(
                Ratio(
                    comparison.name,
                    server,
                    round(subject.requests_per_s / reference.requests_per_s, 3),
                    comparison.target,
                    _over(subject.cpu_ms, reference.cpu_ms),
                    _over(subject.redis_cpu_ms, reference.redis_cpu_ms),
                )
            )
    return ratios


def entry_rates(
    measurements: Sequence[Measurement], targets: Mapping[str, float], server: str
) -> list[EntryRate]:
    """The entries per second of every scenario with a target that ran under `server`."""
    return [
        EntryRate(m.scenario, m.server, m.entries_per_s, targets[m.scenario])
        for m in measurements
        if m.scenario in targets and m.server == server
    ]


def _over(value: float, reference: float) -> float:
    return round(value / reference, 3) if reference else 0.0


def table(report: Report) -> str:
    """The report as fixed-width text."""
    header = (
        f"{'scenario':<17} {'server':<16} {'req/s':>9} {'entries/s':>10} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'non-2xx':>7} {'409':>5} {'sock err':>8} {'cpu ms/req':>10} "
        f"{'redis ms':>8}"
    )
    lines = [header, "-" * len(header)]
    for m in report.measurements:
        entries = f"{m.entries_per_s:10.0f}" if m.entries_per_s != m.requests_per_s else " " * 10
        lines.append(
            f"{m.scenario:<17} {m.server:<16} {_rate(m.requests_per_s)} {entries} {m.p50_ms:7.2f} "
            f"{m.p99_ms:7.2f} {m.non_2xx:7d} {m.conflicts:5d} {m.socket_errors + m.timeouts:8d} "
            f"{m.cpu_ms:10.3f} {m.redis_cpu_ms:8.3f}"
        )
    if report.server_ratios:
        first = next(iter(report.server_ratios))
        speeds = ", ".join(f"{s} {r:.2f}x" for s, r in report.server_ratios.items())
        lines += ["", f"baseline throughput relative to {first}: {speeds}"]
        lines.append(f"faster server: {report.faster_server}")
    for ratio in report.ratios:
        verdict = "met" if ratio.met else "MISSED"
        target = "no target" if ratio.target is None else f"target >= {ratio.target:.2f}x"
        lines.append(
            f"{ratio.name:<27} under {ratio.server}: {ratio.ratio:.2f}x "
            f"({target}){'' if ratio.target is None else ' ' + verdict}; CPU per request: "
            f"server {ratio.cpu_ratio:.2f}x, Redis {ratio.redis_cpu_ratio:.2f}x"
        )
    for rate in report.entry_rates:
        verdict = "met" if rate.met else "MISSED"
        lines.append(
            f"{rate.scenario + ' entries/s':<27} under {rate.server}: {rate.entries_per_s:,.0f} "
            f"(target >= {rate.target:,.0f}) {verdict}"
        )
    lines += command_lines(report.measurements)
    lines += codec_lines(report.codecs)
    lines += transfer_lines(report.transfers)
    lines += scale_lines(report.scale, report.probes, report.probe_server)
    return "\n".join(lines)


def _rate(requests_per_s: float) -> str:
    """Requests per second in 9 characters, with a decimal for slow ones (a bulk)."""
    return f"{requests_per_s:9.1f}" if requests_per_s < 100 else f"{requests_per_s:9.0f}"


def command_lines(measurements: Sequence[Measurement]) -> list[str]:
    """Where each scenario's Redis time went, by command, µs per entry."""
    shown = [m for m in measurements if m.redis_commands]
    if not shown:
        return []
    lines = [
        "",
        "Redis time by command, µs per entry (INFO commandstats; EXEC's includes the "
        "commands of its MULTI, EVAL's those of its script), then the AOF rewrites the rounds "
        "started and their child's CPU, µs per entry (not in the redis ms column):",
    ]
    for m in shown:
        spent = "  ".join(f"{command} {us:.2f}" for command, us in m.redis_commands.items())
        if m.rewrites:
            spent += f"  | {m.rewrites} AOF rewrites, their CPU {m.rewrite_us:.2f}"
        lines.append(f"  {m.scenario:<17} {m.server:<16} {spent}")
    return lines


def codec_lines(timings: Sequence[CodecTiming]) -> list[str]:
    """The codec micro-benchmark, one line per operation."""
    if not timings:
        return []
    lines = ["", "codecs, in-process, µs per entry (best of the repeats):"]
    for timing in timings:
        verdict = ""
        if timing.target is not None:
            verdict = f" (target <= {timing.target:.1f}x) " + ("met" if timing.met else "MISSED")
        lines.append(
            f"  {timing.operation:<20} JSON {timing.json_us:8.2f}  XML {timing.xml_us:8.2f}  "
            f"XML/JSON {timing.ratio:.1f}x{verdict}"
        )
    return lines


def scale_lines(scale: ScaleData | None, probes: Sequence[Probe], server: str | None) -> list[str]:
    """How the scale data set was seeded, what it weighs, and the one-off requests."""
    if scale is None:
        return []
    rate = scale.big / scale.seconds if scale.seconds else 0.0
    lines = [
        "",
        f"scale: /small {scale.small:,} and /big {scale.big:,} children; /big seeded in "
        f"{scale.seconds:.0f} s from {scale.processes} processes ({rate:,.0f} entries/s)",
        f"scale: Redis used_memory {scale.bytes_per_entry:,.0f} B per /big child (document, "
        f"revision, children and 2 index members); MEMORY USAGE of one fs:d: key "
        f"{scale.document_memory} B for {scale.document_bytes} B of JSON",
    ]
    for probe in probes:
        cursor = "with" if probe.next_page else "WITHOUT"
        count = f", count {probe.title}" if probe.title else ""
        lines.append(
            f"scale: {probe.path} under {server}: {probe.status} in {probe.milliseconds:,.0f} ms "
            f"(median of {PROBE_REPEATS}), {cursor} the next-page headers{count}"
        )
    return lines


def warnings(report: Report) -> list[str]:
    """Signs that a run measured something else than intended."""
    found = []
    limit = report.settings.get("fetch_limit")
    if report.scale is not None and isinstance(limit, int) and report.scale.big > limit:
        found += [
            f"{probe.path} answered {probe.status} (next-page headers: {probe.next_page}), "
            f"where the fetch limit of {limit:,} should stop it with a 206 and a cursor"
            for probe in report.probes
            if probe.status != 206 or not probe.next_page
        ]
    for m in report.measurements:
        failed = m.non_2xx + m.socket_errors + m.timeouts
        if m.requests and failed > m.requests * 0.001:
            found.append(
                f"{m.scenario} under {m.server}: {failed} of {m.requests} requests failed "
                f"({m.conflicts} were 409)"
            )
    return found


def as_json(report: Report) -> dict[str, Any]:
    """The report as plain JSON data, for regenerating README figures."""
    return {
        "settings": report.settings,
        "measurements": [dataclasses.asdict(m) for m in report.measurements],
        "server_ratios": report.server_ratios,
        "faster_server": report.faster_server,
        "ratios": [{**dataclasses.asdict(r), "met": r.met} for r in report.ratios],
        "entry_rates": [{**dataclasses.asdict(r), "met": r.met} for r in report.entry_rates],
        "codecs": [
            {**dataclasses.asdict(c), "ratio": c.ratio, "met": c.met} for c in report.codecs
        ],
        "transfers": [
            {**dataclasses.asdict(t), "entries_per_s": t.entries_per_s, "met": t.met}
            for t in report.transfers
        ],
        "scale": dataclasses.asdict(report.scale) if report.scale else None,
        "probes": [dataclasses.asdict(p) for p in report.probes],
        "probe_server": report.probe_server,
    }


def settings_summary(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in values.items())
