"""The Redis key scheme: every key feedstore writes, in one place.

fs:d:<key>          the stored document (orjson), present while the entry exists
fs:r:<key>          the last revision written; kept after a delete, so a re-insert continues;
                    written (INCRBY 0 when it stays) in every MULTI that changes fs:d:<key> or
                    fs:a:<key>, so a WATCH of it covers both (transaction.py)
fs:c:<key>          sorted set of the keys of <key>'s children (score 0: lexicographic order)
fs:a:<alias>        an alias (alias.py): the key of the entry it names, while it does
fs:n:<key>          the counter that numbers children POSTed without a self link (and `_allocids`)
fs:ids:<key>        the vte.cx counter of <key> (`_addids`, `_getids`, `_setids`)
fs:idr:<key>        the range of that counter (`_rangeids`, counter_range.py), absent without one
fs:i:<field>:<key>  the index of <key>'s children on an `x-index` field (index.py)
fs:schema           the field schema in force (JSON), shared by every worker
fs:schema:v         its version, bumped on every change, read with every write
fs:secret           the key that signs feed cursors, made once, shared by every worker
fs:pg:<digest>      list: the cursors ending each page of a pagination index (pagination.py);
                    <digest> is the SHA-256 of the parent, filters, sort and page size; expires
"""

from __future__ import annotations

import hashlib

DOCUMENT_PREFIX = "fs:d:"
INDEX_PREFIX = "fs:i:"
SCHEMA_KEY = "fs:schema"
SCHEMA_VERSION_KEY = "fs:schema:v"
SECRET_KEY = "fs:secret"


def document_key(key: str) -> str:
    return DOCUMENT_PREFIX + key


def revision_key(key: str) -> str:
    return f"fs:r:{key}"


def children_key(key: str) -> str:
    return f"fs:c:{key}"


def alias_key(alias: str) -> str:
    return f"fs:a:{alias}"


def sequence_key(key: str) -> str:
    return f"fs:n:{key}"


def counter_key(key: str) -> str:
    return f"fs:ids:{key}"


def counter_range_key(key: str) -> str:
    return f"fs:idr:{key}"


def index_key(parent: str, field: str) -> str:
    return f"{INDEX_PREFIX}{field}:{parent}"


def page_index_key(scope: str) -> str:
    return "fs:pg:" + hashlib.sha256(scope.encode()).hexdigest()
