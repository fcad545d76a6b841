"""feedstore bench: feedstore against a bare Flask+Redis baseline, under granian and gunicorn."""

from __future__ import annotations

from feedstore.bench.runner import main

__all__ = ["main"]
