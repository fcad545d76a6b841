"""The `feedstore` command line: one argparse subcommand per task (serve, schema, bench; user,
group and token in accounts_cli.py)."""

from __future__ import annotations

import argparse
import errno
import importlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import RedisClusterException

from feedstore import acl_reindex, connection, logs, migration
from feedstore.cli_store import (
    DEFAULT_DATA_DIR,
    CliError,
    add_store_options,
    answers,
    load_settings,
    redis_client,
    redis_url_of,
    without_password,
)
from feedstore.collector import settle_garbage_collector
from feedstore.embedded import (
    FSYNC_POLICIES,
    EmbeddedRedis,
    EmbeddedRedisError,
    FsyncPolicy,
    die_with_parent,
)
from feedstore.errors import FeedstoreError
from feedstore.keys import MAX_DEPTH, KeyScheme
from feedstore.replication import Replication
from feedstore.schema import Schema
from feedstore.settings import AUTH_MODES, JSON_STYLES, LOG_FORMATS, SWITCHES, Settings
from feedstore.store import Store
from feedstore.supervisor import Supervisor

if TYPE_CHECKING:
    from feedstore.app import WsgiApp
    from feedstore.changes_cli import Trimmer

APP_FACTORY = "feedstore.app:create_app"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # as metrics.py, which imports prometheus_client
SERVERS = ("granian", "gunicorn")
# Seconds a worker gets to finish its requests on shutdown before it is killed.
SHUTDOWN_TIMEOUT = 10


@dataclass(frozen=True)
class ServeOptions:
    """What `feedstore serve` was asked to do."""

    host: str
    port: int
    workers: int
    threads: int
    data_dir: Path
    redis_url: str | None
    schema_file: Path | None
    fsync: FsyncPolicy
    server: str
    json_style: str | None = None
    wait_replicas: int | None = None
    wait_timeout_ms: int | None = None
    partition_depth: int | None = None
    auth: str | None = None
    cookie_secure: bool = False
    default_acl: str | None = None
    log_format: str | None = None
    history: str | None = None
    history_days: int | None = None
    auto_merge: str | None = None
    changes: str | None = None
    # The WSGI app each worker builds, "module:function"; the bench serves its baseline this way.
    app: str = APP_FACTORY


def main(argv: list[str] | None = None) -> int:
    """Run the feedstore command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except (CliError, EmbeddedRedisError) as e:
        print(f"feedstore: {e}", file=sys.stderr)
        return e.status if isinstance(e, CliError) else 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """Build the parser; each subcommand registers itself with an add_*_command function."""
    parser = argparse.ArgumentParser(prog="feedstore", description=__doc__)
    subcommands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    add_serve_command(subcommands)
    add_schema_command(subcommands)
    add_migrate_command(subcommands)
    add_acl_command(subcommands)
    from feedstore import backup_cli  # it uses this module's Redis helpers

    backup_cli.add_commands(subcommands)
    from feedstore import check_cli  # it uses this module's Redis helpers

    check_cli.add_commands(subcommands)
    from feedstore import port_cli  # it uses this module's Redis helpers

    port_cli.add_commands(subcommands)
    from feedstore import changes_cli  # it uses this module's Redis helpers

    changes_cli.add_commands(subcommands)
    add_bench_command(subcommands)
    from feedstore import accounts_cli  # it uses this module's Redis helpers

    accounts_cli.add_commands(subcommands)
    return parser


def add_serve_command(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `feedstore serve`."""
    cpus = os.cpu_count() or 1
    parser = subcommands.add_parser(
        "serve",
        help="serve the HTTP API with several worker processes",
        description="Serve the HTTP API. Without --redis-url, an embedded Redis keeps the data "
        "in --data with AOF persistence; it starts before the workers and stops after them.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=_whole_number, default=8080, help="TCP port (%(default)s)")
    parser.add_argument(
        "--workers", type=_positive_int, default=cpus, help="worker processes (%(default)s)"
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=default_threads(),
        help="request threads per worker (%(default)s)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help=f"data directory of the embedded Redis (./{DEFAULT_DATA_DIR}), created if missing",
    )
    parser.add_argument(
        "--redis-url",
        help="use this Redis (redis://, rediss://, unix://, "
        "redis+sentinel://host:port[,host:port]/service) instead of an embedded one",
    )
    parser.add_argument(
        "--wait-replicas",
        type=_whole_number,
        help="replicas that must confirm each write (Redis WAIT; else 503 not_replicated); "
        "sets FEEDSTORE_WAIT_REPLICAS for the workers",
    )
    parser.add_argument(
        "--wait-timeout",
        type=_positive_int,
        metavar="MS",
        help="milliseconds the replicas get to confirm a write (1000); "
        "sets FEEDSTORE_WAIT_TIMEOUT_MS for the workers",
    )
    parser.add_argument(
        "--schema", type=Path, help="JSON Schema of the custom fields, loaded at start-up"
    )
    parser.add_argument(
        "--fsync",
        choices=FSYNC_POLICIES,
        help="when the embedded Redis fsyncs its AOF (everysec; always loses nothing even if "
        "Redis or the machine dies)",
    )
    parser.add_argument("--server", choices=SERVERS, default="granian", help="%(default)s")
    parser.add_argument(
        "--json-style",
        choices=JSON_STYLES,
        help="JSON entries wrapped in a feed (feed, the default) or bare, as vte.cx answers "
        "them (bare); sets FEEDSTORE_JSON_STYLE for the workers",
    )
    parser.add_argument(
        "--partition-depth",
        type=_depth,
        help="leading key segments that make a partition, one Redis Cluster slot (1: each "
        "top-level tree; 2 spreads /_user/<id> folders); sets FEEDSTORE_PARTITION_DEPTH",
    )
    parser.add_argument(
        "--default-acl",
        metavar="URNS",
        help="with auth on, the ACL of keys no entry's ACL governs (urn:vte.cx:acl:/_group/"
        "$admin,CRUD: admins only); sets FEEDSTORE_DEFAULT_ACL for the workers",
    )
    parser.add_argument(
        "--auth",
        choices=AUTH_MODES,
        help="authenticate requests (on) or act as anonymous (off, the default; refused on a "
        "non-loopback --host unless given); sets FEEDSTORE_AUTH for the workers",
    )
    parser.add_argument(
        "--cookie-secure",
        action="store_true",
        help="mark the session cookie Secure (behind HTTPS); sets FEEDSTORE_COOKIE_SECURE",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="the access log and other lines on stderr: text (the default) or json, one object "
        "per line; sets FEEDSTORE_LOG_FORMAT for the workers",
    )
    parser.add_argument(
        "--history",
        metavar="PREFIX=COUNT,...",
        help="prefixes whose entries keep superseded revisions, with how many (/notes=50); "
        "sets FEEDSTORE_HISTORY",
    )
    parser.add_argument(
        "--history-days",
        type=_positive_int,
        help="days a deleted entry's history is kept (30); sets FEEDSTORE_HISTORY_DAYS",
    )
    parser.add_argument(
        "--auto-merge",
        metavar="PREFIX,...",
        help="prefixes under which stale writes merge without ?_merge; sets FEEDSTORE_AUTO_MERGE",
    )
    parser.add_argument(
        "--changes",
        choices=SWITCHES,
        help="the change feed: on (the default), every write adds its events; off, none; "
        "sets FEEDSTORE_CHANGES",
    )
    parser.set_defaults(command=run_serve)


def default_threads() -> int:
    """serve's request threads per worker on this machine."""
    # Requests mostly wait on Redis, but more Python threads than this only fight over the GIL.
    return min(16, 2 * (os.cpu_count() or 1) + 1)


def add_schema_command(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `feedstore schema set|show|clear`."""
    parser = subcommands.add_parser(
        "schema",
        help="set, show or clear the field schema",
        description="The schema is kept in Redis, so every server process uses the same one. "
        "Without --redis-url it goes to the embedded Redis of --data (started for the command "
        "if no feedstore serve runs there).",
    )
    parser.add_argument("action", choices=("set", "show", "clear"))
    parser.add_argument("file", nargs="?", type=Path, help="the JSON Schema file (for set)")
    add_store_options(parser)
    parser.set_defaults(command=run_schema)


def add_migrate_command(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `feedstore migrate`."""
    parser = subcommands.add_parser(
        "migrate",
        help="move the keys in Redis to the key scheme of a partition depth",
        description="Rename the keys of feedstore's old untagged scheme, or of another "
        "partition depth, to the scheme of --partition-depth (FEEDSTORE_PARTITION_DEPTH, 1). "
        "Stop the servers first. Running it again is harmless and finishes an interrupted run. "
        "Without --redis-url it works on the embedded Redis of --data.",
    )
    add_store_options(parser)
    parser.add_argument("--partition-depth", type=_depth, help="the depth to move to")
    parser.set_defaults(command=run_migrate)


def add_acl_command(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `feedstore acl reindex`."""
    parser = subcommands.add_parser(
        "acl",
        help="build the ACL mirrors of the stored entries (before serving with auth on)",
        description="Writes keep each entry's ACL mirror in step only while auth is on; "
        "`acl reindex` builds them for data written before. Without --redis-url it works on "
        "the embedded Redis of --data (started for the command if no feedstore serve runs "
        "there).",
    )
    parser.add_argument("action", choices=("reindex",))
    add_store_options(parser)
    parser.set_defaults(command=run_acl)


def run_acl(args: argparse.Namespace) -> int:
    """`feedstore acl reindex`: mirror the ACL of every stored entry."""
    with redis_url_of(args.redis_url, args.data.absolute()) as url:
        store = Store(redis_client(url), keys=load_settings().keys)
        try:
            read, owned = acl_reindex.reindex(store)
        except FeedstoreError as e:
            raise CliError(f"{e.key}: {e.message}" if e.key else e.message) from e
        finally:
            store.redis.close()
    print(f"acl reindex: {read} entries read, {owned} with an ACL")
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    """`feedstore migrate`: rename keys to the scheme of the partition depth, with progress."""
    depth = args.partition_depth or load_settings().partition_depth
    if args.redis_url is None:
        running = EmbeddedRedis(args.data.absolute())
        if running.socket_path.exists() and answers(running.url):
            raise CliError(f"a feedstore serve uses {args.data}: stop it first")
    with redis_url_of(args.redis_url, args.data.absolute()) as url:
        client = redis_client(url)
        try:
            moved = migration.migrate(client, KeyScheme(depth), _report)
        except redis.RedisError as e:
            raise CliError(f"migrate stopped, run it again to finish: {e}") from e
        finally:
            client.close()
    print(f"migrated: {moved} keys moved to partition depth {depth}")
    return 0


def check_key_scheme(url: str, keys: KeyScheme, owned: bool) -> None:
    """Refuse to serve a Redis whose keys are of another scheme, saying how to migrate them;
    an `owned` Redis (the embedded one, locked to this serve) of the old scheme, or of an
    interrupted migration, is migrated here, since no other server can be using it."""
    client = redis_client(url)
    try:
        migration.check(client, keys)
    except (migration.OldScheme, migration.Interrupted) as e:
        if not owned:
            raise CliError(str(e)) from e
        migration.migrate(client, keys, _report)
    except migration.NeedsMigration as e:
        raise CliError(str(e)) from e
    finally:
        client.close()


def add_bench_command(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `feedstore bench`: every argument after it goes, as given, to feedstore.bench."""
    parser = subcommands.add_parser(
        "bench",
        help="measure feedstore on this machine (feedstore bench --help)",
        add_help=False,
        # No argument can start with NUL, so none looks like an option here and REMAINDER takes
        # them all, --help included, for the bench's own parser to read.
        prefix_chars="\0",
    )
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    parser.set_defaults(command=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """`feedstore bench`: the load benchmark, with its own options."""
    from feedstore.bench import main as bench_main

    return bench_main(list(args.arguments))


def run_schema(args: argparse.Namespace) -> int:
    """`feedstore schema`: set, show or clear the schema in the store's Redis."""
    if args.action == "set" and args.file is None:
        raise CliError("schema set needs the schema file")
    document = read_schema_file(args.file) if args.action == "set" else None
    with redis_url_of(args.redis_url, args.data.absolute()) as url:
        store = Store(redis_client(url), keys=load_settings().keys)
        try:
            if args.action == "show":
                shown = store.schema_document()
                print(json.dumps(shown, indent=2, ensure_ascii=False) if shown else "no schema")
                return 0
            store.set_schema(document)
        except FeedstoreError as e:
            raise CliError(e.message) from e
        finally:
            store.redis.close()
    print("schema set" if document is not None else "schema cleared")
    return 0


def read_schema_file(path: Path) -> dict[str, Any]:
    """A schema file's JSON, checked as a schema; CliError naming the file otherwise."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        Schema(document)
    except (OSError, ValueError) as e:
        raise CliError(f"can't read the schema {path}: {e}") from e
    except FeedstoreError as e:
        raise CliError(f"{path}: {e.message}") from e
    return dict(document)


def store_schema(redis_url: str, document: dict[str, Any]) -> None:
    client = redis_client(redis_url)
    try:
        Store(client, keys=load_settings().keys).set_schema(document)
    except FeedstoreError as e:
        raise CliError(f"can't store the schema: {e.message}") from e
    finally:
        client.close()


def run_serve(args: argparse.Namespace) -> int:
    """Check the `serve` arguments, then serve until interrupted."""
    return serve(serve_options(args))


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """The `serve` arguments, checked."""
    if args.redis_url and (args.data or args.fsync):
        raise CliError("--data and --fsync set up the embedded Redis; drop them with --redis-url")
    if args.wait_replicas and not args.redis_url:
        raise CliError("--wait-replicas needs --redis-url: the embedded Redis has no replicas")
    schema_file: Path | None = args.schema
    if schema_file is not None:
        schema_file = schema_file.absolute()
        if not schema_file.is_file():
            raise CliError(f"no schema file at {schema_file}")
    return ServeOptions(
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
        data_dir=(args.data or DEFAULT_DATA_DIR).absolute(),
        redis_url=args.redis_url,
        schema_file=schema_file,
        fsync=args.fsync or "everysec",
        server=args.server,
        json_style=args.json_style,
        wait_replicas=args.wait_replicas,
        wait_timeout_ms=args.wait_timeout,
        partition_depth=args.partition_depth,
        auth=args.auth,
        cookie_secure=args.cookie_secure,
        default_acl=args.default_acl,
        log_format=args.log_format,
        history=args.history,
        history_days=args.history_days,
        auto_merge=args.auto_merge,
        changes=args.changes,
    )


def serve(options: ServeOptions) -> int:
    """Start Redis unless given one, run the workers until a signal, then stop Redis after them."""
    # Until the server installs its own handlers, SIGTERM must unwind through the finally below.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if options.json_style is not None:
        os.environ["FEEDSTORE_JSON_STYLE"] = options.json_style
    if options.wait_replicas is not None:
        os.environ["FEEDSTORE_WAIT_REPLICAS"] = str(options.wait_replicas)
    if options.wait_timeout_ms is not None:
        os.environ["FEEDSTORE_WAIT_TIMEOUT_MS"] = str(options.wait_timeout_ms)
    if options.partition_depth is not None:
        os.environ["FEEDSTORE_PARTITION_DEPTH"] = str(options.partition_depth)
    if options.auth is not None:
        os.environ["FEEDSTORE_AUTH"] = options.auth
    if options.cookie_secure:
        os.environ["FEEDSTORE_COOKIE_SECURE"] = "true"
    if options.default_acl is not None:
        os.environ["FEEDSTORE_DEFAULT_ACL"] = options.default_acl
    if options.log_format is not None:
        os.environ["FEEDSTORE_LOG_FORMAT"] = options.log_format
    if options.changes is not None:
        os.environ["FEEDSTORE_CHANGES"] = options.changes
    for name in ("history", "history_days", "auto_merge"):
        value = getattr(options, name)
        if value is not None:
            os.environ[f"FEEDSTORE_{name.upper()}"] = str(value)
    try:
        # Every worker reads FEEDSTORE_* again; a mistake there should stop us here, once.
        settings = Settings.load()
    except ValueError as e:
        raise CliError(str(e)) from e
    if not settings.auth_on and options.auth is None and not is_loopback(options.host):
        raise CliError(
            f"Refusing to serve {options.host} without authentication; "
            "pass --auth off to do it anyway.",
            status=2,
        )
    check_port_free(options.host, options.port)
    schema = read_schema_file(options.schema_file) if options.schema_file else None
    # From here on the process serves: its log lines, and the directory where each worker
    # counts its requests for /metrics (metrics.py), removed when serving ends.
    logs.configure(settings.log_format)
    metrics_dir = None
    embedded: EmbeddedRedis | None = None
    supervisor: Supervisor | None = None
    redis_log: logs.RedisLogFollower | None = None
    trimmer: Trimmer | None = None
    try:
        if not os.environ.get(MULTIPROC_ENV):
            metrics_dir = tempfile.mkdtemp(prefix="feedstore-metrics-")
            os.environ[MULTIPROC_ENV] = metrics_dir
        if options.redis_url is None:
            embedded = EmbeddedRedis(options.data_dir, fsync=options.fsync)
            redis_log = logs.RedisLogFollower(embedded.log_path)
            redis_log.start()
            embedded.start()
            # Restarts it if it dies; if it can't, stops the server (SIGTERM), which then exits 1.
            supervisor = Supervisor(embedded, _report, _stop_serving).start()
            redis_url = embedded.url
            data = f"{options.data_dir} (embedded Redis, AOF fsync {options.fsync})"
        else:
            replication = Replication.of(settings.wait_replicas, settings.wait_timeout_ms)
            check_redis_url(options.redis_url, settings.redis_timeout, replication)
            redis_url = options.redis_url
            data = without_password(redis_url)
        os.environ["FEEDSTORE_REDIS_URL"] = redis_url
        check_key_scheme(redis_url, settings.keys, owned=embedded is not None)
        if schema is not None:
            # Once, here: the workers read it from Redis, where every process sees the same one.
            store_schema(redis_url, schema)
        banner = (
            f"feedstore: serving http://{_host_in_url(options.host)}:{options.port} with "
            f"{options.workers} {options.server} workers; data in {data}"
        )
        if settings.changes_on:
            from feedstore.changes_cli import Trimmer

            # The change feed's retention pass, at start and every minute, in this process (not
            # each worker).
            trimmer = Trimmer(redis_url, settings, _report).start()
        runner = run_granian if options.server == "granian" else run_gunicorn
        status = runner(options, settings, banner, embedded)
        return 1 if supervisor is not None and supervisor.gave_up else status
    finally:
        if trimmer is not None:
            trimmer.stop()
        if supervisor is not None:
            supervisor.stop()
        if embedded is not None:
            embedded.stop()
        if supervisor is not None:
            supervisor.join(SHUTDOWN_TIMEOUT)
        if redis_log is not None:
            redis_log.stop()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            del os.environ[MULTIPROC_ENV]  # it named the directory just removed


def _report(message: str) -> None:
    """A line on stderr, where serve's other messages go."""
    print(f"feedstore: {message}", file=sys.stderr, flush=True)


def _stop_serving() -> None:
    """Stop the server as SIGTERM does: workers first, then Redis."""
    os.kill(os.getpid(), signal.SIGTERM)


def run_granian(
    options: ServeOptions, settings: Settings, banner: str, embedded: EmbeddedRedis | None
) -> int:
    """Serve with granian's workers in this process; return when they have stopped.

    Its ASGI interface, without lifespan events, runs feedstore.gateway in front of the app:
    bodies are read on each worker's event loop and the app runs in `--threads` threads of the
    gateway's pool (gateway.py says why not granian's WSGI interface).
    """
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    server = Granian(
        options.app,
        address=options.host,
        port=options.port,
        interface=Interfaces.ASGINL,
        workers=options.workers,
        websockets=False,
        # hyper closes a connection whose request head takes longer than this.
        http1_settings=HTTP1Settings(header_read_timeout=settings.header_timeout * 1000),
        respawn_failed_workers=True,
        workers_kill_timeout=SHUTDOWN_TIMEOUT,
        log_level=LogLevels.warning,
    )
    server.on_startup(lambda: print(banner, flush=True))
    loader = _WorkerAppLoader(os.getpid(), embedded, options.threads, options.app)
    try:
        # granian calls the loader in each worker with the target, after forking.
        server.serve(target_loader=loader)
    except RuntimeError as e:
        # granian reports socket errors as RuntimeError with a Rust backtrace after the first line.
        raise CliError(f"can't listen on {options.host}:{options.port}: {_first_line(e)}") from e
    except SystemExit as e:
        # granian exits 1 after a crash loop of its workers, having already logged why.
        return _exit_status(e)
    return 0


def run_gunicorn(
    options: ServeOptions, settings: Settings, banner: str, embedded: EmbeddedRedis | None
) -> int:
    """Serve with gunicorn's asgi workers in this process, the gateway in front of the app (as
    with granian); return when they have stopped."""
    from gunicorn.app.base import BaseApplication

    parent = os.getpid()
    loader = _WorkerAppLoader(parent, embedded, options.threads, options.app)

    class FeedstoreGunicorn(BaseApplication):
        def load_config(self) -> None:
            settings: dict[str, Any] = {
                "bind": [f"{_host_in_url(options.host)}:{options.port}"],
                "workers": options.workers,
                "worker_class": "asgi",
                "asgi_lifespan": "off",
                "graceful_timeout": SHUTDOWN_TIMEOUT,
                "loglevel": "warning",
                "control_socket_disable": True,
                "when_ready": lambda arbiter: print(banner, flush=True),
                "post_fork": lambda arbiter, worker: loader.prepare_worker(),
            }
            for name, value in settings.items():
                self.cfg.set(name, value)

        def load(self) -> Callable[..., Any]:
            return loader.gateway()

    try:
        FeedstoreGunicorn().run()
    except SystemExit as e:
        # gunicorn's arbiter always leaves through sys.exit, 0 after a clean stop.
        return _exit_status(e)
    return 0


@dataclass
class _WorkerAppLoader:
    """Runs in each freshly forked worker: ties it to the serve process, then builds the app."""

    parent: int
    embedded: EmbeddedRedis | None
    threads: int
    app: str = APP_FACTORY  # "module:function"

    def __call__(self, target: str) -> Callable[..., Any]:
        """granian's loader: prepare the worker, then build the gateway."""
        self.prepare_worker()
        return self.gateway()

    def gateway(self) -> Callable[..., Any]:
        """The app behind the gateway, an ASGI application; it reads FEEDSTORE_* from the
        environment."""
        from feedstore.gateway import Gateway

        settings = Settings.load()
        logs.configure(settings.log_format)
        gateway = Gateway(
            self.create_app(),
            max_body=settings.max_body,
            body_timeout=settings.body_timeout,
            threads=self.threads,
        )
        settle_garbage_collector()
        return gateway

    def prepare_worker(self) -> None:
        """Tie the worker to the serve process alone, and drop its copy of the data dir lock."""
        die_with_parent(self.parent)
        # Its own process group: Ctrl-C or `kill -TERM -<pgid>` reach only the serve process,
        # which stops each worker once. A granian worker signalled both directly and by its
        # parent sometimes hangs until killed, or exits first and is reported as crashed.
        os.setpgid(0, 0)
        if self.embedded is not None:
            self.embedded.close_inherited_lock()

    def create_app(self) -> WsgiApp:
        """Build the WSGI app; it reads FEEDSTORE_* from the environment."""
        module, _, function = self.app.partition(":")
        factory: Callable[[], WsgiApp] = getattr(importlib.import_module(module), function)
        return factory()


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback one (127.0.0.0/8, ::1)."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # check_port_free reports it
    addresses = {str(info[4][0]).split("%")[0] for info in found}  # fe80::1%eth0: no scope
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_port_free(host: str, port: int) -> None:
    """Fail with a CliError unless a server could listen on host:port right now."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise CliError(f"can't listen on {host}:{port}: {e.strerror}") from e
    with socket.socket(family, kind, proto) as probe:
        # The same option the servers set, so a port in TIME_WAIT is not reported as busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise CliError(f"port {port} on {host} is already in use") from e
            raise CliError(f"can't listen on {host}:{port}: {e.strerror}") from e


def check_redis_url(url: str, timeout: float, replication: Replication | None = None) -> None:
    """Fail with a CliError unless `url` names a Redis that answers PING within `timeout` s (and
    that can wait for replicas, when `replication` asks for it)."""
    shown = without_password(url)
    try:
        # Inside the try: finding out whether it is a cluster already talks to it.
        client = connection.connect(url, timeout, replication=replication)
    except ValueError as e:
        raise CliError(f"bad --redis-url {shown}: {e}") from e
    except (redis.RedisError, RedisClusterException) as e:
        raise CliError(f"can't reach Redis at {shown}: {e}") from e
    try:
        client.ping()
    except (redis.RedisError, RedisClusterException) as e:
        raise CliError(f"can't reach Redis at {shown}: {e}") from e
    finally:
        client.close()


def _whole_number(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text):  # int() would take full-width digits and underscores
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text}")
    return int(text)


def _depth(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= MAX_DEPTH:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_DEPTH}, not {value}")
    return value


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _exit_status(exit: SystemExit) -> int:
    return exit.code if isinstance(exit.code, int) else 1


def _first_line(error: BaseException) -> str:
    return str(error).strip().split("\n", 1)[0]


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
