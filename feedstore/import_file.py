"""The file an import reads (importer.py): its format, whether it is whole, and its lines.

An export (JSON Lines, export.py) is read a line at a time from any byte offset, so an import can
resume; it is checked first, whole: its end line must be there and its checksum right. An Atom
feed or a vte.cx JSON body is read at once, as a request body is, by the codecs; its entries are
numbered as lines are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import orjson

from feedstore import account_lines, codec_json, codec_xml
from feedstore.errors import FeedstoreError
from feedstore.export import FORMAT_VERSION
from feedstore.fields import Limits
from feedstore.schema import Schema

CHUNK = 1 << 20  # the reads that check a file
NOT_A_LINE = "not an entry, counter, sequence, account or end line"
# The names that make a line something else than an entry (kind_of).
_NOT_ENTRY_NAMES = frozenset(("feedstore", "counter", "sequence", "deleted", *account_lines.KINDS))


class ImportRefused(Exception):
    """An import that can't start or stops: its message is for the user."""


@dataclass(slots=True)
class Record:
    """One line of an export (or one entry of a body): where it is, and what it holds."""

    line: int
    start: int  # byte offset of the line (entry index in a body)
    end: int  # where the next one starts
    item: Any
    raw: bytes
    problem: str | None = None  # the line isn't JSON

    @property
    def where(self) -> str:
        return f"line {self.line}"


@dataclass
class Source:
    """An import's input, checked: its format, header, hash and, for JSONL, its trailer."""

    path: Path
    kind: str  # "jsonl" | "atom" | "json"
    size: int
    sha256: str
    header: dict[str, Any] | None = None
    problem: str | None = None  # a missing trailer or a wrong checksum

    def records(
        self, start: int, first_line: int, limits: Limits, schema: Schema | None
    ) -> Iterator[Record]:
        """The records from byte offset (or entry index) `start`, numbered from `first_line`."""
        if self.kind == "jsonl":
            yield from _jsonl_records(self.path, start, first_line)
        else:
            yield from _body_records(self.path, self.kind, start, limits, schema)


def open_source(path: Path) -> Source:
    """Read `path` once: its format, its SHA-256, and whether a JSONL export is whole."""
    size = path.stat().st_size
    whole = hashlib.sha256()
    with path.open("rb") as file:
        first = file.read(1 << 16)
    text = first.lstrip()
    if text.startswith(b"<"):
        kind = "atom"
    else:
        head = first.split(b"\n", 1)[0]
        try:
            header = orjson.loads(head)
        except orjson.JSONDecodeError:
            header = None
        is_export = isinstance(header, dict) and header.get("feedstore") == "export"
        kind = "jsonl" if is_export else "json"
    if kind != "jsonl":
        with path.open("rb") as file:
            for chunk in iter(lambda: file.read(CHUNK), b""):
                whole.update(chunk)
        return Source(path, kind, size, whole.hexdigest())
    return _checked_jsonl(path, size)


def _checked_jsonl(path: Path, size: int) -> Source:
    """The header, the hash of the whole file, and the trailer checked against the hash of the
    lines before it: one pass in large reads, since that hash is the whole file's up to the
    last line, where a single hash gives it on the way."""
    with path.open("rb") as file:
        header: dict[str, Any] = orjson.loads(file.readline())  # open_source read it
        start = _last_line_start(file, size)
        file.seek(start)
        last = file.read()
    hashed = hashlib.sha256()
    for chunk in _chunks(path, start):
        hashed.update(chunk)
    lines = hashed.hexdigest()  # a hash object goes on after a digest
    hashed.update(last)
    source = Source(path, "jsonl", size, hashed.hexdigest(), header)
    assert header is not None
    if header.get("version") != FORMAT_VERSION:
        source.problem = (
            f"line 1: export format version {header.get('version')} is not {FORMAT_VERSION}"
        )
        return source
    try:
        trailer = orjson.loads(last) if start > 0 and last.endswith(b"\n") else None
    except orjson.JSONDecodeError:
        trailer = None
    if not isinstance(trailer, dict) or trailer.get("feedstore") != "end":
        source.problem = f"{path} has no end line: it was cut short (--partial imports it anyway)"
    elif trailer.get("sha256") != lines:
        count = 1 + sum(chunk.count(b"\n") for chunk in _chunks(path, start))  # the end line's
        source.problem = (
            f"line {count}: the checksum doesn't match the lines before it: the file was changed "
            "or cut short (--partial imports it anyway)"
        )
    return source


def _chunks(path: Path, end: int) -> Iterator[bytes]:
    """The bytes of `path` up to `end`, in large reads."""
    with path.open("rb") as file:
        while file.tell() < end:
            yield file.read(min(CHUNK, end - file.tell()))


def _last_line_start(file: IO[bytes], size: int) -> int:
    """Where the last line of a file of `size` bytes starts (a newline ending the file ends
    that line), read backwards from the end."""
    position = size - 1
    while position > 0:
        step = min(1 << 16, position)
        file.seek(position - step)
        found = file.read(step).rfind(b"\n")
        if found >= 0:
            return position - step + found + 1
        position -= step
    return 0


def _jsonl_records(path: Path, start: int, first_line: int) -> Iterator[Record]:
    with path.open("rb") as file:
        file.seek(start)
        offset, number = start, first_line
        for data in file:
            end = offset + len(data)
            try:
                item = orjson.loads(data)
                yield Record(number, offset, end, item, data)
            except orjson.JSONDecodeError as e:
                yield Record(number, offset, end, None, data, f"not JSON: {e}")
            offset, number = end, number + 1


def _body_records(
    path: Path, kind: str, start: int, limits: Limits, schema: Schema | None
) -> Iterator[Record]:
    """The entries of a whole Atom feed or vte.cx JSON body (read at once, as a request's)."""
    body = path.read_bytes()
    loose = replace(limits, max_nodes=max(limits.max_nodes, len(body)))
    try:
        if kind == "atom":
            documents = codec_xml.loads_documents(body, loose, schema)
        else:
            documents = codec_json.loads_documents(body, loose)
    except FeedstoreError as e:
        raise ImportRefused(f"{path}: {e.message}") from e
    for index in range(start, len(documents)):
        document = documents[index]
        yield Record(index + 1, index, index + 1, document, orjson.dumps(document) + b"\n")


class InvalidLine(FeedstoreError):
    """A line that is no entry, counter, sequence or end line, or lacks what it needs."""

    status = 400
    code = "invalid_line"

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message, key=key)


def check_line(item: dict[str, Any], what: str) -> tuple[str, int]:
    """The key and value of a counter, sequence or deleted line; _Bad when it has none."""
    key = item.get(what)
    value = item.get("revision", 0) if what == "deleted" else item.get("value")
    if not isinstance(key, str) or not key.startswith("/") or type(value) is not int:
        named = key if isinstance(key, str) else None
        raise InvalidLine(named, f"a {what} line needs a key and an integer value")
    return key, value


def kind_of(item: Any) -> str:
    """What a JSONL line is: entry, counter, sequence, deleted, header, end, or unknown."""
    if not isinstance(item, dict):
        return "unknown"
    if _NOT_ENTRY_NAMES.isdisjoint(item):
        return "entry"  # the usual line, at one lookup per name
    if "feedstore" in item:
        return {"export": "header", "end": "end", "catch-up": "catch-up"}.get(
            item["feedstore"], "unknown"
        )
    for name in ("counter", "sequence", "deleted"):
        if name in item:
            return name
    if account_lines.kind_of(item) is not None:
        return "account"
    return "entry"
