"""The export/import bench: both commands run over the seeded entries, their figures reported."""

from __future__ import annotations

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
