"""Instructions per request of the write scenarios, feedstore's and the baseline's, counted by
valgrind (callgrind) in-process: a reproducible figure on a shared, noisy machine.

Each scenario runs in a process of its own under `valgrind --tool=callgrind`, twice: once
sending no measured request and once sending `--requests` of them, after the same set-up (a
throwaway redis-server on a unix socket, the app, its seeded entries, the request bodies built,
`WARMUP` requests sent). The difference of the two totals, over the requests, is what one
request costs the app, its framework and redis-py, through Flask's test client, its response
closed (so feedstore's access line and metrics are counted, as `serve` writes them), the
garbage collector tuned as `serve` tunes it (collector.py). Redis
itself runs in another process and is not counted. PYTHONHASHSEED is fixed; a many-entry
request's count repeats to within ~1%, a single PUT's moves by up to ~100k between runs (a
one-off initialization falls into one run or the other), so count 20 of those (`-n 20`).

    scripts/instructions                       # every scenario, 10 requests each
    scripts/instructions -s feedstore-put100 -s baseline-put100 -n 5
    scripts/instructions -s feedstore-put100 --profile   # cProfile instead, no valgrind
    scripts/instructions -s feedstore-bulk1000 --keep /tmp/cg    # keep callgrind's files
    scripts/instructions -s feedstore-put100 --set changes=off   # a setting of feedstore's

The bodies are the bench's (scenarios.entry: ~1 KB entries with their ids, revision-checked).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VALGRIND = "/usr/bin/valgrind"
WARMUP = 3
WRITE_HEADERS = {"X-Requested-With": "XMLHttpRequest", "Content-Type": "application/json"}


@dataclass(frozen=True)
class Scenario:
    """A write request and how many entries it carries; `baseline` sends it to /b/."""

    name: str
    entries: int
    baseline: bool
    bulk: bool = False


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("feedstore-put", 1, baseline=False),
        Scenario("baseline-put", 1, baseline=True),
        Scenario("feedstore-put100", 100, baseline=False),
        Scenario("baseline-put100", 100, baseline=True),
        Scenario("feedstore-bulk1000", 1000, baseline=False, bulk=True),
        Scenario("baseline-bulk1000", 1000, baseline=True, bulk=True),
    )
}


@contextmanager
def _redis() -> Iterator[Any]:
    """A throwaway redis-server on a unix socket, and a client of it."""
    import redis

    from feedstore.embedded import EmbeddedRedis

    with (
        tempfile.TemporaryDirectory() as directory,
        EmbeddedRedis(Path(directory), persistent=False) as server,
    ):
        client = redis.Redis.from_url(server.url)
        try:
            yield client
        finally:
            client.close()


def _requests(scenario: Scenario, client: Any, count: int) -> Callable[[int], None]:
    """Seed the scenario's entries and build `count` conditional bodies; return a function
    that sends the i-th, checking its answer."""
    from feedstore.bench.scenarios import entry, feed_body

    def send(method: str, path: str, body: bytes) -> Any:
        response = client.open(path, method=method, data=body, headers=WRITE_HEADERS)
        status = response.status_code
        response.close()
        if status != 200:
            raise SystemExit(f"{method} {path}: {status} {response.get_data()[:300]!r}")
        return response

    if scenario.baseline and scenario.entries == 1:
        key = "/b/w1"
        body = orjson_dumps(entry(key))
        send("PUT", key, body)
        paths = [f"{key}?r={revision}" for revision in range(1, count + 1)]
        bodies = [body] * count
    else:
        prefix = "/b/" if scenario.baseline else "/d/"
        path = prefix + ("?_bulk" if scenario.bulk else "")
        if not scenario.baseline:
            send("PUT", "/d/", feed_body(entry("/bench")))
        keys = [f"/bench/b{n:05d}" for n in range(scenario.entries)]
        send("PUT", path, feed_body(*(entry(key) for key in keys)))
        # Seeded at revision 1; request i writes revision i + 2 over i + 1.
        bodies = [
            feed_body(*(entry(key, str(revision)) for key in keys))
            for revision in range(1, count + 1)
        ]
        paths = [path] * count

    def request(i: int) -> None:
        send("PUT", paths[i], bodies[i])

    return request


def orjson_dumps(value: Any) -> bytes:
    import orjson

    data: bytes = orjson.dumps(value)
    return data


def _app(scenario: Scenario, redis_client: Any, config: dict[str, str]) -> Any:
    if scenario.baseline:
        from feedstore.bench import baseline

        return baseline.create_app(redis_client)
    from feedstore.app import create_app

    return create_app(config, redis_client)


def inner(
    scenario: Scenario, requests: int, send: int, profile: bool, config: dict[str, str]
) -> None:
    """In a process of its own, as `serve` runs an app: its access log (to /dev/null) and
    garbage collector settings; a throwaway Redis."""
    from feedstore import logs

    logs.configure("text", open(os.devnull, "w"))  # noqa: SIM115 - written to until exit
    with _redis() as redis_client:
        run(scenario, redis_client, requests, send, profile, config, settle=True)


def run(
    scenario: Scenario,
    redis_client: Any,
    requests: int,
    send: int,
    profile: bool,
    config: dict[str, str] | None = None,
    settle: bool = False,
) -> None:
    """Set the scenario up for `requests` requests, warm up, then send `send` of them;
    `config`, feedstore's settings (create_app's mapping); `settle`, tune the garbage
    collector as `serve` does in each worker, once the app is built (process-wide)."""
    client = _app(scenario, redis_client, config or {}).test_client()
    if settle:
        from feedstore import collector

        collector.settle_garbage_collector()
    request = _requests(scenario, client, WARMUP + requests)
    for i in range(WARMUP):
        request(i)
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    for i in range(WARMUP, WARMUP + send):
        request(i)
    if profiler is not None:
        profiler.disable()
        stats = pstats.Stats(profiler).strip_dirs()
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(40)


def _total(out_file: Path) -> int:
    """The instructions a callgrind output file counts in all."""
    found = re.search(r"^(?:summary|totals): (\d+)", out_file.read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit(f"no total in {out_file}")
    return int(found[1])


def count(scenario: Scenario, requests: int, keep: Path | None, settings: list[str]) -> float:
    """Instructions per request: callgrind's total with `requests` sent, less with none."""
    totals = []
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    inner = [
        "-m", "feedstore.bench.instructions", "--inner", scenario.name,
        *(f"--set={setting}" for setting in settings),
    ]  # fmt: skip
    # Once without valgrind first: a module edited since its last import is compiled again by
    # the first run only, which would take that from the difference.
    subprocess.run(
        [sys.executable, *inner, "--requests", "1", "--send", "0"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        for send in (0, requests):
            out = (keep or Path(directory)) / f"callgrind.{scenario.name}.{send}"
            command = [
                VALGRIND, "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                *inner, "--requests", str(requests), "--send", str(send),
            ]  # fmt: skip
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{scenario.name} failed:\n{done.stderr[-3000:]}")
            totals.append(_total(out))
    return (totals[1] - totals[0]) / requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/instructions", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "-s", "--scenario", action="append", choices=sorted(SCENARIOS),
        help="a scenario to count (repeatable; default: all)",
    )  # fmt: skip
    parser.add_argument("-n", "--requests", type=int, default=10, help="measured requests")
    parser.add_argument("--profile", action="store_true", help="cProfile them, no valgrind")
    parser.add_argument("--keep", type=Path, help="keep callgrind's output files in this dir")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="a feedstore setting, as create_app's config (repeatable)",
    )  # fmt: skip
    parser.add_argument("--inner", help=argparse.SUPPRESS)
    parser.add_argument("--send", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = dict(setting.partition("=")[::2] for setting in args.set)
    if args.inner:
        inner(SCENARIOS[args.inner], args.requests, args.send, False, config)
        return 0
    names = args.scenario or list(SCENARIOS)
    if args.profile:
        for name in names:
            print(f"== {name}")
            inner(SCENARIOS[name], args.requests, args.requests, True, config)
        return 0
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    for name in names:
        scenario = SCENARIOS[name]
        per_request = count(scenario, args.requests, args.keep, args.set)
        print(
            f"{name:20} {per_request / 1e3:12,.0f}k instructions/request "
            f"{per_request / scenario.entries / 1e3:10,.1f}k/entry",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
