"""Partial updates as pure functions of (stored fields, patch, schema) -> new fields (API.md §4).

Three kinds: the feedstore merge (`merge`), RFC 7396 JSON Merge Patch (`merge_patch`) and RFC 6902
JSON Patch (`json_patch`, through the `jsonpatch` library). None of them touches Redis: the store
calls them inside its transaction, on the newest stored state.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch
import jsonpointer

from feedstore.entry import SERVER_OWNED, merge_top_level, self_link
from feedstore.errors import InvalidField, InvalidPatch, PatchTestFailed
from feedstore.fields import PATCH_DIRECTIVE, Limits, check_fields
from feedstore.schema import Path, Schema, format_path

NOT_PATCHABLE = ("published", "updated", "author")  # `id` in a body is a precondition


def merge(
    stored: Mapping[str, Any],
    patch: Mapping[str, Any],
    schema: Schema | None = None,
    *,
    keep_unmentioned: bool = False,
) -> dict[str, Any]:
    """The feedstore merge: objects merge deeply, `null` resets, keyed lists merge by key.

    Raises InvalidPatch naming the field and index for a keyed item without its key or with a key
    given twice. `keep_unmentioned` is `PATCHTYPE: MERGE`: stored items not mentioned are kept.
    """
    sent = dict(patch)
    links = sent.pop("link", None)
    merged = _merge_object(stored, sent, [], schema, keep_unmentioned)
    return merge_top_level(merged, {"link": links}) if links is not None else merged


def _merge_object(
    stored: Mapping[str, Any],
    patch: Mapping[str, Any],
    path: Path,
    schema: Schema | None,
    keep: bool,
) -> dict[str, Any]:
    result = dict(stored)
    for name, value in patch.items():
        here = [*path, name]
        if value is None:
            has_default, default = schema.default(here) if schema else (False, None)
            if has_default:
                result[name] = default
            else:
                result.pop(name, None)
        elif isinstance(value, dict):
            current = result.get(name)
            result[name] = _merge_object(
                current if isinstance(current, dict) else {}, value, here, schema, keep
            )
        elif isinstance(value, list) and schema and (key := schema.merge_key(here)):
            current = result.get(name)
            result[name] = _merge_list(
                current if isinstance(current, list) else [], value, here, key, schema, keep
            )
        else:
            result[name] = copy.deepcopy(value)
    return result


def _merge_list(
    stored: list[Any], items: list[Any], path: Path, key: str, schema: Schema, keep: bool
) -> list[Any]:
    """Merge a list of objects by `key` (the schema's `x-merge-key`)."""
    stored_by_key = {item[key]: item for item in stored if isinstance(item, dict) and key in item}
    changes: dict[Any, dict[str, Any] | None] = {}  # key -> merged item, None to delete
    for index, item in enumerate(items):
        where = format_path([*path, index])
        if not isinstance(item, dict) or item.get(key) is None:
            raise InvalidPatch(f"Merge key {key} is required: {where}", field=where)
        item_key = item[key]
        if not isinstance(item_key, str | int | float | bool):
            raise InvalidPatch(f"Merge key {key} must be a scalar: {where}", field=where)
        if item_key in changes:
            raise InvalidPatch(f"Merge key {key} is duplicated: {where}", field=where)
        directive = item.get(PATCH_DIRECTIVE)
        if directive == "delete":
            changes[item_key] = None
            continue
        if directive is not None:
            raise InvalidPatch(f"Only {PATCH_DIRECTIVE}: delete is known: {where}", field=where)
        changes[item_key] = _merge_object(
            stored_by_key.get(item_key, {}), item, [*path, index], schema, keep
        )
    if not keep:
        return [merged for merged in changes.values() if merged is not None]
    result = []
    for item in stored:
        item_key = item.get(key) if isinstance(item, dict) else None
        if item_key not in changes:
            result.append(item)
        elif (merged := changes.pop(item_key)) is not None:
            result.append(merged)
    return result + [merged for merged in changes.values() if merged is not None]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch, exactly: `null` removes, anything not an object replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def json_patch(document: Mapping[str, Any], operations: Sequence[Any]) -> dict[str, Any]:
    """RFC 6902 JSON Patch: a failed `test` is PatchTestFailed (409), other failures 400.

    Operations apply one by one, so a failure names the operation and the field it points at.
    """
    patched: Any = copy.deepcopy(dict(document))
    for index, operation in enumerate(operations):
        pointer = operation.get("path")
        where = f"operation {index} ({operation.get('op')} {pointer})"
        field = _pointer_field(pointer)
        try:
            patched = jsonpatch.JsonPatch([operation]).apply(patched, in_place=True)
        except jsonpatch.JsonPatchTestFailed as e:
            raise PatchTestFailed(f"JSON Patch test failed: {where}", field=field) from e
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as e:
            detail = str(e) if isinstance(e, jsonpatch.InvalidJsonPatch) else type(e).__name__
            raise InvalidPatch(
                f"JSON Patch can't be applied: {where}: {_readable(detail)}", field=field
            ) from e
    if not isinstance(patched, dict):
        raise InvalidPatch("JSON Patch must leave the entry an object.")
    return patched


def _pointer_field(pointer: Any) -> str | None:
    """A JSON Pointer as a field path: `/parts/1/quantity` -> `parts[1].quantity`."""
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        return None
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]
    return format_path([int(t) if t.isascii() and t.isdigit() else t for t in tokens]) or None


_READABLE = {
    "JsonPatchConflict": "the path does not exist or can't take the value",
    "JsonPatchPathNotFound": "the path does not exist",
    "JsonPointerException": "the path does not exist",
    "TypeError": "the path runs through a value that isn't an object or array",
}


def _readable(detail: str) -> str:
    """What went wrong, without the library's reprs of the stored values."""
    return _READABLE.get(detail, detail)


def check_patchable(fields: Mapping[str, Any], key: str) -> None:
    """The server-owned fields and the self link can't be patched (400)."""
    for name in NOT_PATCHABLE:
        if name in fields:
            raise InvalidField(f"{name} can't be patched.", key=key, field=name)
    target = self_link(fields)
    if "link" in fields and target is not None and target != key:
        raise InvalidField(f"The self link can't be patched. Key = {key}", key=key, field="link")


def check_operations(operations: Any) -> list[Any]:
    """A JSON Patch body must be an array of operation objects that leave server fields alone."""
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise InvalidPatch("JSON Patch must be an array of operations.")
    for op in operations:
        for pointer in (op.get("path"), op.get("from")):
            segments = pointer.split("/") if isinstance(pointer, str) else []
            if len(segments) > 1 and segments[1] in (*SERVER_OWNED, *NOT_PATCHABLE):
                raise InvalidField(f"{segments[1]} can't be patched.", field=segments[1])
    return operations


def check_result(
    fields: Mapping[str, Any],
    key: str,
    limits: Limits,
    stored: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a patch made of the `stored` fields must keep the server's fields and the self link
    (the stored one; `key` for an entry being created), and be an entry a PUT could have sent
    (names, Atom shapes, strings)."""
    own = (self_link(stored) if stored else None) or key
    for name in SERVER_OWNED:
        if name in fields:
            raise InvalidField(f"{name} can't be patched.", key=own, field=name)
    if self_link(fields) not in (own, None):
        raise InvalidField(f"The self link can't be patched. Key = {own}", key=own, field="link")
    check_fields(fields, own, limits)
    return dict(fields)
