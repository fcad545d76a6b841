"""The cluster side of a bench run: a local Redis Cluster, and N servers in front of it.

The cluster scenarios (scenarios.py, app FEEDSTORE_CLUSTER) run in the same run as the
single-node ones, with the same servers, workers, threads and wrk load, against a
cluster_launcher.LocalCluster of 3 primaries whose nodes keep an AOF fsynced every second, as the
single-node Redis does. `--cluster-servers N` serves the cluster app from N `feedstore serve`
processes (each with the run's --workers) and splits the load over them, one wrk per server at
the same time, summed: N servers x W workers is how the scaling curve is taken on a bigger
machine (README, "Running on Redis Cluster").
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from feedstore.bench import servers, wrk
from feedstore.bench.load import Load
from feedstore.bench.servers import App, RunningServer, ServerSettings
from feedstore.cluster_launcher import LocalCluster
from feedstore.embedded import EmbeddedRedis

# The name apps give (App.redis) to be served on the run's cluster.
REDIS = "cluster"
PRIMARIES = 3


def start(work: Path, stack: contextlib.ExitStack, primaries: int = PRIMARIES) -> LocalCluster:
    """Start the run's cluster in `work`; `stack` stops it at the end of the run."""
    return stack.enter_context(LocalCluster(work / "cluster", primaries, appendonly=True))


def redis_urls(redis: EmbeddedRedis | LocalCluster) -> list[str]:
    """The redis-server processes a scenario's writes land on, by URL."""
    if isinstance(redis, LocalCluster):
        return [node.url for node in redis.nodes]
    return [redis.url]


def redis_pids(redis: EmbeddedRedis | LocalCluster) -> list[int]:
    """The redis-server processes a scenario's Redis CPU time is read from."""
    if isinstance(redis, LocalCluster):
        return redis.pids
    return [redis.pid] if redis.pid is not None else []


@dataclass(frozen=True)
class ServerGroup:
    """N servers of one app on one Redis, measured as one: requests and CPU time add up."""

    members: tuple[RunningServer, ...]

    @property
    def app(self) -> App:
        return self.members[0].app

    @property
    def server(self) -> str:
        return self.members[0].server

    @property
    def port(self) -> int:
        """Where scenarios seed their data (any member: they share the Redis)."""
        return self.members[0].port

    @property
    def url(self) -> str:
        return self.members[0].url

    def cpu_seconds(self) -> float:
        return sum(member.cpu_seconds() for member in self.members)


@contextlib.contextmanager
def running_group(
    app: App, server: str, settings: ServerSettings, redis_url: str, log_dir: Path, count: int
) -> Iterator[ServerGroup]:
    """Start `count` servers of `app`, each with `settings`; stop all of them on the way out."""
    with contextlib.ExitStack() as stack:
        members = []
        for number in range(count):
            logs = log_dir / f"{app.name}-{number + 1}"
            logs.mkdir(parents=True, exist_ok=True)
            members.append(
                stack.enter_context(servers.running(app, server, settings, redis_url, logs))
            )
        yield ServerGroup(tuple(members))


def run_wrk(
    load: Load, target: RunningServer | ServerGroup, seconds: int, work_dir: Path
) -> wrk.WrkResult:
    """Run `load` against one server, or split over a group's servers at once, and sum."""
    if not isinstance(target, ServerGroup):
        return wrk.run(load, target.url, seconds, work_dir)
    parts = split(load, len(target.members))
    results: list[wrk.WrkResult | BaseException] = [RuntimeError("wrk did not run")] * len(parts)

    def run_one(number: int) -> None:
        directory = work_dir / f"wrk-{number + 1}"
        directory.mkdir(exist_ok=True)
        try:
            results[number] = wrk.run(parts[number], target.members[number].url, seconds, directory)
        except BaseException as e:  # reraised below, in the caller's thread
            results[number] = e

    threads = [threading.Thread(target=run_one, args=(n,)) for n in range(len(parts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return combine([result for result in results if isinstance(result, wrk.WrkResult)])


def split(load: Load, count: int) -> list[Load]:
    """`load` cut into `count` loads of about equal connections, one per server.

    Writers keep one key per connection, so the plans are dealt out (server i gets plans i,
    i + count, ...); a read load has one plan, and its threads and connections are divided."""
    if len(load.plans) >= count:
        parts = [load.plans[number::count] for number in range(count)]
        return [
            replace(load, plans=plans, threads=len(plans), connections=len(plans))
            for plans in parts
        ]
    threads = max(1, load.threads // count)
    connections = max(threads, load.connections // count)
    return [replace(load, threads=threads, connections=connections)] * count


def combine(results: Sequence[wrk.WrkResult]) -> wrk.WrkResult:
    """Simultaneous runs as one: counts add up over the longest duration; the p50 and mean are
    weighted by requests, the p99 is the worst one (an upper bound)."""
    requests = sum(result.requests for result in results)

    def weighted(values: list[float]) -> float:
        if requests == 0:
            return max(values)
        return sum(v * r.requests for v, r in zip(values, results, strict=True)) / requests

    return wrk.WrkResult(
        requests=requests,
        seconds=max(result.seconds for result in results),
        ok=sum(result.ok for result in results),
        conflicts=sum(result.conflicts for result in results),
        failed=sum(result.failed for result in results),
        resyncs=sum(result.resyncs for result in results),
        socket_errors=sum(result.socket_errors for result in results),
        timeouts=sum(result.timeouts for result in results),
        p50_ms=weighted([result.p50_ms for result in results]),
        p99_ms=max(result.p99_ms for result in results),
        mean_ms=weighted([result.mean_ms for result in results]),
    )
