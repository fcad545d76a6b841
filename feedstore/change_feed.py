"""`GET /d/{key}?_changes` (API.md §18): the request's options, the events a caller may see, and
waiting for events (long-poll `_wait`, Server-Sent Events) through the process's ChangeHub.

A change feed takes only its own options (`_since`, `_wait`, `p` as `_since`'s synonym, `l`,
`e`) and the format's (`x`, `j`): any other is 400 naming it, never silently ignored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from feedstore import codec_json
from feedstore.access import Access
from feedstore.access_log import DEFERRED
from feedstore.change_hub import ASYNC_WAITS, DEADLINE, ChangeHub, Deferred
from feedstore.changes import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ZERO,
    ChangePage,
    items,
    parse_sequence,
)
from feedstore.errors import InvalidOption
from feedstore.query import check_options
from feedstore.store import Store

ALLOWED = frozenset({"_changes", "_since", "_wait", "p", "l", "e", "x", "j"})
MAX_WAIT = 60
PING_SECONDS = 15.0
RETRY_MS = 3000


@dataclass(frozen=True)
class ChangeRequest:
    """What a `?_changes` request asks: after which sequence (None: the oldest kept; `now`
    resolved when read), how many events, how long to wait for one (0: don't)."""

    since: str | None
    now: bool
    limit: int
    wait: int
    entries: bool

    @classmethod
    def parse(cls, args: Mapping[str, str], last_event_id: str | None = None) -> ChangeRequest:
        for name in args:
            if name not in ALLOWED:
                raise InvalidOption(f"_changes can't be combined with {name}.")
        if "_since" in args and "p" in args:
            raise InvalidOption("_since and p can't be combined.")
        raw, option = args.get("_since"), "_since"
        if raw is None and "p" in args:
            raw, option = args["p"], "p"
        if last_event_id:  # EventSource's resumption overrides `_since`
            raw, option = last_event_id.strip(), "Last-Event-ID"
        now = raw == "now"
        since = parse_sequence(raw, option) if raw is not None and not now else None
        limit = DEFAULT_LIMIT
        if "l" in args:
            check_options({"l": args["l"]})
            limit = MAX_LIMIT if args["l"] == "*" else int(args["l"])
        wait = 0
        if "_wait" in args:
            value = args["_wait"]
            if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_WAIT):
                raise InvalidOption(
                    f"Wait must be a number of seconds from 1 to {MAX_WAIT}: _wait={value}"
                )
            wait = int(value)
        return cls(since, now, limit, wait, "e" in args)

    def start(self, store: Store, key: str) -> str | None:
        """The sequence to read after: `now` is the stream's newest event."""
        return store.last_change(key) if self.now else self.since


def check_without_changes(args: Mapping[str, str]) -> None:
    """`_since` and `_wait` mean something only with `_changes`: 400 elsewhere."""
    for name in ("_since", "_wait"):
        if name in args:
            raise InvalidOption(f"{name} applies only with _changes.")


def read(store: Store, key: str, since: str | None, request: ChangeRequest) -> ChangePage:
    return store.changes(key, since, request.limit)


def wait_for(
    store: Store,
    hub: ChangeHub | None,
    key: str,
    request: ChangeRequest,
    since: str | None,
    longest: int = MAX_WAIT,
    environ: dict[str, Any] | None = None,
) -> ChangePage:
    """The events after `since`; with `_wait`, waiting until one arrives or the time is up (at
    most `longest` seconds), when the page is empty and its sequence `since`'s. Behind the
    gateway (`environ` says it waits on its event loop) the wait is handed to it instead
    (environ[DEFERRED]) and the request runs again after it, with the same deadline."""
    page = read(store, key, since, request)
    if not request.wait or hub is None or page.changes or page.more:
        return page
    environ = environ if environ is not None else {}
    deadline = environ.setdefault(DEADLINE, time.monotonic() + min(request.wait, longest))
    stream, _ = store.streams.names(key)
    if environ.get(ASYNC_WAITS):
        left = deadline - time.monotonic()
        if left > 0:
            hub.check_room()
            environ[DEFERRED] = Deferred(hub, stream, page.seq, left)
        return page
    with hub.waiting():
        while not page.changes and not page.more:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            hub.wait(stream, page.seq, left)
            page = read(store, key, page.seq, request)
    return page


def shown(
    store: Store, checker: Access | None, page: ChangePage, with_entries: bool
) -> list[dict[str, Any]]:
    """The items of a page the caller may read (with auth on, R on each event's key: those it
    can't are skipped, the sequence still past them); with `e`, as the current entries."""
    changes = page.changes
    if checker is not None:
        readable = checker.readable({change.key for change in changes})
        changes = [change for change in changes if change.key in readable]
    if not with_entries:
        return items(changes)
    alive = sorted({change.key for change in changes if change.operation != "d"})
    current = {
        key: codec_json.loads_stored(raw) if raw is not None else None
        for key, raw in zip(alive, store.documents(alive), strict=True)
    }
    return items(changes, current)


def event_stream(
    store: Store,
    checker: Access | None,
    hub: ChangeHub,
    key: str,
    request: ChangeRequest,
    since: str | None,
    lasting: float,
    environ: dict[str, Any] | None = None,
    first: ChangePage | None = None,
) -> Iterator[bytes]:
    """Server-Sent Events: `retry:`, then each item as `id: <seq>`, `event: <kind>`,
    `data: <item JSON>`, a `: ping` comment every 15 s without events, for `lasting` seconds;
    the client reconnects with `Last-Event-ID`. Holds one of the hub's waiter places. Behind
    the gateway, each wait is handed to it (environ[DEFERRED], then an empty chunk). `first`,
    the page after `since` read before the answer began (so a 410 is an answer, not a broken
    stream), is sent first."""
    deferring = environ is not None and environ.get(ASYNC_WAITS)
    end = time.monotonic() + lasting
    stream, _ = store.streams.names(key)
    with hub.waiting(checked=False):  # the caller checked for room before answering
        yield f"retry: {RETRY_MS}\n\n".encode()
        seq = since
        pinged = time.monotonic()
        while True:
            page = first if first is not None else read(store, key, seq, request)
            first = None
            for item in shown(store, checker, page, request.entries):
                category = item["category"][-1]
                yield (
                    f"id: {category['___label']}\nevent: {category['___term']}\n"
                    f"data: {codec_json.dumps_document(item).decode()}\n\n"
                ).encode()
                pinged = time.monotonic()
            seq = page.seq
            if page.more:
                continue
            now = time.monotonic()
            if now >= end:
                return
            if now - pinged >= PING_SECONDS:
                yield b": ping\n\n"
                pinged = now
            timeout = min(end - now, PING_SECONDS - (now - pinged))
            if deferring and environ is not None:
                environ[DEFERRED] = Deferred(hub, stream, seq or ZERO, timeout)
                yield b""
            else:
                hub.wait(stream, seq or ZERO, timeout)
