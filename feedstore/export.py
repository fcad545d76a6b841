"""`feedstore export`: a tree of entries, its counters and numbering, as JSON Lines (API.md §20).

The file is a header line, one line per stored entry (its stored JSON, exactly what `?e` answers),
one line per counter and numbering sequence, and a trailer with the SHA-256 of every line before
it, so a file cut short is told from a whole one:

    {"feedstore":"export","version":1,"root":"/","seq":null,"exported":"…","schema":null}
    {"id":"/11,3","link":[{"___href":"/11","___rel":"self"}],…}
    {"counter":"/hits","value":12}
    {"sequence":"/11","value":40}
    {"feedstore":"end","entries":1234,"seq":null,"sha256":"…"}

Entries come depth first, each parent before its children and children in key order (the order
of their children sets), which is the lexicographic order of their segments: an export resumed
after key K carries on with what follows K in that order. The walk reads a page of children with
one ZRANGEBYLEX and their documents and child counts in one pipelined round trip, so memory holds
a page per level, whatever the size of the store. Without the change feed, entries written during
the walk may or may not be in the file (`seq` is null): stop writers for an exact copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import orjson
import redis

from feedstore import codec_xml, partitions
from feedstore.changes import ZERO, ChangeStreams
from feedstore.entry import ROOT, parent_of, timestamp
from feedstore.errors import InvalidOption
from feedstore.keys import SCHEMA_KEY, KeyScheme

FORMAT_VERSION = 1
PAGE = 1000
# The kinds of keys that carry a counter of a key, and the line each is exported as.
COUNTER_KINDS = {"ids": "counter", "n": "sequence"}


# KEYS: n document keys, then the n children sets: the n documents, then the n set sizes.
READ_PAGE = """
local n = #KEYS / 2
local found = redis.call('MGET', unpack(KEYS, 1, n))
for i = 1, n do
  found[n + i] = redis.call('ZCARD', KEYS[n + i])
end
return found
"""


class ExportError(Exception):
    """A file export --resume can't carry on (not an export, or another tree's)."""


@dataclass
class Progress:
    """Where an export stands: the entries written, the last entry's key, the lines' hash."""

    entries: int = 0
    last: str | None = None
    digest: Any = None
    done: bool = False
    since: str | None = None  # the change feed's sequence before the walk (the header's seq)
    seq: str | None = None  # the sequence the finished file stands at (the end line's)

    def __post_init__(self) -> None:
        if self.digest is None:
            self.digest = hashlib.sha256()


def in_tree(root: str, key: str) -> bool:
    """Whether `key` is `root` or below it."""
    return root == ROOT or key == root or key.startswith(root + "/")


class Exporter:
    """Reads a tree of a store's Redis in export order (single Redis or Redis Cluster)."""

    def __init__(self, client: Any, keys: KeyScheme, page: int = PAGE) -> None:
        self.client = client
        self.keys = keys
        self.page = page  # children read per round trip
        self.cluster = isinstance(client, redis.RedisCluster)
        # On a single Redis, a page's documents and child counts come from one script: a
        # thousand ZCARDs in a pipeline cost the client and the server more than the documents.
        self.scripted = not self.cluster
        self._read_page: Any = client.register_script(READ_PAGE) if self.scripted else None

    def entries(self, root: str, after: str | None = None) -> Iterator[tuple[str, bytes]]:
        """Every entry of the tree at `root` (itself included), depth first, children in key
        order; with `after`, only those that come after that key."""
        if after is None:
            [raw] = self._documents([root])
            if raw is not None:
                yield root, raw
            yield from self._below(root, None)
            return
        if not in_tree(root, after) or after == root:
            yield from self._below(root, None if after == root else after)
            return
        # The path from root down to `after`: each level carries on after the key on it.
        path = [after]
        while path[-1] != root and parent_of(path[-1]) != root:
            path.append(parent_of(path[-1]))
        for resumed in path:  # deepest first: `after`'s children, then what follows each level
            if resumed == after:
                yield from self._below(after, None)
            yield from self._below(parent_of(resumed), resumed)

    def _below(self, parent: str, after: str | None) -> Iterator[tuple[str, bytes]]:
        """The entries below `parent` whose child of `parent` comes after `after`."""
        name = self.keys.children_key(parent)
        start = b"-" if after is None else b"(" + after.encode()
        while True:
            found = self.client.zrangebylex(name, start, b"+", start=0, num=self.page)
            page = cast(list[bytes], found)
            if not page:
                return
            children = [member.decode() for member in page]
            documents, counts = self._page(children)
            for key, raw, count in zip(children, documents, counts, strict=True):
                # No document: an alias (it travels in its entry's links), or, on a cluster, a
                # deleted partition root its parent's set still names.
                if raw is None:
                    continue
                yield key, raw
                if count:
                    yield from self._below(key, None)
            if len(page) < self.page:
                return
            start = b"(" + page[-1]

    def _page(self, children: list[str]) -> tuple[list[bytes | None], list[int]]:
        """The documents of `children` and the sizes of their children sets: one round trip."""
        keys = self.keys
        if self.cluster:
            documents = partitions.read_each(self.client, list(map(keys.document_key, children)))
            with self.client.pipeline(transaction=False) as pipe:
                for key in children:
                    pipe.zcard(keys.children_key(key))
                return documents, pipe.execute()
        names = [*map(keys.document_key, children), *map(keys.children_key, children)]
        if self.scripted:
            try:
                found = self._read_page(keys=names)
            except redis.ResponseError:  # no scripting here (fakeredis without Lua)
                self.scripted = False
            else:
                return found[: len(children)], found[len(children) :]
        with self.client.pipeline(transaction=False) as pipe:
            pipe.execute_command("MGET", *names[: len(children)])
            for name in names[len(children) :]:
                pipe.execute_command("ZCARD", name)
            documents, *counts = pipe.execute()
        return documents, counts

    def _documents(self, keys: list[str]) -> list[bytes | None]:
        names = list(map(self.keys.document_key, keys))
        if self.cluster:
            return partitions.read_each(self.client, names)
        return cast(list[bytes | None], self.client.mget(names))

    def counters(self, root: str) -> Iterator[dict[str, Any]]:
        """A line for each counter (`_addids`, with its `_rangeids` range) and numbering
        sequence of a key in the tree at `root`, in key order per kind."""
        for kind, line in COUNTER_KINDS.items():
            found = sorted(self._scan(f"fs:{{*}}:{kind}:*", kind, root))
            for start in range(0, len(found), PAGE):
                keys = found[start : start + PAGE]
                values = self._values([self._name(kind, key) for key in keys])
                ranges = (
                    self._values(list(map(self.keys.counter_range_key, keys)))
                    if kind == "ids"
                    else [None] * len(keys)
                )
                for key, value, span in zip(keys, values, ranges, strict=True):
                    if value is None:
                        continue
                    item: dict[str, Any] = {line: key, "value": int(value)}
                    if span is not None:
                        item["range"] = span.decode()
                    yield item

    def _name(self, kind: str, key: str) -> str:
        return self.keys.tag(key) + kind + ":" + key

    def _scan(self, pattern: str, kind: str, root: str) -> Iterator[str]:
        marker = f"}}:{kind}:"
        if self.cluster:
            names = self.client.scan_iter(
                match=pattern, count=1000, target_nodes=redis.RedisCluster.PRIMARIES
            )
        else:
            names = self.client.scan_iter(match=pattern, count=1000)
        seen: set[str] = set()
        for name in names:
            key = name.decode().partition(marker)[2]
            if key.startswith("/") and in_tree(root, key) and key not in seen:
                seen.add(key)
                yield key

    def _values(self, names: list[str]) -> list[bytes | None]:
        if self.cluster:
            return partitions.read_each(self.client, names)
        return cast(list[bytes | None], self.client.mget(names))

    def schema(self) -> Any:
        raw = (
            partitions.read_one(self.client, SCHEMA_KEY)
            if self.cluster
            else self.client.get(SCHEMA_KEY)
        )
        return orjson.loads(raw) if raw is not None else None


def export_jsonl(
    exporter: Exporter,
    root: str,
    out: BinaryIO,
    *,
    progress: Callable[[int], None] = lambda done: None,
    resumed: Progress | None = None,
    extra: Callable[[], Iterator[dict[str, Any]]] | None = None,
    streams: ChangeStreams | None = None,
) -> Progress:
    """Write the export of the tree at `root` to `out`; with `resumed`, carry on a file that
    stopped after `resumed.last` (its lines so far hashed in `resumed.digest`). `extra` gives
    more lines before the trailer (users, with --users). With the change feed's `streams`, the
    walk is made consistent by a catch-up (catch_up); without, it is fuzzy (`seq` null)."""
    state = resumed or Progress()
    digest = state.digest

    def line(data: bytes) -> None:
        data += b"\n"
        digest.update(data)
        out.write(data)

    if resumed is None:
        state.since = start_of(streams, root)
        header = {
            "feedstore": "export",
            "version": FORMAT_VERSION,
            "root": root,
            "seq": state.since,
            "exported": timestamp(),
            "schema": exporter.schema(),
        }
        line(orjson.dumps(header))
    for key, raw in exporter.entries(root, state.last):
        line(raw)
        state.entries += 1
        state.last = key
        if state.entries % PAGE == 0:
            progress(state.entries)
    if streams is not None and state.since is not None:
        line(orjson.dumps({"feedstore": "catch-up", "since": state.since}))
        state.seq = catch_up(exporter, streams, root, state, line)
    progress(state.entries)
    for item in exporter.counters(root):
        line(orjson.dumps(item))
    for item in extra() if extra is not None else ():
        line(orjson.dumps(item))
    trailer = {
        "feedstore": "end",
        "entries": state.entries,
        "seq": state.seq,
        "sha256": digest.hexdigest(),
    }
    out.write(orjson.dumps(trailer) + b"\n")
    state.done = True
    return state


def start_of(streams: ChangeStreams | None, root: str) -> str | None:
    """Where the change feed of `root`'s tree stands before the walk (None: no feed to catch up
    with; on Redis Cluster, a tree above the partition depth, which no one stream holds)."""
    if streams is None:
        return None
    try:
        return streams.last(root)
    except InvalidOption:
        return None


def catch_up(
    exporter: Exporter,
    streams: ChangeStreams,
    root: str,
    state: Progress,
    line: Callable[[bytes], None],
) -> str:
    """Write again each entry of the tree written since the walk began, and a `deleted` line
    for each one deleted, until a read of the change feed finds nothing new; return the
    sequence the file then stands at. Every entry line written before a key's last change is
    followed by a line of that key read after it, so the file's last line of each key is its
    state at the returned sequence. ChangesExpired (410) when the feed dropped events the
    catch-up needed (the walk took longer than `changes_retention`)."""
    seq = state.since or ZERO
    while True:
        page = streams.read(root, seq, PAGE)
        changed = {change.key: change.revision for change in page.changes}  # the last one
        # Read with their ancestors in one MGET, the changed keys are a tree at one instant:
        # what is gone goes first (its subtree is gone too), then what is there, each parent
        # before its children, so an import never meets a child before its parent.
        keys = sorted({*changed, *(a for key in changed for a in ancestors(key, root))}, key=path)
        found = dict(zip(keys, exporter._documents(keys), strict=True))
        for key in keys:
            if found[key] is None and key in changed:
                line(orjson.dumps({"deleted": key, "revision": changed[key]}))
        for key in keys:
            raw = found[key]
            if raw is not None:
                line(raw)
                state.entries += 1
        if not page.changes and not page.more:
            return page.seq
        seq = page.seq


def ancestors(key: str, root: str) -> Iterator[str]:
    """The keys above `key` in the tree at `root`, the root included (but `/`)."""
    while key != root and (parent := parent_of(key)) != ROOT:
        yield parent
        if parent == root:
            return
        key = parent


def path(key: str) -> list[str]:
    """A key's segments: in their order, parents sort before their children."""
    return key.split("/")


def export_atom(exporter: Exporter, root: str, out: BinaryIO) -> int:
    """Write the tree at `root` as one Atom feed; return how many entries it holds."""
    return codec_xml.write_feed(
        out, (raw for _, raw in exporter.entries(root)), f"export of {root}"
    )


def resume_point(path: Path, root: str) -> tuple[Progress, int]:
    """Read an unfinished export: where it stopped and the length of its lines up to its last
    entry (the rest, counter lines and a cut-off line, is written again). ExportError for a
    file that isn't an export of `root`, or one already finished."""
    state = Progress()
    keep = 0
    with path.open("rb") as file:
        first = file.readline()
        try:
            header = orjson.loads(first)
        except orjson.JSONDecodeError as e:
            raise ExportError(f"{path} does not start with an export header") from e
        if not isinstance(header, dict) or header.get("feedstore") != "export":
            raise ExportError(f"{path} does not start with an export header")
        if header.get("root") != root:
            raise ExportError(f"{path} is an export of {header.get('root')}, not of {root}")
        if not first.endswith(b"\n"):
            raise ExportError(f"{path} has no whole header line: export it again")
        state.digest.update(first)
        state.since = header.get("seq")
        keep = len(first)
        counted = state.digest.copy()
        offset = keep
        for data in _lines(file):
            offset += len(data)
            if not data.endswith(b"\n"):
                break  # cut off in the middle of a line
            item = orjson.loads(data)
            if item.get("feedstore") == "end":
                raise ExportError(f"{path} is a finished export")
            if item.get("feedstore") == "catch-up":
                break  # the walk was done: the catch-up is made again, from the header's seq
            counted.update(data)
            key = _entry_key(item)
            if key is not None:
                state.entries += 1
                state.last = key
                state.digest = counted.copy()
                keep = offset
    return state, keep


def _lines(file: IO[bytes]) -> Iterator[bytes]:
    while True:
        data = file.readline()
        if not data:
            return
        yield data


def _entry_key(item: dict[str, Any]) -> str | None:
    """The key of an entry line (None for a counter or sequence line)."""
    entry_id = item.get("id")
    if isinstance(entry_id, str) and "," in entry_id:
        return entry_id.rpartition(",")[0]
    return None
