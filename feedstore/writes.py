"""From a decoded request to the Store's writes: targets, preconditions, and which patch applies.

Pure functions of entries, header values and settings, so the rules of API.md §3-§5 are tested
without HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from feedstore import alias, codec_json, patch
from feedstore.entry import (
    ROOT,
    Entry,
    document_fields,
    is_revision,
    validate_entry_key,
    writable_key,
)
from feedstore.errors import (
    FeedstoreError,
    InvalidId,
    InvalidOption,
    InvalidPatch,
    KeyRequired,
    PreconditionRequired,
    collect,
)
from feedstore.fields import Limits
from feedstore.negotiation import IfMatch, parse_if_match, parse_if_none_match
from feedstore.schema import Schema
from feedstore.settings import Settings
from feedstore.store import Action, Fields, Write


class PatchKind(Enum):
    MERGE = "application/json"  # the feedstore merge
    MERGE_PATCH = "application/merge-patch+json"  # RFC 7396
    JSON_PATCH = "application/json-patch+json"  # RFC 6902


_MERGE_BASE = re.compile(r'"([0-9]{1,18})"|([0-9]{1,18})')

ACCEPT_PATCH = (
    "application/json, application/merge-patch+json, application/json-patch+json, "
    "application/atom+xml"
)


@dataclass(frozen=True)
class Conditions:
    """The HTTP preconditions of a write request (API.md §5)."""

    if_match: IfMatch | None = None
    if_none_match: bool = False

    @classmethod
    def from_headers(
        cls, if_match: str | None, if_none_match: str | None, single: bool
    ) -> Conditions:
        conditions = cls(parse_if_match(if_match), parse_if_none_match(if_none_match))
        if not single and (conditions.if_match is not None or conditions.if_none_match):
            raise InvalidOption("If-Match and If-None-Match apply to one entry: use the ids.")
        return conditions


def target_entries(entries: Sequence[Entry], target: str) -> list[Entry]:
    """Give a lone linkless entry the URL's key (`target`, a valid key); every entry then needs
    a key an entry can be written at. (A decoded entry's key is a valid key: entry_from_document
    checks it.)"""
    if target != "/" and len(entries) == 1 and entries[0].key is None:
        entries[0].key = target
    errors: list[FeedstoreError] = []
    for entry in entries:
        try:
            if entry.key is None:
                raise KeyRequired(field=f"entry[{entry.index}]")
            writable_key(entry.key)
        except FeedstoreError as error:
            errors.append(error)
    collect(errors)
    return list(entries)


def creates(entries: Sequence[Entry], parent: str, conditions: Conditions) -> list[Write]:
    """POST: every entry is created at its key, or numbered under `parent` when it has none
    (the root numbers nothing: 400). A create needs no revision, so `require_revision` doesn't
    apply; `If-Match` can only fail (412) on a key that doesn't exist yet."""
    keyed = target_entries([e for e in entries if e.key is not None], ROOT)
    if len(keyed) < len(entries):
        if parent == ROOT:
            raise KeyRequired(field=f"entry[{next(e.index for e in entries if e.key is None)}]")
        validate_entry_key(parent)
    return [
        Write(
            Action.CREATE,
            e.key or "",
            e.fields,
            index=e.index,
            if_match=conditions.if_match,
            if_none_match=conditions.if_none_match,
            numbered_under=None if e.key is not None else parent,
        )
        for e in entries
    ]


def puts(
    entries: Sequence[Entry], conditions: Conditions, settings: Settings, merge: bool = False
) -> list[Write]:
    """PUT: updates, inserts and `?_delete` ids, per the table of API.md §3.2; with `merge`
    (`?_merge`), a stale id revision is the base of a merge (API.md §15.5)."""
    written = [
        _conditional(
            Write(
                Action.DELETE if entry.id is not None and entry.id.delete else Action.PUT,
                str(entry.key),
                entry.fields,
                index=entry.index,
            ),
            entry,
            conditions,
            settings,
        )
        for entry in entries
    ]
    if not (merge or settings.auto_merge):
        return written  # _merging would leave every write as it is
    return [_merging(write, merge, settings) for write in written]


def alias_edits(
    entries: Sequence[Entry], adding: bool, conditions: Conditions, settings: Settings
) -> list[Write]:
    """PUT ?_addalias / ?_removealias: each entry's alternate links are added to (or removed
    from) the stored entry's aliases; its other fields are left alone."""
    edit = alias.adding if adding else alias.removing
    return [
        _conditional(
            Write(
                Action.PATCH, str(e.key), patcher=edit(alias.aliases_of(e.fields)), index=e.index
            ),
            e,
            conditions,
            settings,
        )
        for e in entries
    ]


def delete(
    key: str, revision: int | None, recursive: bool, conditions: Conditions, settings: Settings
) -> Write:
    write = Write(Action.DELETE, validate_entry_key(key), revision=revision, recursive=recursive)
    return _conditional(write, None, conditions, settings)


def deletes(
    entries: Sequence[Entry], recursive: bool, conditions: Conditions, settings: Settings
) -> list[Write]:
    """DELETE /d/ with a feed: each entry named (self link or id) is deleted, revision-checked
    when its id carries a revision."""
    return [
        _conditional(
            Write(Action.DELETE, str(entry.key), recursive=recursive, index=entry.index),
            entry,
            conditions,
            settings,
        )
        for entry in entries
    ]


def clear(key: str, revision: int | None, conditions: Conditions, settings: Settings) -> Write:
    """DELETE ?_clearfolder: everything below the key goes, the key's entry stays."""
    write = Write(Action.CLEAR, validate_entry_key(key), revision=revision)
    return _conditional(write, None, conditions, settings)


def merges(
    documents: Sequence[Any],
    entries: Sequence[Entry],
    conditions: Conditions,
    settings: Settings,
    *,
    keep_unmentioned: bool,
    upsert: bool,
    merge: bool = False,
    merge_base: int | None = None,
) -> list[Write]:
    """PATCH with the feedstore merge: one write per partial entry; `merge` and `merge_base`
    as `with_merge_base` says."""
    errors: list[FeedstoreError] = []
    for document, entry in zip(documents, entries, strict=True):
        try:
            patch.check_patchable(document, str(entry.key))
        except FeedstoreError as error:
            errors.append(error)
    collect(errors)
    return [
        with_merge_base(
            _conditional(
                Write(
                    Action.PATCH,
                    str(entry.key),
                    upsert=upsert,
                    patcher=_merger(entry, keep_unmentioned, settings.limits),
                    index=entry.index,
                ),
                entry,
                conditions,
                settings,
            ),
            merge,
            merge_base,
            settings,
        )
        for entry in entries
    ]


def standard_patch(
    kind: PatchKind,
    target: str,
    body: Any,
    conditions: Conditions,
    settings: Settings,
    upsert: bool,
    merge: bool = False,
    merge_base: int | None = None,
) -> Write:
    """PATCH /d/{key} with an RFC 7396 merge patch or an RFC 6902 JSON Patch."""
    if target == "/":
        raise InvalidPatch(f"{kind.value} patches one entry: PATCH /d/<key>.")
    validate_entry_key(target)
    limits = settings.limits
    if kind is PatchKind.JSON_PATCH:
        operations = patch.check_operations(body)

        def apply(stored: Fields, schema: Schema | None) -> Fields:
            return patch.check_result(patch.json_patch(stored, operations), target, limits, stored)

    else:
        if not isinstance(body, dict):
            raise InvalidPatch("A merge patch of an entry must be an object.")
        patch.check_patchable(body, target)  # published, updated, author: as the other kinds

        def apply(stored: Fields, schema: Schema | None) -> Fields:
            return patch.check_result(patch.merge_patch(stored, body), target, limits, stored)

    write = Write(Action.PATCH, target, upsert=upsert, patcher=apply)
    write = _conditional(write, None, conditions, settings)
    return with_merge_base(write, merge, merge_base, settings)


def _merger(entry: Entry, keep_unmentioned: bool, limits: Limits) -> Any:
    """The feedstore merge of one entry. Objects merge, so the result is checked as a whole: it
    could hold more attributes than any one request may send (API.md §6.3), or a `$patch` left
    outside a keyed list item."""
    key = str(entry.key)

    def apply(stored: Fields, schema: Schema | None) -> Fields:
        merged = patch.merge(stored, entry.fields, schema, keep_unmentioned=keep_unmentioned)
        return patch.check_result(merged, key, limits, stored)

    return apply


def _conditional(
    write: Write, entry: Entry | None, conditions: Conditions, settings: Settings
) -> Write:
    """Add the entry's revision and the headers' conditions; 400 when they disagree, 428 when
    a `require_revision` key gets none."""
    if entry is not None and entry.id is not None:
        write.revision = entry.id.revision
        if entry.id.key != write.key:
            write.claimed_id = entry.id
    if_match = conditions.if_match
    # Weak tags alone name no revision: nothing to disagree with, and the write fails with 412.
    if (
        isinstance(if_match, frozenset)
        and if_match
        and write.revision is not None
        and write.revision not in if_match
    ):
        raise InvalidOption(
            f"If-Match does not agree with the id. Key = {write.key}", key=write.key
        )
    write.if_match, write.if_none_match = if_match, conditions.if_none_match
    conditional = write.revision is not None or if_match is not None or write.if_none_match
    if not conditional and settings.requires_revision(write.key):
        raise PreconditionRequired(write.key)
    return write


def revert(key: str, raw: bytes, conditions: Conditions, settings: Settings) -> Write:
    """PUT ?_revert=<n>: the entry's fields become those of a revision it had (`raw`, its
    stored JSON), as a new revision; an entry deleted since is written again."""
    fields = document_fields(codec_json.loads_stored(raw))

    def restore(stored: Fields, schema: Schema | None) -> Fields:
        return dict(fields)

    write = Write(Action.PATCH, validate_entry_key(key), upsert=True, patcher=restore)
    return _conditional(write, None, conditions, settings)


def parse_merge_base(value: str | None, conditions: Conditions) -> int | None:
    """The `Merge-Base` header of a PATCH: one revision, in ETag syntax (`"3"`), never with
    If-Match (which must fail on a stale revision, RFC 9110)."""
    if value is None or not value.strip():
        return None
    if conditions.if_match is not None:
        raise InvalidOption("Merge-Base and If-Match can't be combined.")
    found = _MERGE_BASE.fullmatch(value.strip())
    if found is None:
        raise InvalidOption(f"Merge-Base is invalid: {value}")
    return int(found[1] or found[2])


def with_merge_base(write: Write, merge: bool, merge_base: int | None, settings: Settings) -> Write:
    """A PATCH's merge: `Merge-Base` is its base revision (400 when its id names another one);
    else as a PUT's (`_merging`)."""
    if merge_base is not None:
        if write.revision is not None and write.revision != merge_base:
            raise InvalidOption(
                f"Merge-Base does not agree with the id. Key = {write.key}", key=write.key
            )
        write.revision, write.merge = merge_base, True
        return write
    return _merging(write, merge, settings)


def _merging(write: Write, merge: bool, settings: Settings) -> Write:
    """With `?_merge`, or under an `auto_merge` prefix, a write whose revision is stale merges
    its changes since that revision instead of failing (transaction.py, merge.py)."""
    # A delete has no fields to merge: a stale one stays a revision conflict.
    if (
        write.revision
        and write.action is not Action.DELETE
        and (merge or settings.merges(write.key))
    ):
        write.merge = True
    return write


def parse_revision(value: str | None) -> int | None:
    """`?r=<revision>` of a DELETE: digits, at most 18 of them (API.md §1.2)."""
    if value is None:
        return None
    if not is_revision(value):
        raise InvalidOption(f"Revision is invalid: r={value}")
    return int(value)


def check_id_key(entry: Entry, target: str) -> None:
    """In a PATCH of one key, an id must name that key."""
    if entry.id is not None and entry.id.key != target:
        raise InvalidId(f"{entry.id} does not name {target}.", key=target, field="id")
