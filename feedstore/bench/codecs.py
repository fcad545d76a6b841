"""The codec micro-benchmark: the same stored entries through codec_json and codec_xml, in-process.

No server and no wrk: this times only the encoding and decoding that an XML request adds, which
a throughput ratio blurs with everything else a request costs.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from feedstore import codec_json, codec_xml
from feedstore.bench.scenarios import entry
from feedstore.entry import stored_document, timestamp
from feedstore.fields import Limits

ENTRIES = 100
# The bound: XML encoding costs no more than this multiple of JSON encoding.
ENCODING_TARGET = 2.0


@dataclass(frozen=True)
class CodecTiming:
    """One operation in both formats: microseconds per entry, best of the repeats."""

    operation: str
    json_us: float
    xml_us: float
    target: float | None  # the most XML may cost, as a multiple of JSON; None: no target

    @property
    def ratio(self) -> float:
        return round(self.xml_us / self.json_us, 1) if self.json_us else 0.0

    @property
    def met(self) -> bool:
        return self.target is None or self.ratio <= self.target


def stored_entries(count: int = ENTRIES) -> list[dict[str, Any]]:
    """`count` of the bench's ~1 KB entries as the store keeps and serves them (id, author, ...)."""
    now = timestamp()
    documents = []
    for number in range(count):
        key = f"/bench/c{number:03d}"
        documents.append(
            stored_document(
                key, 1, entry(key), published=now, updated=now, created_by="bench", updated_by=None
            )
        )
    return documents


def measure(count: int = ENTRIES, repeat: int = 5, min_seconds: float = 0.2) -> list[CodecTiming]:
    """Encode the stored entries, encode them from storage as a GET does, and decode them."""
    documents = stored_entries(count)
    raw = [codec_json.dumps_document(document) for document in documents]
    json_body, xml_body = codec_json.dumps(documents), codec_xml.dumps(documents)
    limits = Limits()
    operations: list[tuple[str, Callable[[], object], Callable[[], object], float | None]] = [
        (
            "encode (dumps)",
            lambda: codec_json.dumps(documents),
            lambda: codec_xml.dumps(documents),
            ENCODING_TARGET,
        ),
        (
            "encode stored (GET)",
            lambda: codec_json.dumps_stored(raw),
            lambda: codec_xml.dumps_stored(raw),
            None,
        ),
        (
            "decode (loads)",
            lambda: codec_json.loads(json_body, limits),
            lambda: codec_xml.loads(xml_body, limits),
            None,
        ),
    ]
    return [
        CodecTiming(
            name,
            _microseconds_per_entry(as_json, count, repeat, min_seconds),
            _microseconds_per_entry(as_xml, count, repeat, min_seconds),
            target,
        )
        for name, as_json, as_xml, target in operations
    ]


def _microseconds_per_entry(
    operation: Callable[[], object], count: int, repeat: int, min_seconds: float
) -> float:
    """The best of `repeat` timings, each of enough calls to last `min_seconds`."""
    timer = timeit.Timer(operation)
    calls = 1
    while timer.timeit(calls) < min_seconds:
        calls *= 2
    best = min(timer.repeat(repeat, calls))
    return round(1e6 * best / calls / count, 3)
