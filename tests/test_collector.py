"""collector.py: the garbage collector's policy for serve workers and import/export."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from feedstore import collector


@pytest.fixture
def collector_as_it_was() -> Iterator[tuple[int, int, int]]:
    threshold = gc.get_threshold()
    yield threshold
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_the_policy_freezes_what_lives_and_collects_less_often(
    collector_as_it_was: tuple[int, int, int],
) -> None:
    collector.settle_garbage_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (collector.GC_THRESHOLD, *collector_as_it_was[1:])


def test_a_command_leaves_the_collector_as_it_found_it(
    collector_as_it_was: tuple[int, int, int],
) -> None:
    with collector.settled():
        assert gc.get_threshold()[0] == collector.GC_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == collector_as_it_was
    assert gc.get_freeze_count() == 0


def test_a_failing_command_leaves_it_too(collector_as_it_was: tuple[int, int, int]) -> None:
    with pytest.raises(RuntimeError), collector.settled():
        raise RuntimeError("the import failed")
    assert gc.get_threshold() == collector_as_it_was and gc.get_freeze_count() == 0


def test_a_pause_stops_collection_until_the_last_overlapping_one_ends() -> None:
    assert gc.isenabled()
    first, second = collector.paused(), collector.paused()
    first.__enter__()
    assert not gc.isenabled()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the other request still runs
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_pause_leaves_a_collector_that_was_off_off() -> None:
    gc.disable()
    try:
        with pytest.raises(RuntimeError), collector.paused():
            raise RuntimeError("the request failed")
        assert not gc.isenabled()
    finally:
        gc.enable()
