"""`python -m feedstore.bench`: the same as `feedstore bench`."""

from __future__ import annotations

import sys

from feedstore.bench.runner import main

if __name__ == "__main__":
    sys.exit(main())
