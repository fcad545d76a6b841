"""`feedstore export` and `feedstore import` (export.py, importer.py), with progress on stderr.

Both take `--data DIR | --redis-url URL` as `feedstore schema` does, and talk to Redis
directly. The progress bar is drawn on stderr when it is a terminal, so `export -o -` keeps
stdout for the data alone; summaries go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import BinaryIO, cast

from tqdm import tqdm

from feedstore import collector
from feedstore.cli_store import (
    CliError,
    add_store_options,
    load_settings,
    redis_client,
    redis_url_of,
)
from feedstore.errors import FeedstoreError

Subcommands = argparse._SubParsersAction

# Exit statuses besides 0 (done) and 2 (usage, argparse's).
FAILED = 1  # a batch failed, the file was refused, or a dry run found problems
REJECTED = 3  # done, but lines went to the --rejects file


def add_commands(subcommands: Subcommands) -> None:
    """Register `feedstore export` and `feedstore import`."""
    from feedstore.importer import DEFAULT_BATCH, Mode

    parser = subcommands.add_parser(
        "export",
        help="write a tree of entries, its counters and numbering to a file (JSON Lines)",
        description="Write the entries of the tree at KEY (parents first, children in key "
        "order, each as ?e answers it), its counters and numbering sequences, between a "
        "header line and a checksummed end line; or, with --format atom, one Atom feed.",
    )
    parser.add_argument("key", nargs="?", default="/", help="the tree's top (default: /)")
    parser.add_argument("-o", "--output", default="-", help="the file to write; - is stdout")
    parser.add_argument("--format", choices=("jsonl", "atom"), default="jsonl")
    parser.add_argument(
        "--resume", action="store_true", help="carry on an unfinished export to the -o file"
    )
    parser.add_argument(
        "--users", action="store_true",
        help="also write users and tokens (password hashes and token digests, never secrets)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="draw no progress bar")
    add_store_options(parser)
    parser.set_defaults(command=run_export)

    parser = subcommands.add_parser(
        "import",
        help="load an export, an Atom feed or a vte.cx JSON body into the store",
        description="Write the entries of FILE in atomic batches through the store's one write "
        "path. An export file without its end line, or whose checksum is wrong, is refused "
        "unless --partial.",
    )
    parser.add_argument(
        "file", help="an export (JSON Lines), an Atom feed or a JSON body; - is stdin"
    )
    parser.add_argument(
        "--mode", choices=[m.value for m in Mode], default=Mode.CREATE.value,
        help="create: new entries only (default); upsert: forced writes; restore: the exported "
        "ids, revisions, times and authors",
    )  # fmt: skip
    parser.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help="entries per transaction (%(default)s)"
    )
    parser.add_argument(
        "--force", action="store_true", help="restore over entries that differ (--mode restore)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the whole file, print every problem, write nothing",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="carry on after the last batch FILE.import-state names",
    )
    parser.add_argument("--rejects", type=Path, help="write failing lines here and go on")
    parser.add_argument("--partial", action="store_true", help="import a file that was cut short")
    parser.add_argument(
        "--users", action="store_true", help="also import its users and tokens (export --users)"
    )
    parser.add_argument("--no-progress", action="store_true", help="draw no progress bar")
    add_store_options(parser)
    parser.set_defaults(command=run_import)


def _bar(args: argparse.Namespace, **options: object) -> tqdm:
    return tqdm(disable=args.no_progress or not sys.stderr.isatty(), **options)  # type: ignore[call-overload]


def _advancing(bar: tqdm) -> Callable[[int], None]:
    """A progress callback that moves `bar` to the count (or offset) it is given."""

    def advance(done: int) -> None:
        bar.update(done - bar.n)

    return advance


def run_export(args: argparse.Namespace) -> int:
    from feedstore import account_lines
    from feedstore.changes import ChangeStreams
    from feedstore.entry import ROOT, validate_key
    from feedstore.export import Exporter, ExportError, export_atom, export_jsonl, resume_point

    root = args.key
    if root != ROOT:
        try:
            validate_key(root)
        except FeedstoreError as e:
            raise CliError(e.message) from e
    if args.resume and (args.output == "-" or args.format != "jsonl"):
        raise CliError("export --resume needs -o FILE (JSON Lines)")
    settings = load_settings()
    with redis_url_of(args.redis_url, args.data.absolute()) as url:
        client = redis_client(url)
        exporter = Exporter(client, settings.keys)
        # With the change feed on, the walk is caught up to one sequence (export.catch_up).
        streams = ChangeStreams(client, settings.keys, exporter.cluster)
        streams_on = settings.changes_on
        bar = _bar(args, unit=" entries", desc="export")
        try:
            with _output(args.output, args.resume) as (out, path):
                at = ""
                if args.format == "atom":
                    count = export_atom(exporter, root, out)
                    bar.update(count)
                else:
                    resumed = None
                    if args.resume and path is not None and path.stat().st_size:
                        try:
                            resumed, keep = resume_point(path, root)
                        except ExportError as e:
                            raise CliError(str(e)) from e
                        out.truncate(keep)
                        out.seek(keep)
                        bar.update(resumed.entries)
                    extra = partial(account_lines.lines, client) if args.users else None
                    with collector.settled():
                        done = export_jsonl(
                            exporter, root, out, resumed=resumed,
                            progress=_advancing(bar), extra=extra,
                            streams=streams if streams_on else None,
                        )  # fmt: skip
                    count = done.entries
                    at = f", at seq {done.seq}" if done.seq else ", fuzzy (no change feed)"
        except FeedstoreError as e:  # the change feed dropped what the catch-up needed
            raise CliError(e.message) from e
        except BrokenPipeError:
            # Whoever read stdout stopped (`| head`): no traceback, and none at exit either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            print("export: stopped, its reader closed the pipe", file=sys.stderr)
            return FAILED
        finally:
            bar.close()
            client.close()
    print(f"export: {count} entries of {root}{at}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _output(name: str, resume: bool) -> Iterator[tuple[BinaryIO, Path | None]]:
    if name == "-":
        yield sys.stdout.buffer, None
        sys.stdout.buffer.flush()
        return
    path = Path(name)
    mode = "r+b" if resume and path.exists() else "wb"
    with path.open(mode, buffering=1 << 20) as file:
        yield cast(BinaryIO, file), path


def run_import(args: argparse.Namespace) -> int:
    from feedstore.import_file import ImportRefused, open_source
    from feedstore.importer import STATE_SUFFIX, Importer, ImportFailed, Mode, Options
    from feedstore.store import Store

    settings = load_settings()
    limits = settings.limits
    if not 1 <= args.batch <= limits.max_entries:
        raise CliError(f"--batch must be 1 to {limits.max_entries} (max_entries)")
    if args.file == "-" and args.resume:
        raise CliError("import --resume needs a FILE, not stdin")
    with _input(args.file) as path, _rejects(args.rejects) as rejects:
        try:
            source = open_source(path)
        except OSError as e:
            raise CliError(f"can't read {args.file}: {e}") from e
        state_path = None if args.file == "-" or args.dry_run else Path(args.file + STATE_SUFFIX)
        options = Options(
            mode=Mode(args.mode), batch=args.batch, force=args.force, dry_run=args.dry_run,
            partial=args.partial, resume=args.resume, rejects=rejects, users=args.users,
        )  # fmt: skip
        with redis_url_of(args.redis_url, args.data.absolute()) as url:
            client = redis_client(url)
            store = Store(client, keys=settings.keys, history=settings.history_rules)
            bar = _bar(args, total=source.size, unit="B", unit_scale=True, desc="import")
            importer = Importer(
                store, limits, options,
                progress=_advancing(bar),
                report=lambda line: bar.write(line, file=sys.stderr),
            )  # fmt: skip
            try:
                with collector.settled():
                    report = importer.run(source, state_path)
                if settings.auth_on and not args.dry_run:
                    from feedstore import acl_reindex

                    acl_reindex.reindex(store)
            except ImportRefused as e:
                raise CliError(str(e)) from e
            except ImportFailed as e:
                bar.close()
                print(f"{e}\nimport: stopped; nothing of this batch was written", file=sys.stderr)
                return FAILED
            except FeedstoreError as e:
                raise CliError(f"{e.key}: {e.message}" if e.key else e.message) from e
            finally:
                bar.close()
                client.close()
    if args.dry_run:
        for problem in report.problems:
            print(problem)
        print(f"import --dry-run: {report.entries} entries, {len(report.problems)} problems")
        return FAILED if report.problems else 0
    if state_path is not None:
        state_path.unlink(missing_ok=True)
    print(
        f"import: {report.written} entries written, {report.counters} counters, "
        f"{report.rejected} rejected"
        + (f", {report.accounts} users and tokens" if args.users else "")
        + (f", {report.skipped} batches done before" if report.skipped else "")
    )
    return REJECTED if report.rejected else 0


@contextlib.contextmanager
def _input(name: str) -> Iterator[Path]:
    """The file to import; stdin is copied to a temporary file first (read twice: once to
    check its end line, once to import)."""
    if name != "-":
        yield Path(name)
        return
    with tempfile.NamedTemporaryFile(prefix="feedstore-import-") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
        spool.flush()
        yield Path(spool.name)


@contextlib.contextmanager
def _rejects(path: Path | None) -> Iterator[BinaryIO | None]:
    if path is None:
        yield None
        return
    with path.open("wb") as file:
        yield file
