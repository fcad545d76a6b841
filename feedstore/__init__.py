"""feedstore: a store of Atom entries with revisions, in the style of vte.cx, on Redis."""

from __future__ import annotations

from feedstore.app import create_app

__version__ = "0.1.0"

__all__ = ["__version__", "create_app"]
