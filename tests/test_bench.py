"""The bench's pieces without wrk: Lua text, wrk's summary, the arithmetic, the apps and servers,
the scale data set, the codec micro-benchmark and the `feedstore bench` command."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

from feedstore import cli, watch
from feedstore.app import create_app
from feedstore.bench import (
    baseline,
    client,
    codecs,
    lua,
    report,
    runner,
    scale,
    scenarios,
    servers,
    wrk,
)
from feedstore.bench.load import REVISION, ConnectionPlan, Load, RequestTemplate
from feedstore.bench.scenarios import Target
from feedstore.embedded import EmbeddedRedis
from feedstore.keys import KeyScheme

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
    rendered = template.render(7)
    assert (rendered.path, rendered.body) == ("/b/k?r=7", b'{"id":"/k,7"}')
    assert RequestTemplate("GET", "/d/k?e").render(None).path == "/d/k?e"


def test_template_renders_the_revision_into_a_header() -> None:
    template = RequestTemplate("PATCH", "/d/k", {"If-Match": f'"{REVISION}"', "X-A": "b"})
    assert template.has_revision
    assert template.render(4).headers == {"If-Match": '"4"', "X-A": "b"}


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
    assert "revision_in_headers" not in text.split("plans[1] = ", 1)[1].split("\n")[0]


def test_script_gives_each_plan_its_own_function() -> None:
    # LuaJIT takes at most 65,536 constants per function; a bulk's body alone is 10,001 pieces.
    body = "".join(f'{{"id":"/k{n},{REVISION}"}}' for n in range(3)).encode()
    plans = [ConnectionPlan(RequestTemplate("PUT", "/d/", body=body), revision=1)] * 2
    text = lua.script(Load(tuple(plans), threads=2, connections=2))
    assert "plans = {}\nplans[1] = (function() return {" in text
    assert "\nplans[2] = (function() return {" in text
    # Each body is 4 pieces, cut at its 3 revisions.
    assert text.count('body = {"{\\034id\\034:\\034/k0,", "\\034}{\\034id') == 2


def test_script_cuts_a_header_at_the_revision() -> None:
    request = RequestTemplate("PATCH", "/d/k", {"If-Match": f'"{REVISION}"'}, b"{}")
    text = lua.script(Load((ConnectionPlan(request, revision=1),), threads=1, connections=1))
    assert '["If-Match"] = {"\\034", "\\034"}' in text
    assert "revision_in_headers = true" in text


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
        measurement("plain-put", "granian", 850, cpu=1.2),
    ]
    relative, faster = report.rank_servers(measurements, ["gunicorn", "granian"])
    assert faster == "granian"
    assert relative == {"gunicorn": 1.0, "granian": 2.0}
    ratios = report.compare(measurements, scenarios.COMPARISONS, "granian")
    assert [(r.name, r.ratio, r.met, r.cpu_ratio) for r in ratios] == [
        ("feedstore/baseline GET", 0.9, True, 2.0),  # 1 ms per request over the baseline's 0.5
        ("plain/baseline PUT", 0.85, True, 1.412),  # the change feed off: issue 11's 0.8x
        ("feedstore/baseline PUT", 0.6, False, 2.0),  # the change feed on: its design's 0.7x
    ]
    shown = report.table(report.Report(measurements, relative, faster, ratios, {}))
    assert "faster server: granian" in shown
    assert "0.60x (target >= 0.70x) MISSED" in shown
    assert "0.85x (target >= 0.80x) met" in shown


def test_many_entries_ratios_and_the_entry_rate_target() -> None:
    measurements = [
        report.measure(_scenario("baseline-bulk10k"), "granian", [result(2, 1.0, 2.0)], 10_000),
        report.measure(_scenario("feedstore-bulk10k"), "granian", [result(1, 1.0, 2.0)], 10_000),
    ]
    ratios = report.compare(measurements, scenarios.COMPARISONS, "granian")
    assert [(r.name, r.ratio, r.target, r.met) for r in ratios] == [
        ("feedstore/baseline BULK", 0.5, 0.6, False)
    ]
    rates = report.entry_rates(measurements, scenarios.ENTRY_RATE_TARGETS, "granian")
    assert [(r.scenario, r.entries_per_s, r.target, r.met) for r in rates] == [
        ("feedstore-bulk10k", 10_000.0, 20_000, False)
    ]
    shown = report.table(report.Report(measurements, {}, "granian", ratios, {}, entry_rates=rates))
    assert "feedstore-bulk10k entries/s" in shown and "(target >= 20,000) MISSED" in shown
    assert not report.Report(measurements, {}, "granian", [], {}, entry_rates=rates).met


def test_the_gateway_row_compares_across_servers_without_a_target() -> None:
    measurements = [
        measurement("baseline-put", "granian", 800, cpu=1.0),
        measurement("baseline-put-wsgi", "granian-wsgi", 1000, cpu=1.0),
    ]
    (ratio,) = report.compare(measurements, scenarios.COMPARISONS, "granian")
    assert (ratio.name, ratio.ratio, ratio.target, ratio.met) == (
        "gateway/WSGI, baseline PUT",
        0.8,
        None,
        True,
    )
    assert ratio.cpu_ratio == 1.25
    assert "0.80x (no target); CPU" in report.table(
        report.Report(measurements, {}, "granian", [ratio], {})
    )


def test_long_requests_are_counted_by_their_latency() -> None:
    # 4 connections, 2 s per request: 2 requests/s, though wrk saw only 5 end in its 5 s.
    rounds = [wrk.WrkResult(5, 5.0, 5, 0, 0, 0, 0, 0, 2000.0, 2100.0, 2000.0)]
    found = report.measure(_scenario("feedstore-bulk10k"), "granian", rounds, 10_000, 20.0, 0.0, 4)
    assert (found.requests_per_s, found.entries_per_s, found.requests) == (2.0, 20_000.0, 10)
    assert found.cpu_ms == 2000.0  # 20 CPU seconds over the 10 requests of the 5 s


def test_redis_time_by_command_is_per_entry_most_first_without_the_crumbs() -> None:
    # 2 requests of 10,000 entries in the round: 20,000 entries.
    spent = {"watch": 160_000, "exec": 200_000, "mset": 36_000, "info": 90}
    found = report.measure(
        _scenario("feedstore-bulk10k"), "granian", [result(2, 1.0, 2.0)], 10_000, redis_usec=spent
    )
    assert found.redis_commands == {"exec": 10.0, "watch": 8.0, "mset": 1.8}
    shown = report.table(report.Report([found], {}, "granian", [], {}))
    assert "Redis time by command, µs per entry" in shown
    assert "feedstore-bulk10k granian          exec 10.00  watch 8.00  mset 1.80" in shown
    without = report.measure(_scenario("feedstore-bulk10k"), "granian", [result(2, 1.0, 2.0)], 1)
    assert without.redis_commands == {}
    assert "Redis time by command" not in report.table(
        report.Report([without], {}, "granian", [], {})
    )


def test_redis_time_by_command_is_read_from_a_real_redis(
    real_redis: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    before = servers.command_usec([redis_server.url])
    keys = [f"spent:{n}" for n in range(200)]
    for _ in range(5):
        with real_redis.pipeline(transaction=True) as pipe:
            pipe.watch(*keys)
            pipe.multi()
            pipe.mset(dict.fromkeys(keys, b"x"))
            pipe.execute()
    after = servers.command_usec([redis_server.url])
    grew = {command for command, usec in after.items() if usec > before.get(command, 0)}
    assert {"watch", "mset", "exec"} <= grew
    # EXEC's time includes the MSETs it ran.
    assert after["exec"] - before.get("exec", 0) >= after["mset"] - before.get("mset", 0)


def test_aof_rewrites_are_shown_with_their_cpu_per_entry() -> None:
    def bulk(**rewrites: tuple[int, float]) -> report.Measurement:
        # 2 requests of 10,000 entries.
        return report.measure(
            _scenario("feedstore-bulk10k"),
            "granian",
            [result(2, 1.0, 2.0)],
            10_000,
            redis_usec={"exec": 200_000},
            **rewrites,
        )

    # 3 rewrites taking 0.5 s of CPU: 25 µs per entry.
    found = bulk(rewrites=(3, 0.5))
    assert (found.rewrites, found.rewrite_us) == (3, 25.0)
    shown = report.table(report.Report([found], {}, "granian", [], {}))
    line = "feedstore-bulk10k granian          exec 10.00  | 3 AOF rewrites, their CPU 25.00"
    assert line in shown
    quiet = bulk()
    assert "AOF rewrites," not in report.table(report.Report([quiet], {}, "granian", [], {}))


def test_rewrite_work_counts_a_real_rewrite(
    real_redis: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    forks, seconds = servers.rewrite_work([redis_server.url])
    real_redis.bgrewriteaof()
    servers.wait_for_quiet_redis([redis_server.url])
    after_forks, after_seconds = servers.rewrite_work([redis_server.url])
    assert after_forks == forks + 1
    assert after_seconds >= seconds


def _scenario(name: str) -> scenarios.Scenario:
    return next(s for s in scenarios.SCENARIOS if s.name == name)


@pytest.mark.parametrize(("text", "seconds"), [("10", 10), ("10s", 10), ("2m", 120)])
def test_durations_are_whole_seconds(text: str, seconds: int) -> None:
    assert runner.parse_duration(text) == seconds


def test_ratios_of_two_feedstore_scenarios_under_one_server() -> None:
    measurements = [
        measurement("feedstore-put", "granian", 1000, cpu=1.0),
        measurement("feedstore-patch", "granian", 800, cpu=1.2),
        measurement("scale-small-g3", "granian", 1000),
        measurement("scale-big-g3", "granian", 600),
    ]
    ratios = {r.name: r for r in report.compare(measurements, scenarios.COMPARISONS, "granian")}
    assert (ratios["PATCH/PUT"].ratio, ratios["PATCH/PUT"].met) == (0.8, False)
    assert ratios["PATCH/PUT"].cpu_ratio == 1.5  # 1.5 ms per request over 1 ms
    assert (ratios["big/small group=g3"].ratio, ratios["big/small group=g3"].met) == (0.6, False)


def test_quick_options_and_unknown_servers() -> None:
    options = runner.parse_options(["--quick", "--scenario", "feedstore-get"])
    assert (options.seconds, options.rounds, options.warmup) == (1, 1, 0)
    assert [s.name for s in options.scenarios] == ["feedstore-get"]
    with pytest.raises(runner.BenchError):
        runner.parse_options(["--servers", "apache"])


def test_scale_scenarios_run_by_default_and_no_scale_drops_them() -> None:
    default = runner.parse_options([])
    assert {"scale-big-page", "feedstore-patch", "feedstore-put-xml"} <= {
        s.name for s in default.scenarios
    }
    assert default.scale_children == 1_000_000
    quick = runner.parse_options(["--no-scale", "--scale", "50"])
    assert not any(s.scale for s in quick.scenarios)
    assert runner.parse_options(["--scale", "50"]).scale_children == 50
    with pytest.raises(runner.BenchError):
        runner.parse_options(["--no-scale", "--scenario", "scale-big-g3"])


def test_feedstore_bench_passes_its_arguments_to_the_bench(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["bench", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage: feedstore bench")
    assert "--no-scale" in shown and "--scenario NAME" in shown


def test_codec_micro_benchmark_times_both_formats() -> None:
    timings = codecs.measure(3, repeat=1, min_seconds=0.0001)
    assert [t.operation for t in timings] == [
        "encode (dumps)",
        "encode stored (GET)",
        "decode (loads)",
    ]
    assert all(t.json_us > 0 and t.xml_us > 0 for t in timings)
    assert timings[0].target == codecs.ENCODING_TARGET
    assert timings[0].met == (timings[0].ratio <= 2.0)
    shown = report.codec_lines(timings)
    assert "XML/JSON" in shown[2] and "target <= 2.0x" in shown[2]


def test_stored_entries_are_what_a_get_serves() -> None:
    (first,) = codecs.stored_entries(1)
    assert first["id"] == "/bench/c000,1"
    assert {"published", "updated", "author", "userinfo"} <= set(first)


def test_baseline_app_bumps_the_revision_and_refuses_a_stale_one() -> None:
    web = baseline.create_app(fakeredis.FakeRedis()).test_client()
    assert web.put("/b/k", data=b"one").headers["ETag"] == '"1"'
    assert web.put("/b/k?r=1", data=b"two").headers["ETag"] == '"2"'
    assert web.put("/b/k?r=1", data=b"three").status_code == 409
    answer = web.get("/b/k")
    assert (answer.status_code, answer.data) == (200, b"two")
    assert web.get("/b/missing").status_code == 204


def test_baseline_feed_put_checks_every_revision_and_writes_all_or_none() -> None:
    connection = _fake_redis()
    web = baseline.create_app(connection).test_client()
    keys = [f"/bench/b1-{n:03d}" for n in range(3)]
    assert web.put("/b/", data=scenarios.feed_body(*map(scenarios.entry, keys))).status_code == 200
    assert web.get(f"/b/_revision?k={keys[0]}").headers["ETag"] == '"1"'
    stale = [scenarios.entry(key, "1") for key in keys[:2]] + [scenarios.entry(keys[2], "2")]
    assert web.put("/b/", data=scenarios.feed_body(*stale)).status_code == 409
    assert connection.mget([f"b:r:{key}" for key in keys]) == [b"1", b"1", b"1"]
    current = [scenarios.entry(key, "1") for key in keys]
    assert web.put("/b/?_bulk", data=scenarios.feed_body(*current)).status_code == 200
    assert connection.mget([f"b:r:{key}" for key in keys]) == [b"2", b"2", b"2"]
    assert connection.zrange("b:c:/bench", 0, -1) == [key.encode() for key in keys]


@pytest.mark.parametrize("path", ["/", "/?_bulk"])
def test_the_baseline_issues_the_redis_commands_of_feedstores_put(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "/?_bulk":
        monkeypatch.setenv("FEEDSTORE_MAX_ENTRIES", "2")  # a bulk of 5 is 3 chunks
    sent: list[tuple[str, int]] = []
    execute = redis.client.Pipeline.execute_command

    def recording(pipe: redis.client.Pipeline, *args: object, **options: object) -> object:
        sent.append((str(args[0]).upper(), len(args)))
        return execute(pipe, *args, **options)

    monkeypatch.setattr(redis.client.Pipeline, "execute_command", recording)
    watch_and_read = watch.watch_and_read

    def recording_both(pipe: Any, watched: Sequence[str], *command: Any, **options: Any) -> Any:
        assert options.get("first") is None, "no Idempotency-Key, no lease"
        sent.extend([("WATCH", 1 + len(watched)), (str(command[0]).upper(), len(command))])
        return watch_and_read(pipe, watched, *command, **options)

    monkeypatch.setattr(watch, "watch_and_read", recording_both)
    keys = [f"/bench/b1-{n:03d}" for n in range(5)]
    seeded = scenarios.feed_body(*map(scenarios.entry, keys))
    updated = scenarios.feed_body(*(scenarios.entry(key, "1") for key in keys))
    commands = {}
    for web, prefix in [
        # The change feed on, as by default: its script of XADDs is one of the commands.
        (create_app({"changes": "on"}, redis_client=_fake_redis()).test_client(), "/d"),
        (baseline.create_app(_fake_redis()).test_client(), "/b"),
    ]:
        web.post("/d/", json={"link": [{"___href": "/bench", "___rel": "self"}]})
        headers = {"X-Requested-With": "XMLHttpRequest"}
        assert web.put(f"{prefix}{path}", data=seeded, headers=headers).status_code == 200
        sent.clear()
        assert web.put(f"{prefix}{path}", data=updated, headers=headers).status_code == 200
        commands[prefix] = sorted(sent)  # a bulk's chunks run concurrently
    assert commands["/d"] == commands["/b"]
    # A document and a revision per entry, per chunk; an event per entry, on two streams.
    chunk = 2 if path == "/?_bulk" else 5
    assert ("MSET", 1 + 2 * 2 * chunk) in commands["/b"]
    assert ("EVAL", 3 + 2 + 2 + 4 * chunk) in commands["/b"]


def test_the_baseline_records_the_change_feeds_events_only_when_feedstores_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = [f"/bench/b1-{n:03d}" for n in range(3)]
    created = [{b"k": key.encode(), b"r": b"1", b"o": b"c", b"p": b"anonymous"} for key in keys]
    for setting, expected in [("on", created), ("off", [])]:
        monkeypatch.setenv("FEEDSTORE_CHANGES", setting)
        connection = _fake_redis()
        web = baseline.create_app(connection).test_client()
        body = scenarios.feed_body(*map(scenarios.entry, keys))
        assert web.put("/b/", data=body).status_code == 200
        for stream in [baseline.WHOLE_STREAM, "b:x:/bench"]:
            assert [fields for _, fields in connection.xrange(stream)] == expected


def _fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def test_every_scenario_prepares_against_real_servers_which_then_stop(tmp_path: Path) -> None:
    settings = servers.ServerSettings(workers=1, threads=2)
    # Two bulk chunks of 1000 entries, to keep the test short.
    few = scenarios.Concurrency(2, 1, writers=2, bulk_writers=1, bulk_entries=1200)
    groups, workers = [], []
    served = [
        (scenarios.BASELINE, "gunicorn"),
        (scenarios.BASELINE_WSGI, "granian-wsgi"),
        (scenarios.FEEDSTORE, "granian"),
        (scenarios.FEEDSTORE_AUTH, "granian"),
    ]
    with EmbeddedRedis(tmp_path / "redis", persistent=False) as embedded:
        for app, server in served:
            with servers.running(app, server, settings, embedded.url, tmp_path) as running:
                groups.append(running.process.pid)
                workers += servers.descendants(running.process.pid)
                for scenario in [s for s in scenarios.SCENARIOS if s.app == app]:
                    load = scenarios.check(
                        running.port,
                        scenario.prepare(Target(running.port, few, redis_url=embedded.url)),
                    )
                    for plan in load.plans:
                        if plan.revision is None:
                            continue
                        # What wrk sends next is accepted; one revision behind is refused.
                        stale = 412 if "If-Match" in plan.request.headers else 409
                        if "Idempotency-Key" in plan.request.headers:
                            stale = 200  # the same key and request: the first answer, replayed
                        for revision, status in [(plan.revision, 200), (plan.revision, stale)]:
                            request = plan.request.render(revision)
                            sent = client.send(
                                running.port,
                                request.method,
                                request.path,
                                request.body,
                                request.headers,
                            )
                            assert sent.status == status, (scenario.name, sent.body)
                assert running.cpu_seconds() > 0
    assert all(servers.group_members(group) == [] for group in groups)
    # serve's workers have process groups of their own, and are stopped all the same.
    assert workers and not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_serve_is_how_the_bench_serves_every_app() -> None:
    app, settings = scenarios.BASELINE, servers.ServerSettings(workers=2, threads=5)
    argv = servers.SERVERS["gunicorn"](app, 8000, settings, "redis://r")
    assert argv[1:4] == ["-m", "feedstore.bench.serve", app.factory]
    assert cli.build_parser().parse_args(["serve", *argv[4:]]).server == "gunicorn"
    assert "--redis-url" in argv and "--threads" in argv
    assert runner.parse_options([]).settings.threads == cli.default_threads()
    assert runner.servers_of(scenarios.BASELINE_WSGI, ("granian", "gunicorn")) == ("granian-wsgi",)


def test_scale_data_set_is_seeded_indexed_and_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Below the 50 children of /big, so the unindexed filter stops at the fetch limit.
    monkeypatch.setenv("FEEDSTORE_FETCH_LIMIT", "20")
    lines: list[str] = []
    with EmbeddedRedis(tmp_path / "scale", persistent=False) as embedded:
        data = scale.seed(embedded.url, big=50, small=20, processes=2, progress=lines.append)
        assert (data.big, data.small, data.processes) == (50, 20, 2)
        # used_memory moves by more than 50 small entries weigh; one key's usage is exact.
        assert data.document_memory > data.document_bytes > 100
        assert sum("%)" in line for line in lines) == 10  # a line every 10%
        with redis.Redis.from_url(embedded.url) as connection:
            keys = KeyScheme()
            assert connection.zcard(keys.children_key("/big")) == 50
            group, score = keys.index_key("/big", "group"), keys.index_key("/big", "score")
            assert connection.zcard(group) == connection.zcard(score) == 50
        settings = servers.ServerSettings(workers=1, threads=2)
        app = scenarios.FEEDSTORE_SCALE
        with servers.running(app, "granian", settings, embedded.url, tmp_path) as running:
            target = Target(running.port, scenarios.Concurrency(2, 1, 2), data)
            for scenario in [s for s in scenarios.SCENARIOS if s.scale]:
                scenarios.check(running.port, scenario.prepare(target))
            middle = client.send(running.port, "GET", f"/d/big?f&l=1&p={data.middle_cursor}")
            assert b'"/big/25,1"' in middle.body
            page, count = scale.probes(running.port)
    assert (page.status, page.next_page) == (206, True)
    assert (count.status, count.next_page, count.title) == (206, True, "0")


def test_a_scenario_waits_for_the_background_save_the_one_before_started(
    real_redis: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    real_redis.mset({f"quiet:{n}": b"x" for n in range(10)})
    real_redis.config_set("rdb-key-save-delay", 100_000)  # 0.1 s per key written
    try:
        real_redis.bgsave()
        assert real_redis.info("persistence")["rdb_bgsave_in_progress"] == 1
        waited = servers.wait_for_quiet_redis([redis_server.url])
        assert real_redis.info("persistence")["rdb_bgsave_in_progress"] == 0
        assert waited > 0.5
    finally:
        real_redis.config_set("rdb-key-save-delay", 0)


def test_a_scenario_starts_on_a_freshly_rewritten_aof(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path, persistent=True) as server:
        client = redis.Redis.from_url(server.url)
        try:
            client.mset({f"fresh:{n}": b"x" * 100 for n in range(100)})
            for _ in range(20):
                client.mset({f"fresh:{n}": b"y" * 100 for n in range(100)})
            grown = client.info("persistence")["aof_current_size"]
            forks = client.info("stats")["total_forks"]
            servers.rewrite_aofs([server.url])
            after = client.info("persistence")
            assert client.info("stats")["total_forks"] == forks + 1
            assert after["aof_rewrite_in_progress"] == 0
            # The rewrite keeps each key's last value: 100 keys, not 2,100 writes.
            assert after["aof_current_size"] < grown / 5
        finally:
            client.close()


def test_a_redis_without_aof_is_not_rewritten(
    real_redis: redis.Redis, redis_server: EmbeddedRedis
) -> None:
    assert real_redis.info("persistence")["aof_enabled"] == 0
    forks = real_redis.info("stats")["total_forks"]
    servers.rewrite_aofs([redis_server.url])
    assert real_redis.info("stats")["total_forks"] == forks


def test_a_round_runs_each_scenario_next_to_the_ones_compared_with_it() -> None:
    picked = {
        "feedstore-bulk10k", "baseline-bulk10k", "feedstore-put100", "baseline-put100",
        "plain-put", "feedstore-put", "baseline-put",
    }  # fmt: skip
    chosen = [scenario for scenario in scenarios.SCENARIOS if scenario.name in picked]
    # The table lists every baseline first, so its order split each pair.
    assert [s.name for s in chosen].index("plain-put") == len(chosen) - 1
    assert [s.name for s in runner.measuring_order(chosen)] == [
        "baseline-put", "plain-put", "feedstore-put",
        "baseline-put100", "feedstore-put100",
        "baseline-bulk10k", "feedstore-bulk10k",
    ]  # fmt: skip
    everything = [s.name for s in runner.measuring_order(scenarios.SCENARIOS)]
    assert sorted(everything) == sorted(s.name for s in scenarios.SCENARIOS)
    # Compared either way: the gateway's cost is baseline-get against baseline-get-wsgi, which
    # the table lists after every PUT; it is measured among the GETs.
    assert everything.index("baseline-get-wsgi") < everything.index("baseline-put")


def test_every_other_round_runs_the_scenarios_in_reverse_so_none_is_always_later() -> None:
    runs = [(scenario, "granian") for scenario in scenarios.SCENARIOS[:4]]
    rounds = [list(runner.in_round_order(runs, number)) for number in (1, 2, 3, 4)]
    assert rounds[0] == rounds[2] == runs
    assert rounds[1] == rounds[3] == runs[::-1]
    # Over two rounds every scenario's mean position is the same.
    positions = {name: 0 for name in (s.name for s, _ in runs)}
    for order in rounds[:2]:
        for position, (scenario, _) in enumerate(order):
            positions[scenario.name] += position
    assert set(positions.values()) == {len(runs) - 1}


SPIN_THEN_IDLE = "import time\nend = time.time() + 1\nwhile time.time() < end: pass\ntime.sleep(60)"


def test_a_scenario_waits_for_the_requests_the_one_before_left_running() -> None:
    # A process that keeps a core busy for a second after "wrk stopped", as a bulk's last
    # requests do, then idles.
    busy = subprocess.Popen([sys.executable, "-c", SPIN_THEN_IDLE])
    try:

        def read() -> float:
            return servers.cpu_seconds([busy.pid])

        time.sleep(0.1)
        waited = servers.wait_until_idle(read)
        spent = read()
        assert 0.5 < waited < 10 and spent > 0.2  # the second of spinning, on a shared machine
        time.sleep(servers.IDLE_INTERVAL)
        assert read() - spent <= servers.IDLE_TICKS / os.sysconf("SC_CLK_TCK")
    finally:
        busy.kill()
        busy.wait()
