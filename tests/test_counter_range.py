"""Counter ranges (API.md §8, `_rangeids`): parsing, checking, wrapping, as vte.cx has them."""

from __future__ import annotations

import pytest

from feedstore.counter_range import CounterRange
from feedstore.errors import InvalidOption


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1-10", CounterRange(1, 10)),
        ("1-10!", CounterRange(1, 10, stop=True)),
        ("5", CounterRange(5)),
        ("-5--1", CounterRange(-5, -1)),
        ("0-999999999999999999", CounterRange(0, 999_999_999_999_999_999)),
    ],
)
def test_a_range_reads_as_vtecx_writes_it(text: str, expected: CounterRange) -> None:
    assert CounterRange.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["", "a", "1-", "1-10!!", "5!", "1 - 10", "10-1", "3-3", "1-1e3"])
def test_a_bad_range_is_refused(text: str) -> None:
    with pytest.raises(InvalidOption, match=r"^Range is invalid: "):
        CounterRange.parse(text)


def test_a_cycling_range_answers_from_min_again_and_a_stopping_one_refuses() -> None:
    cycling, stopping = CounterRange(1, 3), CounterRange(1, 3, stop=True)
    assert [cycling.shown(value) for value in range(1, 8)] == [1, 2, 3, 1, 2, 3, 1]
    cycling.check(7, "/k")
    with pytest.raises(InvalidOption, match=r"Counter is out of its range 1-3!: /k would be 4"):
        stopping.check(4, "/k")
    with pytest.raises(InvalidOption, match="out of its range"):
        cycling.check(0, "/k")
    with pytest.raises(InvalidOption, match="out of its range"):
        cycling.check(4, "/k", setting=True)
