"""scripts/instructions without valgrind: each scenario's requests succeed on a real Redis (a
request answered otherwise stops the run), and callgrind's total is read from its file."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from feedstore.bench import instructions
from feedstore.keys import KeyScheme


@pytest.mark.parametrize("name", ["feedstore-put", "baseline-put", "feedstore-put100"])
def test_a_scenario_sends_its_revision_checked_requests(real_redis: redis.Redis, name: str) -> None:
    scenario = instructions.SCENARIOS[name]
    instructions.run(scenario, real_redis, requests=2, send=2, profile=False)
    if name == "feedstore-put100":
        # Seeded at 1, then the warm-up and the two requests each wrote one revision.
        stored = KeyScheme().revision_key("/bench/b00099")
        assert real_redis.get(stored) == str(1 + instructions.WARMUP + 2).encode()


def test_a_stale_revision_stops_the_run(real_redis: redis.Redis) -> None:
    scenario = instructions.SCENARIOS["baseline-put100"]
    real_redis.set("b:r:/bench/b00000", 7)  # as if another writer had been there
    with pytest.raises(SystemExit, match="409"):
        instructions.run(scenario, real_redis, requests=1, send=1, profile=False)


def test_the_total_is_read_from_callgrinds_file(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text("events: Ir\nfl=(1) x\nfn=(1) f\n0 5\nsummary: 123456\ntotals: 123456\n")
    assert instructions._total(out) == 123456
