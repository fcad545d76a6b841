"""vte.cx counters' ranges (`_rangeids`, API.md §8): parsing, the numbers a range allows, wrapping.

A range is `<min>-<max>` (the value cycles back to min after max), `<min>-<max>!` (it stops at
max: going past is 400) or `<min>` (no max). Setting a range sets the counter to min - 1, so the
next `_addids=1` gives min. As in vte.cx the stored value is not wrapped; the value answered is.
Pure functions: the Store keeps the range next to the counter and calls these inside its
transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from feedstore.errors import InvalidOption

_RANGE = re.compile(r"(-?[0-9]{1,18})(?:-(-?[0-9]{1,18})(!?))?")


@dataclass(frozen=True)
class CounterRange:
    """The numbers a counter gives: `low` to `high` (None: no end), cycling unless `stop`."""

    low: int
    high: int | None = None
    stop: bool = False

    @classmethod
    def parse(cls, text: str) -> CounterRange:
        """A range as `_rangeids` sends it; 400 `invalid_option` naming it when it isn't one."""
        match = _RANGE.fullmatch(text)
        if match is None:
            raise InvalidOption(
                f"Range is invalid: {text} (expected <min>, <min>-<max> or <min>-<max>!)"
            )
        low, high = int(match[1]), (int(match[2]) if match[2] is not None else None)
        if high is not None and high <= low:
            raise InvalidOption(f"Range is invalid: {text} (the maximum must be above the minimum)")
        return cls(low, high, match[3] == "!")

    def __str__(self) -> str:
        if self.high is None:
            return str(self.low)
        return f"{self.low}-{self.high}{'!' if self.stop else ''}"

    def check(self, value: int, key: str, setting: bool = False) -> None:
        """400 when a counter can't take `value`: below min, or past max unless it cycles (a set
        value must be within the range either way)."""
        past_end = self.high is not None and value > self.high
        if value < self.low or (past_end and (self.stop or setting)):
            raise InvalidOption(f"Counter is out of its range {self}: {key} would be {value}")

    def shown(self, value: int) -> int:
        """The value answered for a stored value: past max, a cycling range starts again at min."""
        if self.high is not None and value > self.high and not self.stop:
            return self.low + (value - self.low) % (self.high - self.low + 1)
        return value
