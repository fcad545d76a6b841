"""The export/import bench: both commands run over the seeded entries, their figures reported."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from feedstore.bench import report, runner, transfer


def test_export_and_restore_are_timed_over_every_entry(tmp_path: Path) -> None:
    timings = transfer.measure(tmp_path, 300)
    assert [(t.operation, t.entries) for t in timings] == [("export", 301), ("import-restore", 301)]
    assert all(t.seconds > 0 and t.peak_rss_bytes > 0 for t in timings)
    lines = transfer.lines(timings)
    assert lines[1] == "export and import, the feedstore command, ~1 KB entries:"
    assert lines[2].startswith("  export                 301 entries")
    as_json = report.as_json(report.Report([], {}, None, [], {}, transfers=timings))
    assert [t["operation"] for t in as_json["transfers"]] == ["export", "import-restore"]


def test_the_transfer_size_is_an_option() -> None:
    assert runner.parse_options([]).transfer_entries == transfer.ENTRIES
    assert runner.parse_options(["--transfer-entries", "1000000"]).transfer_entries == 1_000_000
    assert runner.parse_options(["--transfer-entries", "0"]).transfer_entries == 0


def test_a_commands_peak_rss_is_its_own_not_the_bench_processs() -> None:
    """Linux carries a parent's ru_maxrss into its child across fork and exec; VmHWM is the
    child's own."""
    held = bytearray(300 * 2**20)  # the bench process, big
    child = subprocess.Popen(
        [sys.executable, "-c", "b = bytearray(100 * 2**20); import time; time.sleep(2)"]
    )
    try:
        peak = 0
        while child.poll() is None:
            peak = max(peak, transfer.high_water_mark(child.pid))
            time.sleep(0.02)
    finally:
        child.kill()
    assert 100 * 2**20 <= peak < 250 * 2**20
    assert len(held) == 300 * 2**20
