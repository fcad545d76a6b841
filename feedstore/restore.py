"""The restore write (`feedstore import --mode restore`): an exported document stored as it was.

A restore writes the document it is given, id, `published`, `updated` and authors included, in
the one write transaction (Transaction.run), with these rules (API.md §20.4):

- a key that doesn't exist gets the exported revision, or, when its revision key (kept after a
  delete) is already there or past it, the next revision after it: a revision is never given
  twice to one key, so a client holding an old one can't mistake the restored entry for it;
- a key that exists with the same document is left as it is (the write is skipped);
- a key that exists with another document is a conflict (409 duplicated_key) unless the write
  is forced (`Write.upsert`, `--force`), which stores it at the next revision or the exported
  one, whichever is higher.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feedstore import alias
from feedstore.entry import document_fields
from feedstore.errors import DuplicatedKey
from feedstore.schema import Schema


def document(
    key: str,
    exported: Mapping[str, Any],
    stored: Mapping[str, Any] | None,
    revision: int,
    schema: Schema | None,
    *,
    force: bool,
) -> dict[str, Any]:
    """The document a restore stores at `key`, whose current document is `stored` and revision
    key `revision`; `stored` itself when it is the same (unchanged)."""
    if stored is not None:
        if stored == exported:
            return dict(stored)
        if not force:
            raise DuplicatedKey(key, stored)
    if schema is not None:
        schema.validate(document_fields(exported), key)
    alias.check_document(key, exported)  # the links are fields, kept as they are
    restored = dict(exported)
    restored["id"] = f"{key},{max(revision_of(exported), revision + 1)}"
    return restored


def revision_of(document: Mapping[str, Any]) -> int:
    """The revision in a document's id (`/k,3` -> 3); checked by the importer before."""
    return int(str(document["id"]).rpartition(",")[2])


def unchanged(exists: bool, revision: int, restored: int) -> bool:
    """Whether a restore leaves the stored entry (at `revision`) as it is: it was the same, so
    the `restored` revision is the stored one."""
    return exists and restored == revision
