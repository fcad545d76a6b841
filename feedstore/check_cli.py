"""`feedstore check [--repair]` (check.py), with a progress bar on stderr.

It takes `--data DIR | --redis-url URL` as `feedstore schema` does, so it runs while a server
serves. Each disagreement is one line on stdout; the exit status is 0 when none is left.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from feedstore.check import Checker
from feedstore.cli_store import add_store_options, load_settings, redis_client, redis_url_of

Subcommands = argparse._SubParsersAction


def add_commands(subcommands: Subcommands) -> None:
    """Register `feedstore check`."""

    parser = subcommands.add_parser(
        "check",
        help="find keys that disagree with the documents (children, indexes, aliases, ACLs)",
        description="Check that the children sets, revisions, indexes, alias keys and (with "
        "FEEDSTORE_AUTH=on) ACL mirrors agree with the stored documents; --repair mends what "
        "disagrees. Exit status 0 when nothing is left to mend.",
    )
    parser.add_argument("--repair", action="store_true", help="mend what disagrees")
    add_store_options(parser)
    parser.set_defaults(command=run_check)


def run_check(args: argparse.Namespace) -> int:
    from feedstore.store import Store

    settings = load_settings()
    with redis_url_of(args.redis_url, args.data.absolute()) as url:
        client = redis_client(url)
        try:
            checker = Checker(
                client, settings.keys, Store(client, keys=settings.keys).schema(),
                auth_on=settings.auth_on,
            )  # fmt: skip
            bar = tqdm(unit=" entries", desc="check", disable=not sys.stderr.isatty())
            found = mended = 0

            def progress(done: int) -> None:
                bar.update(done - bar.n)

            try:
                for damage in checker.run(progress):
                    found += 1
                    repaired = args.repair and checker.repair(damage)
                    mended += repaired
                    print(f"{damage}{' - repaired' if repaired else ''}", flush=True)
            finally:
                bar.close()
        finally:
            client.close()
    left = found - mended
    print(f"check: {bar.n} entries, {found} disagreements, {mended} repaired")
    return 0 if left == 0 else 1
