"""`feedstore import`: an export file, an Atom feed or a vte.cx body into the store (API.md §20).

Entries are written in batches through `Store.write_once`, the one write path with an
Idempotency-Key (idempotency.py): each batch is one transaction, all of it or none. A batch keeps
to one partition on Redis Cluster (a transaction can't leave one slot), and is at most `batch`
entries. After each batch's EXEC the offset it ended at goes to `FILE.import-state` (fsynced).
The batch's key names the file's hash and the batch's offset, and its record is stored in the
batch's own MULTI: an import resumed after a crash between the EXEC and the state's write finds
the batch written (replayed) and skips it, so no batch is applied twice.

The problems of one line are reported as `line 812: /11/4: Unknown field: favorite.color`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

import orjson
import redis

from feedstore import account_lines, codec_json, idempotency, partitions
from feedstore.counter_range import CounterRange
from feedstore.entry import (
    ROOT,
    EntryId,
    checked_key_and_id,
    document_fields,
    entry_from_document,
    parent_of,
)
from feedstore.errors import EntryErrors, FeedstoreError, IdempotencyInProgress, NotFound
from feedstore.fields import Limits
from feedstore.import_file import (
    NOT_A_LINE,
    ImportRefused,
    InvalidLine,
    Record,
    Source,
    check_line,
    kind_of,
)
from feedstore.keys import KeyScheme
from feedstore.principal import ANONYMOUS
from feedstore.schema import Schema
from feedstore.store import Action, Store, Write

STATE_SUFFIX = ".import-state"
DEFAULT_BATCH = 500
RECORD_SECONDS = 7 * 24 * 3600  # how long a batch's idempotency record says it was written


class Mode(Enum):
    CREATE = "create"  # a new entry per line: an existing key is 409 duplicated_key
    UPSERT = "upsert"  # a forced PUT per line: new revisions
    RESTORE = "restore"  # the exported documents as they were (restore.py)


@dataclass
class Problem:
    """A line that can't be imported, and why."""

    record: Record
    key: str | None
    message: str

    def __str__(self) -> str:
        return (
            f"{self.record.where}: {self.key}: {self.message}"
            if self.key
            else (f"{self.record.where}: {self.message}")
        )


@dataclass
class Report:
    """What an import did."""

    entries: int = 0  # entry lines read
    written: int = 0  # entries written (restores of an unchanged entry excluded)
    skipped: int = 0  # batches found applied before (resume)
    counters: int = 0
    rejected: int = 0
    accounts: int = 0  # user, token and uid lines (--users)
    problems: list[Problem] = field(default_factory=list)


# -- turning records into writes ----------------------------------------------------------------


def write_of(record: Record, mode: Mode, limits: Limits, force: bool) -> Write:
    """The write an entry line makes; FeedstoreError naming the key and field when it is bad."""
    document = record.item
    # As a request body is checked (codec_json.loads): a line without escapes holds no
    # character XML can't carry, which spares the walk a test per string.
    plain = codec_json.plain_strings(record.raw)
    if mode is Mode.RESTORE:
        return _restore_of(record, limits, force, plain)
    entry = entry_from_document(document, record.line, limits, plain=plain)
    if entry.key is None:
        raise InvalidLine(None, "the entry has no self link and no id")
    if mode is Mode.CREATE:
        return Write(Action.CREATE, entry.key, entry.fields, index=record.line)
    return Write(Action.PUT, entry.key, entry.fields, index=record.line)


def _restore_of(record: Record, limits: Limits, force: bool, plain: bool) -> Write:
    """A restore's write: the document, checked as an entry is, stored as it is (restore.py)."""
    document = record.item
    key, entry_id = checked_key_and_id(document, record.line, limits, plain=plain)
    if key is None:
        raise InvalidLine(None, "the entry has no self link and no id")
    if entry_id is None or entry_id.key != key or entry_id.delete:
        entry_id = EntryId.parse(document.get("id"))  # InvalidId when it isn't one
    if entry_id.key != key or not entry_id.revision:
        raise InvalidLine(key, f"a restore needs the exported id <key>,<revision>: {entry_id}")
    for name in ("published", "updated"):
        if not isinstance(document.get(name), str):
            raise InvalidLine(key, f"a restore needs the exported {name}")
    return Write(Action.RESTORE, key, document, upsert=force, index=record.line)


# -- the import ---------------------------------------------------------------------------------


@dataclass
class Options:
    mode: Mode = Mode.CREATE
    batch: int = DEFAULT_BATCH
    force: bool = False
    dry_run: bool = False
    partial: bool = False
    resume: bool = False
    rejects: IO[bytes] | None = None
    users: bool = False  # import user, token and uid lines (skipped otherwise)


class Importer:
    """Imports one source into a store (single Redis or Redis Cluster)."""

    def __init__(
        self,
        store: Store,
        limits: Limits,
        options: Options,
        progress: Callable[[int], None] = lambda done: None,
        report: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.store = store
        self.keys: KeyScheme = store.keys
        self.limits = limits
        self.options = options
        self.progress = progress
        self.say = report
        self.result = Report()
        self.resuming = False  # carrying on after a crash (--resume)
        self.catching_up = False  # past an export's catch-up line
        # What the batches' Idempotency-Keys name besides the file and the offset: this run
        # (a new import of the same file writes again), kept in the state for --resume.
        self.run_id = os.urandom(8).hex()
        self.records: list[str] = []  # the batches' idempotency records, dropped at the end
        self.batch = options.batch  # or the batch size of the import resumed

    def run(self, source: Source, state_path: Path | None) -> Report:
        """Import `source`, recording progress in `state_path` (not in a dry run)."""
        options = self.options
        if source.problem is not None and not options.partial:
            raise ImportRefused(source.problem)
        start, line, batch = 0, 1, options.batch
        if options.resume and state_path is not None and state_path.exists():
            start, line, batch = self._resumed(state_path, source)
        self.batch = batch
        if options.dry_run:
            return self._dry_run(source)
        schema = self._schema(source)
        pending: list[tuple[Record, Write]] = []
        self.resuming = options.resume and start > 0
        for record in source.records(start, line, self.limits, schema):
            what = kind_of(record.item) if record.problem is None else "unknown"
            if source.kind != "jsonl":
                what = "entry"
            if what == "entry":
                self.result.entries += 1
                try:
                    write = self._write_of(record)
                except FeedstoreError as e:
                    if self._reject([Problem(record, e.key, e.message)]):
                        self._flush(pending, source, state_path)
                        pending = []
                        self._save(state_path, source, record.end, record.line + 1, batch)
                    continue
                if pending and self._ends_batch(pending, write, batch):
                    self._flush(pending, source, state_path)
                    pending = []
                pending.append((record, write))
                continue
            self._flush(pending, source, state_path)
            pending = []
            self.catching_up = self.catching_up or what == "catch-up"
            self._other(record, what)
            self._save(state_path, source, record.end, record.line + 1, batch)
        self._flush(pending, source, state_path)
        self._forget_records()
        self.progress(source.size)
        return self.result

    # -- batches

    def _ends_batch(self, pending: list[tuple[Record, Write]], write: Write, batch: int) -> bool:
        """Whether `write` starts a new batch: the batch is full, `write` is in another
        partition (Redis Cluster), or, after a catch-up line, writes a key the batch has."""
        if len(pending) >= batch:
            return True
        if self.store.cluster and self._partition(write) != self._partition(pending[0][1]):
            return True
        return self.catching_up and any(w.key == write.key for _, w in pending)

    def _partition(self, write: Write) -> str:
        return self.keys.partition(write.key)

    def _flush(
        self, pending: list[tuple[Record, Write]], source: Source, state_path: Path | None
    ) -> None:
        """Write a batch once: its Idempotency-Key names the file and the batch's offset, so a
        batch written before a crash (its state not saved) is found written, not written again."""
        if not pending:
            return
        first, last = pending[0][0], pending[-1][0]
        key = f"feedstore-import:{source.sha256}:{self.run_id}:{first.start}"
        request = idempotency.Request(key, source.sha256, ttl=RECORD_SECONDS)
        if self._write(pending, request):
            self.result.skipped += 1  # written before the crash, its state not saved
        self.records.append(self._record_name(pending[0][1].key, request))
        self._save(state_path, source, last.end, last.line + 1, self.batch)
        if source.kind == "jsonl":  # a body's entries aren't at known offsets: 100% at the end
            self.progress(last.end)

    def _write(self, pending: list[tuple[Record, Write]], request: idempotency.Request) -> bool:
        """Write a batch (with --rejects, again without its failing entries until it passes);
        True when it was found written before."""
        while pending:
            writes = [w for _, w in pending]
            try:
                outcome = self.store.write_once(writes, ANONYMOUS, request)
            except IdempotencyInProgress:
                self._lease_left(writes[0].key, request)
                continue
            except FeedstoreError as e:
                if e.status >= 500:
                    raise  # Redis unavailable, too many retries: no line is at fault
                failures = e.errors if isinstance(e, EntryErrors) else [e]
                by_key = {w.key: record for record, w in pending}
                problems = [
                    Problem(by_key.get(f.key or "", pending[0][0]), f.key, f.message)
                    for f in failures
                ]
                self._reject(problems)
                failed = {p.record.line for p in problems}
                pending = [(r, w) for r, w in pending if r.line not in failed]
                continue
            if outcome.replayed:
                return True
            self.result.written += len(outcome.result or ())
            return False
        return False

    def _write_of(self, record: Record) -> Write:
        """The write of an entry line. After an export's catch-up line, a key may come again,
        newer: it is written over (a create becomes an upsert, a restore is forced)."""
        mode, force = self.options.mode, self.options.force
        if self.catching_up:
            mode, force = Mode.UPSERT if mode is Mode.CREATE else mode, True
        return write_of(record, mode, self.limits, force)

    def _record_name(self, key: str, request: idempotency.Request) -> str:
        return self.keys.idempotency_key(key, ANONYMOUS.name, idempotency.digest(request.key))

    def _forget_records(self) -> None:
        """Drop the batches' records once the whole file is in: no resume needs them now."""
        for start in range(0, len(self.records), 1000):
            with self.store.redis.pipeline(transaction=False) as pipe:
                for name in self.records[start : start + 1000]:
                    pipe.delete(name)
                pipe.execute()
        self.records.clear()

    def _lease_left(self, key: str, request: idempotency.Request) -> None:
        """A batch's record is still a lease: after a crash (--resume), the killed import's,
        which no EXEC will ever complete: taken back at once. Otherwise another import of the
        same file is writing it: wait for it to finish."""
        name = self._record_name(key, request)
        if not self.resuming:
            time.sleep(1)
            return
        found = self._read(name)
        if found is not None and found.startswith(idempotency.PENDING):
            self.store.redis.delete(name)

    def _reject(self, problems: list[Problem]) -> bool:
        """Write the lines of `problems` to the rejects file; ImportFailed without one."""
        rejects = self.options.rejects
        if rejects is None:
            raise ImportFailed(problems)
        for problem in problems:
            self.say(str(problem))
            rejects.write(problem.record.raw)
            self.result.rejected += 1
        rejects.flush()
        return True

    # -- counters, sequences, deletions

    def _other(self, record: Record, what: str) -> None:
        item = record.item
        try:
            if what in ("header", "end", "catch-up"):
                return
            if what == "account":
                if self.options.users:
                    account_lines.load(self.store.redis, item)
                    self.result.accounts += 1
                return
            if what == "unknown":
                raise InvalidLine(None, record.problem or NOT_A_LINE)
            key, value = check_line(item, what)
            if what == "deleted":
                with contextlib.suppress(NotFound):
                    self.store.write([Write(Action.DELETE, key, recursive=True)], ANONYMOUS)
                return
            if what == "counter":
                span = item.get("range")
                if span is not None:
                    self.store.set_counter_range(key, CounterRange.parse(span))
                self.store.set_ids(key, value)
            else:
                raise_sequence(self.store.redis, self.keys.sequence_key(key), value)
            self.result.counters += 1
        except FeedstoreError as e:
            self._reject([Problem(record, e.key, e.message)])
        except (ValueError, TypeError) as e:
            self._reject([Problem(record, None, str(e))])

    # -- dry run

    def _dry_run(self, source: Source) -> Report:
        """Check every line (JSON, keys, ids, fields, schema, parent order); write nothing."""
        problems = self.result.problems
        if source.problem is not None:
            problems.append(Problem(Record(0, 0, 0, None, b""), None, source.problem))
        schema = self._header_schema(source)
        path: list[str] = []  # the keys above the last entry, in the file
        for record in source.records(0, 1, self.limits, schema):
            what = kind_of(record.item) if record.problem is None else "unknown"
            if source.kind != "jsonl":
                what = "entry"
            self.catching_up = self.catching_up or what == "catch-up"
            if what == "unknown":
                message = record.problem or NOT_A_LINE
                problems.append(Problem(record, None, message))
            elif what in ("counter", "sequence", "deleted"):
                try:
                    check_line(record.item, what)
                except FeedstoreError as e:
                    problems.append(Problem(record, e.key, e.message))
            if what != "entry":
                continue
            self.result.entries += 1
            try:
                write = self._write_of(record)
                fields = write.fields
                if write.action is Action.RESTORE:
                    fields = document_fields(fields)
                if schema is not None:
                    schema.validate(fields, write.key)
            except FeedstoreError as e:
                problems.append(Problem(record, e.key, e.message))
                continue
            if self.catching_up:  # in the order of the changes: no tree to follow
                continue
            parent = parent_of(write.key)
            while path and not (write.key.startswith(path[-1] + "/")):
                path.pop()
            if parent != ROOT and (not path or path[-1] != parent) and not self._exists(parent):
                problems.append(
                    Problem(
                        record,
                        write.key,
                        f"Parent path is required. {parent} (it must come before its children)",
                    )
                )
            path.append(write.key)
            if source.kind == "jsonl":
                self.progress(record.end)
        self.progress(source.size)
        return self.result

    def _exists(self, key: str) -> bool:
        return self._read(self.keys.document_key(key)) is not None

    # -- state

    def _schema(self, source: Source) -> Schema | None:
        """The schema in force; a restore into a store without one sets the export's."""
        schema = self.store.schema()
        document = (source.header or {}).get("schema")
        if schema is None and document is not None and self.options.mode is Mode.RESTORE:
            self.store.set_schema(document)
            schema = self.store.schema()
        return schema

    def _header_schema(self, source: Source) -> Schema | None:
        schema = self.store.schema()
        document = (source.header or {}).get("schema")
        if schema is None and document is not None and self.options.mode is Mode.RESTORE:
            return Schema(document)
        return schema

    def _read(self, name: str) -> bytes | None:
        client = self.store.redis
        if isinstance(client, redis.RedisCluster):
            return partitions.read_one(client, name)
        value: bytes | None = client.get(name)
        return value

    def _save(
        self, state_path: Path | None, source: Source, offset: int, line: int, batch: int
    ) -> None:
        if state_path is None:
            return
        state = {
            "sha256": source.sha256,
            "offset": offset,
            "line": line,
            "batch": batch,
            "mode": self.options.mode.value,
            "run": self.run_id,
            "catch_up": self.catching_up,
        }
        temporary = state_path.with_name(state_path.name + ".tmp")
        with temporary.open("wb") as file:
            file.write(orjson.dumps(state))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, state_path)

    def _resumed(self, state_path: Path, source: Source) -> tuple[int, int, int]:
        state = orjson.loads(state_path.read_bytes())
        if state.get("sha256") != source.sha256:
            raise ImportRefused(
                f"{state_path} is the state of another file (or {source.path} changed): "
                "remove it to import from the start"
            )
        if state.get("mode") != self.options.mode.value:
            raise ImportRefused(
                f"{state_path} is the state of an import in mode {state.get('mode')}"
            )
        self.run_id = str(state["run"])
        self.catching_up = bool(state.get("catch_up"))
        return int(state["offset"]), int(state["line"]), int(state["batch"])


class ImportFailed(Exception):
    """A batch failed (without --rejects): every failing entry of it, by line."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def raise_sequence(client: Any, name: str, value: int) -> None:
    """Set a numbering sequence to `value` unless it is past it already (numbers never go back,
    so a number given out is never given again)."""
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(name)
                current = int(pipe.get(name) or 0)
                if current >= value:
                    pipe.unwatch()
                    return
                pipe.multi()
                pipe.set(name, value)
                pipe.execute()
                return
            except redis.WatchError:
                continue
