"""`feedstore backup DIR` and `feedstore restore DIR --data NEW` (backup.py), with progress.

`backup` takes `--data DIR | --redis-url URL` as `feedstore schema` does, so it runs while a
server serves. The progress bar is drawn on stderr when it is a terminal; stdout gets one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import redis
from tqdm import tqdm

from feedstore.backup import BackupError, backup, restore
from feedstore.cli_store import (
    CliError,
    add_store_options,
    redis_client,
    redis_url_of,
    without_password,
)

Subcommands = argparse._SubParsersAction


def add_commands(subcommands: Subcommands) -> None:
    """Register `feedstore backup` and `feedstore restore`."""

    parser = subcommands.add_parser(
        "backup",
        help="copy the store's data, consistent at one instant, while it serves",
        description="Ask the store's Redis for a snapshot (as a replica does) and write it to "
        "DIR/dump.rdb, with DIR/backup.json describing it. Without --redis-url: the embedded "
        "Redis of --data (a running serve's, or one started for the command).",
    )
    parser.add_argument("directory", type=Path, help="where the backup goes (created if missing)")
    add_store_options(parser)
    parser.set_defaults(command=run_backup)

    parser = subcommands.add_parser(
        "restore",
        help="make a new data directory from a backup, for feedstore serve --data",
        description="Load DIR/dump.rdb (checked against DIR/backup.json) into a new, empty data "
        "directory and write it into the AOF the embedded Redis starts from.",
    )
    parser.add_argument("directory", type=Path, help="the backup")
    parser.add_argument("--data", type=Path, required=True, help="the new data directory")
    parser.set_defaults(command=run_restore)


def run_backup(args: argparse.Namespace) -> int:

    with redis_url_of(args.redis_url, args.data.absolute()) as url:
        client = redis_client(url)
        if isinstance(client, redis.RedisCluster):
            client.close()
            raise CliError(
                "a Redis Cluster can't be backed up as one snapshot: back up each primary"
            )
        bar = tqdm(
            total=None, unit="B", unit_scale=True, desc="backup", disable=not sys.stderr.isatty()
        )

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            manifest = backup(client, args.directory, without_password(url), progress)
        except BackupError as e:
            raise CliError(str(e)) from e
        finally:
            bar.close()
            client.close()
    print(f"backup: {manifest.bytes} bytes in {args.directory}, sha256 {manifest.sha256}")
    return 0


def run_restore(args: argparse.Namespace) -> int:

    try:
        manifest = restore(args.directory, args.data.absolute())
    except BackupError as e:
        raise CliError(str(e)) from e
    print(f"restored: the backup of {manifest.created} is in {args.data}; serve it with --data")
    return 0
