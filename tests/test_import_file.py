"""The file an import reads (import_file.py): a JSONL export's hash, lines and end line, checked
in one pass of large reads, agree with reading it line by line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedstore import import_file
from feedstore.import_file import open_source

HEADER = orjson.dumps({"feedstore": "export", "version": 1, "root": "/", "schema": None}) + b"\n"
# Lines of any length, some of them longer than the reads that look for the last line.
LINES = st.lists(
    st.one_of(
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
        st.integers(1, 3 << 16).map(lambda n: b"x" * n),
    ),
    max_size=6,
)


def line_by_line(data: bytes) -> tuple[str, str | None]:
    """What the check finds, read the plain way: the whole file's hash and the problem."""
    parts = data.split(b"\n")  # lines end at newlines only (bytes.splitlines knows others)
    lines = [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    last = lines[-1]
    before = hashlib.sha256(b"".join(lines[:-1])).hexdigest()
    try:
        trailer = orjson.loads(last) if len(lines) > 1 and last.endswith(b"\n") else None
    except orjson.JSONDecodeError:
        trailer = None
    if not isinstance(trailer, dict) or trailer.get("feedstore") != "end":
        problem: str | None = "no end line"
    elif trailer.get("sha256") != before:
        problem = f"line {len(lines)}: the checksum doesn't match"
    else:
        problem = None
    return hashlib.sha256(data).hexdigest(), problem


@given(
    lines=LINES,
    ending=st.sampled_from(["end", "wrong end", "no newline", "none"]),
)
def test_one_pass_finds_what_reading_line_by_line_finds(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], ending: str
) -> None:
    body = HEADER + b"".join(line + b"\n" for line in lines)
    digest = hashlib.sha256(body).hexdigest()
    trailer = orjson.dumps({"feedstore": "end", "sha256": digest})
    data = {
        "end": body + trailer + b"\n",
        "wrong end": body + trailer.replace(digest.encode(), b"0" * 64) + b"\n",
        "no newline": body + trailer,
        "none": body,
    }[ending]
    path = tmp_path_factory.mktemp("file") / "in.jsonl"
    path.write_bytes(data)
    source = open_source(path)
    expected_hash, expected_problem = line_by_line(data)
    assert source.kind == "jsonl" and source.size == len(data)
    assert source.sha256 == expected_hash
    if expected_problem is None:
        assert source.problem is None
    else:
        assert source.problem is not None and expected_problem in source.problem


def test_a_file_read_in_many_chunks_hashes_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [orjson.dumps({"id": f"/k{i},1", "title": "x" * i}) + b"\n" for i in range(300)]
    body = HEADER + b"".join(lines)
    trailer = orjson.dumps({"feedstore": "end", "sha256": hashlib.sha256(body).hexdigest()})
    path = tmp_path / "in.jsonl"
    path.write_bytes(body + trailer + b"\n")
    monkeypatch.setattr(import_file, "CHUNK", 1000)  # reads that split lines
    source = open_source(path)
    assert source.problem is None
    assert source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
