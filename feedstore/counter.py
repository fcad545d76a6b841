"""vte.cx counter requests (API.md §8): what each counter option does to a key's counter, and
the title it answers.

Flask-free: the view refuses what a counter request must not carry (a body, preconditions, a
second counter option) and hands over the option, its value and the range a PUT sent.
"""

from __future__ import annotations

import re

from feedstore.counter_range import CounterRange
from feedstore.errors import InvalidOption
from feedstore.store import Store

MAX_ALLOCATE = 500  # most numbers one `_allocids` allocates, vte.cx's default `_allocids.limit`
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")


def answer(
    store: Store, key: str, option: str, value: str, writing: bool, sent_range: str | None
) -> str:
    """Run a counter request (`writing`: a PUT) and return the title of its answer."""
    if option == "_allocids":
        return ",".join(map(str, store.allocate_ids(key, allocate_count(value))))
    if option == "_rangeids":
        span = store.counter_range(key)
        if writing:
            span = CounterRange.parse(sent_range) if sent_range else None
            store.set_counter_range(key, span)
        return str(span) if span is not None else ""
    if option == "_setids":
        return str(store.set_ids(key, whole_number(option, value)))
    if option == "_addids" and writing:
        return str(store.add_ids(key, whole_number(option, value)))
    if option == "_addids":
        check_read_amount(value)
    return str(store.get_ids(key))


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
