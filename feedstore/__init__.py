"""feedstore: a store of Atom entries with revisions, in the style of vte.cx, on Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feedstore.app import create_app

__version__ = "0.1.0"

__all__ = ["__version__", "create_app"]


def __getattr__(name: str) -> Any:
    """`create_app`, imported when asked for: a command that never builds the app (import,
    export, user...) doesn't load Flask and the HTTP layer."""
    if name == "create_app":
        from feedstore.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
