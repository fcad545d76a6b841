"""`python -m feedstore.bench.serve FACTORY [serve options]`: `feedstore serve` with another app.

The bench serves every app the way `feedstore serve` serves feedstore (the same server, settings
and gateway, cli.serve), only the WSGI app each worker builds differs: FACTORY is its
"module:function", e.g. feedstore.bench.baseline:create_app.
"""

from __future__ import annotations

import dataclasses
import sys

from feedstore import cli
from feedstore.embedded import EmbeddedRedisError


def main(argv: list[str]) -> int:
    """Serve FACTORY's app with `feedstore serve`'s options; the exit status of serve."""
    if not argv or ":" not in argv[0]:
        print("usage: python -m feedstore.bench.serve MODULE:FUNCTION [serve options]")
        return 2
    factory, *arguments = argv
    args = cli.build_parser().parse_args(["serve", *arguments])
    try:
        return cli.serve(dataclasses.replace(cli.serve_options(args), app=factory))
    except (cli.CliError, EmbeddedRedisError) as e:
        print(f"feedstore bench serve: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
