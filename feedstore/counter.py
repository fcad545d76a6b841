"""vte.cx counter requests (API.md §8): what each counter option does to a key's counter, and
the title it answers.

Flask-free: the view refuses what a counter request must not carry (a body, preconditions, a
second counter option) and hands over the option, its value and the range a PUT sent.
"""

from __future__ import annotations

import re
from typing import Any

from feedstore.counter_range import CounterRange
from feedstore.errors import InvalidOption
from feedstore.idempotency import Lease
from feedstore.store import Store

MAX_ALLOCATE = 500  # most numbers one `_allocids` allocates, vte.cx's default `_allocids.limit`
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")


def answer(
    store: Store,
    key: str,
    option: str,
    value: str,
    writing: bool,
    sent_range: str | None,
    lease: Lease | None = None,
) -> str:
    """Run a counter request (`writing`: a PUT) and return the title of its answer. With a
    `lease` (an Idempotency-Key on a PUT), the change and its answer commit together: the
    lease's answer is made from the store's result, through `title`."""
    if option == "_allocids":
        return title(store.allocate_ids(key, allocate_count(value), lease))
    if option == "_rangeids":
        span = store.counter_range(key)
        if writing:
            span = CounterRange.parse(sent_range) if sent_range else None
            store.set_counter_range(key, span, lease)
        return title(span)
    if option == "_setids":
        return title(store.set_ids(key, whole_number(option, value), lease))
    if option == "_addids" and writing:
        return title(store.add_ids(key, whole_number(option, value), lease))
    if option == "_addids":
        check_read_amount(value)
    return title(store.get_ids(key))


def title(result: Any) -> str:
    """The title answering a counter's value, numbers allocated (`4,5,6`) or range (`""`: none)."""
    if isinstance(result, list):
        return ",".join(map(str, result))
    return "" if result is None else str(result)


def whole_number(option: str, value: str) -> int:
    """The amount or value of `_addids` and `_setids`: at most 18 digits, optionally negative."""
    if not _WHOLE_NUMBER.fullmatch(value):
        raise InvalidOption(f"{option} must be a whole number: {option}={value}")
    return int(value)


def allocate_count(text: str) -> int:
    """How many numbers `_allocids=<n>` asks for: 1 to MAX_ALLOCATE."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_ALLOCATE):
        raise InvalidOption(
            f"_allocids must be a number from 1 to {MAX_ALLOCATE}: _allocids={text}"
        )
    return int(text)


def check_read_amount(text: str) -> None:
    """`GET ?_addids` reads a counter, as vte.cx does by adding 0: any other amount is 400."""
    if text not in ("", "0"):
        raise InvalidOption(f"_addids on GET reads: it must be 0: _addids={text}")
