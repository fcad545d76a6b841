"""The query options of the /d/ API: which one each method takes, in one table (API.md §4.2).

A query parameter of one letter, or one starting with `_`, is an option, never a feed filter.
`check` refuses, before a view runs, every option that is not in the table for the request's
method, so an option feedstore doesn't implement is a 400 naming it, never silently ignored.
To add an option, add a row here (and describe it in docs/api.md and the OpenAPI document).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from feedstore.errors import InvalidOption

GET = frozenset({"GET", "HEAD"})
ANY = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})


class Kind(Enum):
    FORMAT = "format"  # how the answer is written, on every method
    READ = "read"  # what a read returns
    COUNTER = "counter"  # a counter request instead of an entry request (API.md §8)
    WRITE = "write"  # how a write applies
    ACCOUNT = "account"  # the caller's session and identity, at /d/ only (authentication.py)


@dataclass(frozen=True)
class Option:
    """One option and the methods that take it."""

    name: str
    methods: frozenset[str]
    kind: Kind


TABLE: tuple[Option, ...] = (
    Option("x", ANY, Kind.FORMAT),
    Option("j", ANY, Kind.FORMAT),
    # vte.cx clients (vtecxnext) add `e` to POST, PUT and DELETE URLs too, where it means nothing.
    Option("e", ANY, Kind.READ),
    Option("f", GET, Kind.READ),
    Option("c", GET, Kind.READ),
    Option("l", GET, Kind.READ),
    Option("p", GET, Kind.READ),
    Option("s", GET, Kind.READ),
    Option("n", GET, Kind.READ),
    Option("_nometa", GET, Kind.READ),
    Option("_pagination", frozenset({"GET"}), Kind.READ),
    Option("_access", GET, Kind.READ),  # the caller's rights on the key (API.md §16.5)
    Option("_history", GET, Kind.READ),  # an entry's revisions (history.py)
    Option("_changes", GET, Kind.READ),  # the change feed of a subtree (changes.py)
    Option("_since", GET, Kind.READ),
    Option("_wait", GET, Kind.READ),
    Option("_getids", GET, Kind.COUNTER),
    Option("_addids", frozenset({"GET", "HEAD", "PUT"}), Kind.COUNTER),
    Option("_setids", frozenset({"PUT"}), Kind.COUNTER),
    Option("_allocids", frozenset({"GET", "PUT"}), Kind.COUNTER),
    Option("_rangeids", frozenset({"GET", "HEAD", "PUT"}), Kind.COUNTER),
    # The revision a DELETE expects, or the one a GET reads (`?e&r=3`, from the history).
    Option("r", frozenset({"GET", "HEAD", "DELETE"}), Kind.WRITE),
    Option("_rf", frozenset({"DELETE"}), Kind.WRITE),
    Option("_upsert", frozenset({"PATCH"}), Kind.WRITE),
    Option("_addalias", frozenset({"PUT"}), Kind.WRITE),
    Option("_removealias", frozenset({"PUT"}), Kind.WRITE),
    Option("_clearfolder", frozenset({"DELETE"}), Kind.WRITE),
    Option("_bulk", frozenset({"PUT"}), Kind.WRITE),
    Option("_merge", frozenset({"PUT", "PATCH"}), Kind.WRITE),
    Option("_revert", frozenset({"PUT"}), Kind.WRITE),
    Option("_bulkserial", frozenset({"PUT"}), Kind.WRITE),
    # vte.cx's asynchronous jobs: known, and refused on every method with a message of its own
    # (bulk.check_options), since feedstore has no jobs to queue.
    Option("_async", ANY, Kind.WRITE),
    Option("_login", GET | {"POST"}, Kind.ACCOUNT),
    Option("_logout", GET | {"POST"}, Kind.ACCOUNT),
    Option("_uid", GET, Kind.ACCOUNT),
    Option("_whoami", GET, Kind.ACCOUNT),
)
BY_NAME = {option.name: option for option in TABLE}
COUNTERS = tuple(option.name for option in TABLE if option.kind is Kind.COUNTER)


def is_option(name: str) -> bool:
    """One-letter parameters and those starting with `_` are options, never filters."""
    return len(name) == 1 or name.startswith("_")


def check(method: str, names: Iterable[str]) -> None:
    """400 `invalid_option` for the first option the table doesn't give `method`.

    OPTIONS (a CORS preflight carries the URL of the request it asks about) is not checked.
    """
    if method not in ANY:
        return
    for name in names:
        if not is_option(name):
            continue
        option = BY_NAME.get(name)
        if option is None:
            raise InvalidOption(f"Unknown option: {name}")
        if method not in option.methods:
            raise InvalidOption(f"Option does not apply to {method}: {name}")


def counter_option(names: Iterable[str]) -> str | None:
    """The counter option a request carries, if any; two of them are 400."""
    given = set(names)
    if not given:
        return None
    found = [name for name in COUNTERS if name in given]
    if len(found) > 1:
        raise InvalidOption(f"{found[0]} and {found[1]} can't be combined.")
    return found[0] if found else None
