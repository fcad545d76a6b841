"""Three-way merge of a stale write: your changes since its base, applied onto the current entry.

A pure function of (base, current, mine, schema), where each is an entry's client fields (the
server's own, `id`, `published`, `updated`, `author`, take no part). Both sides are diffed against
the base as sets of leaf paths:

- objects recurse, member by member;
- arrays of objects with an `x-merge-key` recurse item by item, each item named by its key
  (`parts[partsid=p2].quantity`);
- `link` is a leaf per rel (`link[rel=alternate]`), as PUT replaces links per rel;
- everything else is a leaf: scalars, other arrays, and objects the schema marks
  `"x-merge": "atomic"` (fields that must change together).

Two changes overlap when one path is the other or lies inside it. Overlaps conflict unless both
sides wrote the same value at the same path (they converged); any change to the entry's ACL
(its `contributor` URNs) on the current side conflicts, whatever yours changed. Without a
conflict, your changes are applied onto the current fields and the caller validates and writes
them as any other write; with one, MergeConflict lists every overlapping field.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from feedstore.errors import MergeConflict
from feedstore.schema import Schema

ATOMIC = "x-merge"  # "x-merge": "atomic" on an object schema: one leaf
IGNORED = frozenset({"id", "published", "updated", "author"})
ACL_PREFIXES = ("urn:vte.cx:acl:", "urn:feedstore:acl:")


class _Absent:
    """The value of a path that isn't there (a field removed, an item not in the list)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Member:
    """A path step into an object: its member `name`."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Item:
    """A path step into a keyed array: the item whose `key` field is `value`."""

    key: str
    value: Any

    def __str__(self) -> str:
        return f"[{self.key}={self.value}]"


@dataclass(frozen=True)
class Rel:
    """A path step into `link`: the links of one rel."""

    rel: str | None

    def __str__(self) -> str:
        return f"[rel={self.rel}]"


Step = Member | Item | Rel
Path = tuple[Step, ...]
Changes = dict[Path, Any]


def format_path(path: Path) -> str:
    """The path as API.md names fields: `parts[partsid=p2].quantity`, `link[rel=alternate]`."""
    text = ""
    for step in path:
        text += f".{step}" if isinstance(step, Member) and text else str(step)
    return text


def three_way(
    base: Mapping[str, Any],
    current: Mapping[str, Any],
    mine: Mapping[str, Any],
    schema: Schema | None = None,
    *,
    key: str | None = None,
) -> dict[str, Any]:
    """`mine`'s changes since `base` applied onto `current`; MergeConflict (409) naming every
    field both changed, with its base, current and your value, when they overlap."""
    theirs, yours = diff(base, current, schema), diff(base, mine, schema)
    conflicts = overlaps(theirs, yours)
    if _acl_changed(base, current):
        conflicts.add((Member("contributor"),))
    if conflicts:
        raise MergeConflict(
            key or "",
            [
                {
                    "field": format_path(path),
                    "base": _json(value_at(base, path)),
                    "current": _json(value_at(current, path)),
                    "yours": _json(value_at(mine, path)),
                }
                for path in sorted(conflicts, key=format_path)
            ],
        )
    merged = copy.deepcopy(dict(current))
    for path, value in yours.items():
        merged = _set(merged, path, value)
    return merged


def diff(base: Any, other: Any, schema: Schema | None = None) -> Changes:
    """The leaves where `other` differs from `base`, each with its value in `other`."""
    changes: Changes = {}
    for name in _names(base, other):
        if name not in IGNORED:
            _diff(base.get(name, ABSENT), other.get(name, ABSENT), (Member(name),), schema, changes)
    return changes


def overlaps(theirs: Changes, yours: Changes) -> set[Path]:
    """The paths where the two sets of changes meet: a path of one equal to, or inside, a path
    of the other, but for the same value written at the same path. Each overlap is named by
    the shorter path, which holds both changes."""
    found: set[Path] = set()
    for path, value in yours.items():
        for prefix in _prefixes(path):
            if prefix in theirs and not (prefix == path and _same(theirs[prefix], value)):
                found.add(prefix)
    their_paths = set(theirs)
    for path in yours:
        # Their changes inside one of yours (yours replaced a whole object they edited).
        if any(_inside(theirs_path, path) for theirs_path in their_paths):
            found.add(path)
    return found


def value_at(fields: Mapping[str, Any], path: Path) -> Any:
    """The value at `path` in `fields`, ABSENT when it isn't there."""
    node: Any = fields
    for step in path:
        node = _child(node, step)
        if node is ABSENT:
            break
    return node


def _diff(base: Any, other: Any, path: Path, schema: Schema | None, changes: Changes) -> None:
    if _same(base, other):
        return
    schema_path = _schema_path(path)
    if type(base) is dict and type(other) is dict and not _atomic(schema, schema_path):
        for name in _names(base, other):
            step = (*path, Member(name))
            _diff(base.get(name, ABSENT), other.get(name, ABSENT), step, schema, changes)
        return
    if path == (Member("link"),) and type(base) is list and type(other) is list:
        for rel in dict.fromkeys([*map(_rel, base), *map(_rel, other)]):
            mine = [link for link in other if _rel(link) == rel]
            theirs = [link for link in base if _rel(link) == rel]
            if not _same(theirs, mine):
                changes[(*path, Rel(rel))] = mine or ABSENT
        return
    merge_key = schema.merge_key(schema_path) if schema is not None else None
    if merge_key and _keyed(base, merge_key) and _keyed(other, merge_key):
        before = {item[merge_key]: item for item in base}
        after = {item[merge_key]: item for item in other}
        for value in dict.fromkeys([*before, *after]):
            step = (*path, Item(merge_key, value))
            _diff(before.get(value, ABSENT), after.get(value, ABSENT), step, schema, changes)
        return
    changes[path] = other


def _set(node: Any, path: Path, value: Any) -> Any:
    """`node` with the value at `path` replaced by `value` (ABSENT removes it)."""
    step, rest = path[0], path[1:]
    if isinstance(step, Member):
        result = dict(node)
        if not rest:
            if value is ABSENT:
                result.pop(step.name, None)
            else:
                result[step.name] = copy.deepcopy(value)
        else:
            result[step.name] = _set(result[step.name], rest, value)
        return result
    if isinstance(step, Rel):
        kept = [link for link in node if _rel(link) != step.rel]
        return kept + ([] if value is ABSENT else copy.deepcopy(value))
    items = list(node)
    for position, item in enumerate(items):
        if isinstance(item, dict) and item.get(step.key) == step.value:
            if not rest and value is ABSENT:
                del items[position]
            else:
                items[position] = copy.deepcopy(value) if not rest else _set(item, rest, value)
            return items
    # An item yours added (an item theirs removed that yours changed is an overlap).
    return [*items, copy.deepcopy(value)]


def _child(node: Any, step: Step) -> Any:
    if isinstance(step, Member):
        return node.get(step.name, ABSENT) if isinstance(node, dict) else ABSENT
    if not isinstance(node, list):
        return ABSENT
    if isinstance(step, Rel):
        links = [link for link in node if _rel(link) == step.rel]
        return links or ABSENT
    return next(
        (item for item in node if isinstance(item, dict) and item.get(step.key) == step.value),
        ABSENT,
    )


def _prefixes(path: Path) -> Iterator[Path]:
    for end in range(1, len(path) + 1):
        yield path[:end]


def _inside(path: Path, container: Path) -> bool:
    return len(path) > len(container) and path[: len(container)] == container


def _names(base: Any, other: Any) -> list[str]:
    names = list(base) if isinstance(base, Mapping) else []
    if isinstance(other, Mapping):
        names += [name for name in other if name not in base]
    return names


def _schema_path(path: Path) -> list[str | int]:
    """The path as the schema looks fields up: members by name, any item of an array as 0."""
    return [step.name if isinstance(step, Member) else 0 for step in path]


def _atomic(schema: Schema | None, path: list[str | int]) -> bool:
    node = schema.node(path) if schema is not None else None
    return node is not None and node.get(ATOMIC) == "atomic"


def _keyed(value: Any, merge_key: str) -> bool:
    """Whether `value` is a list of objects, each with a distinct `merge_key`."""
    if type(value) is not list:
        return False
    keys = [item.get(merge_key) if type(item) is dict else None for item in value]
    return None not in keys and len(set(map(repr, keys))) == len(keys)


def _rel(link: Any) -> str | None:
    rel = link.get("___rel") if isinstance(link, dict) else None
    return rel if isinstance(rel, str) else None


def _acl_changed(base: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    return _acl(base) != _acl(current)


def _acl(fields: Mapping[str, Any]) -> set[str]:
    contributors = fields.get("contributor")
    items = contributors if isinstance(contributors, list) else [contributors]
    return {
        uri
        for item in items
        if isinstance(item, dict)
        and isinstance(uri := item.get("uri"), str)
        and uri.startswith(ACL_PREFIXES)
    }


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: 1 and 1.0 and True are three different values."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(a[name], b[name]) for name in a)
    if type(a) is list:
        return len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


def _json(value: Any) -> Any:
    return None if value is ABSENT else value
