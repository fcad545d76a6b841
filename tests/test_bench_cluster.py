"""The bench's cluster side (feedstore/bench/cluster.py) without wrk: the scenarios, the options,
the load split over N servers and its sum, and N real servers in front of the real cluster."""

from __future__ import annotations

from pathlib import Path

from feedstore.bench import cluster, report, runner, scenarios, servers, wrk
from feedstore.bench.load import ConnectionPlan, Load, RequestTemplate
from feedstore.bench.scenarios import Target
from tests.redis_cluster import RedisCluster


def test_cluster_scenarios_run_by_default_against_their_single_node_twins() -> None:
    chosen = {scenario.name for scenario in runner.parse_options([]).scenarios}
    assert {"cluster-get", "cluster-put"} <= chosen
    assert not {s.name for s in runner.parse_options(["--no-cluster"]).scenarios} & {
        "cluster-get",
        "cluster-put",
    }
    targets = {c.name: (c.subject, c.reference, c.target) for c in scenarios.COMPARISONS}
    assert targets["cluster/single GET"] == ("cluster-get", "feedstore-get", 0.9)
    assert targets["cluster/single PUT"] == ("cluster-put", "feedstore-put", 0.8)
    assert runner.parse_options(["--cluster-servers", "3"]).cluster_servers == 3


def test_a_write_load_is_dealt_out_one_key_per_connection() -> None:
    plans = tuple(ConnectionPlan(RequestTemplate("PUT", f"/d/{n}"), n) for n in range(16))
    parts = cluster.split(Load(plans, 16, 16), 3)
    assert [len(part.plans) for part in parts] == [6, 5, 5]
    assert all(part.threads == part.connections == len(part.plans) for part in parts)
    assert sorted(plan.revision for part in parts for plan in part.plans) == list(range(16))


def test_a_read_load_divides_its_threads_and_connections() -> None:
    read = Load((ConnectionPlan(RequestTemplate("GET", "/d/x?e")),), 2, 16)
    assert [(part.threads, part.connections) for part in cluster.split(read, 4)] == [(1, 4)] * 4


def test_simultaneous_runs_add_up_with_latency_weighted_by_requests() -> None:
    first = wrk.WrkResult(300, 1.0, 290, 8, 2, 1, 0, 0, 1.0, 5.0, 2.0)
    second = wrk.WrkResult(100, 1.1, 100, 0, 0, 0, 1, 1, 3.0, 4.0, 6.0)
    both = cluster.combine([first, second])
    assert (both.requests, both.ok, both.conflicts, both.failed) == (400, 390, 8, 2)
    assert (both.resyncs, both.socket_errors, both.timeouts, both.seconds) == (1, 1, 1, 1.1)
    assert (both.p50_ms, both.p99_ms, both.mean_ms) == (1.5, 5.0, 3.0)
    scenario = next(s for s in scenarios.SCENARIOS if s.name == "cluster-get")
    assert report.measure(scenario, "granian", [both], 1).requests_per_s > 0


def test_the_cluster_scenarios_prepare_against_two_real_servers_on_the_cluster(
    redis_cluster: RedisCluster, tmp_path: Path
) -> None:
    redis_cluster.flush()
    assert sorted(cluster.redis_pids(redis_cluster)) == sorted(redis_cluster.pids) != []
    settings = servers.ServerSettings(workers=1, threads=2)
    app = scenarios.FEEDSTORE_CLUSTER
    few = scenarios.Concurrency(4, 2, writers=4)
    with cluster.running_group(app, "granian", settings, redis_cluster.url, tmp_path, 2) as group:
        assert len({member.port for member in group.members}) == 2
        for scenario in [s for s in scenarios.SCENARIOS if s.cluster]:
            load = scenarios.check(group.port, scenario.prepare(Target(group.port, few)))
            # Each server takes its share, and accepts what wrk would send it first.
            for member, part in zip(group.members, cluster.split(load, 2), strict=True):
                for plan in part.plans:
                    request = plan.request.render(plan.revision)
                    sent = servers.client.send(
                        member.port, request.method, request.path, request.body, request.headers
                    )
                    assert sent.status == 200, (scenario.name, sent.body)
        assert group.cpu_seconds() > 0
