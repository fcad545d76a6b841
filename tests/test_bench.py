"""The bench's pieces without wrk: Lua text, wrk's summary, the arithmetic, the apps and servers."""

from __future__ import annotations

import statistics
from pathlib import Path

import fakeredis
import pytest

from feedstore.bench import baseline, client, lua, report, runner, scenarios, servers, wrk
from feedstore.bench.load import REVISION, ConnectionPlan, Load, RequestTemplate
from feedstore.embedded import EmbeddedRedis

# stdout of `wrk -t2 -c2 -d1s -s <lua.script(baseline-put)>`, captured on the dev machine.
WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:42739
  2 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.87ms    1.09ms   9.67ms   84.99%
    Req/Sec   545.29    200.43     0.96k    71.43%
  1140 requests in 1.10s, 202.41KB read
Requests/sec:   1036.46
Transfer/sec:    184.03KB
FEEDSTORE_BENCH {"requests":1140,"duration_us":1099902,"ok":1130,"conflicts":3,"failed":2,\
"resyncs":5,"socket_errors":0,"timeouts":0,"p50_us":1410.0,"p99_us":5554.0,"mean_us":1870.8,\
"max_us":9669.0}
"""


def result(requests: int, p50: float, p99: float, seconds: float = 1.0) -> wrk.WrkResult:
    return wrk.WrkResult(requests, seconds, requests, 0, 0, 0, 0, 0, p50, p99, p50)


def measurement(scenario: str, server: str, rate: float, cpu: float = 1.0) -> report.Measurement:
    """`rate` requests in one second, using `cpu` seconds of server CPU."""
    found = next(s for s in scenarios.SCENARIOS if s.name == scenario)
    return report.measure(found, server, [result(int(rate), 1.0, 2.0)], 1, cpu_seconds=cpu)


def test_lua_literal_escapes_quotes_backslashes_controls_and_utf8() -> None:
    assert lua.literal('a"b\\c\n') == '"a\\034b\\092c\\010"'
    assert lua.literal("é") == '"\\195\\169"'
    assert lua.literal(b"\x00ok") == '"\\000ok"'


def test_template_renders_the_revision_into_path_and_body() -> None:
    template = RequestTemplate(
        "PUT", f"/b/k?r={REVISION}", body=f'{{"id":"/k,{REVISION}"}}'.encode()
    )
    assert template.has_revision
    assert template.render(7) == ("/b/k?r=7", b'{"id":"/k,7"}')
    assert RequestTemplate("GET", "/d/k?e").render(None) == ("/d/k?e", b"")


def test_script_bakes_in_each_plan_cut_at_the_revision() -> None:
    request = RequestTemplate("PUT", f"/b/w1?r={REVISION}", {"X-Requested-With": "x"}, b"{}")
    plan = ConnectionPlan(request, revision=3, resync=RequestTemplate("GET", "/b/w1"))
    text = lua.script(Load((plan,), threads=1, connections=1))
    assert 'path = {"/b/w1?r=", ""}' in text
    assert 'revision = "3"' in text
    assert 'resync = {method = "GET", path = {"/b/w1"}' in text
    assert '["X-Requested-With"] = "x"' in text
    for function in ("setup(thread)", "init(args)", "request()", "response(", "done("):
        assert f"function {function}" in text


def test_parse_output_reads_the_summary_line() -> None:
    parsed = wrk.parse_output(WRK_OUTPUT)
    assert parsed.requests == 1140
    assert parsed.measured == 1135  # the resync reads are not the scenario's requests
    assert parsed.non_2xx == 5
    assert parsed.conflicts == 3
    assert parsed.seconds == pytest.approx(1.099902)
    assert (parsed.p50_ms, parsed.p99_ms) == (pytest.approx(1.41), pytest.approx(5.554))


@pytest.mark.parametrize(
    "output", ["Running 1s test\n", lua.SUMMARY_MARKER + "{not json}\n", lua.SUMMARY_MARKER + "{}"]
)
def test_parse_output_without_a_good_summary_is_an_error(output: str) -> None:
    with pytest.raises(wrk.WrkError):
        wrk.parse_output(output)


def test_measure_sums_throughput_and_bounds_latency_over_rounds() -> None:
    scenario = scenarios.SCENARIOS[-1]
    rounds = [result(100, 1.0, 5.0), result(300, 3.0, 9.0), result(200, 2.0, 7.0)]
    combined = report.measure(scenario, "granian", rounds, entries_per_request=100)
    assert combined.requests_per_s == 200.0
    assert combined.entries_per_s == 20_000.0
    assert combined.p50_ms == statistics.median([1.0, 3.0, 2.0])
    assert combined.p99_ms == 9.0
    assert report.measure(scenario, "granian", rounds, 1, cpu_seconds=1.2).cpu_ms == 2.0


def test_faster_server_and_ratios_under_it() -> None:
    measurements = [
        measurement("baseline-get", "granian", 2000),
        measurement("baseline-put", "granian", 1000),
        measurement("baseline-get", "gunicorn", 1000),
        measurement("baseline-put", "gunicorn", 500),
        measurement("feedstore-get", "granian", 1800, cpu=1.8),
        measurement("feedstore-put", "granian", 600, cpu=1.2),
    ]
    relative, faster = report.rank_servers(measurements, ["gunicorn", "granian"])
    assert faster == "granian"
    assert relative == {"gunicorn": 1.0, "granian": 2.0}
    ratios = report.compare(measurements, scenarios.COMPARISONS, "granian")
    assert [(r.operation, r.ratio, r.met, r.cpu_ratio) for r in ratios] == [
        ("GET", 0.9, True, 2.0),  # 1 ms per request over the baseline's 0.5 ms
        ("PUT", 0.6, False, 2.0),
    ]
    shown = report.table(report.Report(measurements, relative, faster, ratios, {}))
    assert "faster server: granian" in shown
    assert "0.60x (target >= 0.70x) MISSED" in shown


@pytest.mark.parametrize(("text", "seconds"), [("10", 10), ("10s", 10), ("2m", 120)])
def test_durations_are_whole_seconds(text: str, seconds: int) -> None:
    assert runner.parse_duration(text) == seconds


def test_quick_options_and_unknown_servers() -> None:
    options = runner.parse_options(["--quick", "--scenario", "feedstore-get"])
    assert (options.seconds, options.rounds, options.warmup) == (1, 1, 0)
    assert [s.name for s in options.scenarios] == ["feedstore-get"]
    with pytest.raises(runner.BenchError):
        runner.parse_options(["--servers", "apache"])


def test_baseline_app_bumps_the_revision_and_refuses_a_stale_one() -> None:
    web = baseline.create_app(fakeredis.FakeRedis()).test_client()
    assert web.put("/b/k", data=b"one").headers["ETag"] == '"1"'
    assert web.put("/b/k?r=1", data=b"two").headers["ETag"] == '"2"'
    assert web.put("/b/k?r=1", data=b"three").status_code == 409
    answer = web.get("/b/k")
    assert (answer.status_code, answer.data) == (200, b"two")
    assert web.get("/b/missing").status_code == 204


def test_every_scenario_prepares_against_real_servers_which_then_stop(tmp_path: Path) -> None:
    settings = servers.ServerSettings(workers=1, threads=2)
    few = scenarios.Concurrency(connections=2, reader_threads=1, writers=2)
    groups = []
    with EmbeddedRedis(tmp_path / "redis", persistent=False) as redis:
        for app, server in [(scenarios.BASELINE, "gunicorn"), (scenarios.FEEDSTORE, "granian")]:
            with servers.running(app, server, settings, redis.url, tmp_path) as running:
                groups.append(running.process.pid)
                for scenario in [s for s in scenarios.SCENARIOS if s.app == app]:
                    load = scenarios.check(running.port, scenario.prepare(running.port, few))
                    for plan in load.plans:
                        if plan.revision is None:
                            continue
                        # What wrk sends next is accepted; one revision behind is a conflict.
                        for revision, status in [(plan.revision, 200), (plan.revision, 409)]:
                            path, body = plan.request.render(revision)
                            sent = client.send(
                                running.port, "PUT", path, body, plan.request.headers
                            )
                            assert sent.status == status, (scenario.name, sent.body)
                assert running.cpu_seconds() > 0
    assert all(servers.group_members(group) == [] for group in groups)
