"""The cyclic garbage collector's policy for feedstore's own processes: a serve worker, and the
import and export commands, which hold a batch or a page of decoded entries at a time.

Python's default collects the youngest generation every 700 container objects allocated and,
every so often, walks every live object; a process that decodes ~20 containers per entry pays
that over and over for objects reference counting frees anyway. Measured on `feedstore import
--mode restore` of 100,001 ~1 KB entries: 35.8-39.0 µs of CPU per entry with the default,
32.1-35.7 µs with the policy below (three runs each).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

# Container objects allocated, less those freed, between two collections of the youngest
# generation (Python's default is 700).
GC_THRESHOLD = 100_000
# A request body from which the collector pauses while the request runs (paused() says why).
LARGE_BODY = 1 << 20

_pause = threading.Lock()
_pausing = 0  # requests running with the collector paused
_resume = False  # whether the last of them turns it back on (it was on before the first)


def settle_garbage_collector() -> None:
    """Tune the cyclic garbage collector of a process whose long-lived objects are built (a
    serve worker with its app); serve's choice, not the app's (tests build many apps, and a
    WSGI server may have its own policy).

    The app, its modules and their objects (~55,000) live as long as the worker: gc.freeze
    moves them out of the collector's generations, so a full collection no longer walks them.
    A request holds its objects until it answers (a 10,000-entry bulk PUT some 150,000), and
    with the default threshold the collector ran ~4,000 times in such a request, walking the
    same live objects again and again: ~230 ms of a bulk's ~1 s of CPU, measured with
    gc.callbacks, ~15 ms at this threshold. Objects freed by reference counting leave the
    collector's lists at once, so its collections stay as small as what is still alive.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


@contextlib.contextmanager
def settled() -> Iterator[None]:
    """The policy for the length of a command (import, export), then the collector as it was:
    a command run in-process (tests) leaves its caller's collector alone."""
    threshold = gc.get_threshold()
    settle_garbage_collector()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No automatic collection while the block runs, in any of the process's threads; the
    collector as it was once the last such block ends (requests overlap, so they are counted).

    For a request with a body of LARGE_BODY or more: it holds what it decodes until it answers
    (a 10,000-entry bulk PUT ~250,000 objects, freed by reference counting at the end), so
    every collection in it walks the same live objects again: 1.75-2.2 µs of CPU per entry of
    such a bulk at GC_THRESHOLD, of 36-40 (in-process, gc.callbacks). Garbage with cycles
    waits for the first collection after.
    """
    global _pausing, _resume
    with _pause:
        if _pausing == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pausing += 1
    try:
        yield
    finally:
        with _pause:
            _pausing -= 1
            if _pausing == 0 and _resume:
                gc.enable()
