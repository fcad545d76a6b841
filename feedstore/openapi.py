"""The OpenAPI 3.1 document: the static core (openapi.json) plus the loaded schema's custom fields.

OpenAPI 3.1's schema dialect is JSON Schema 2020-12, the dialect of feedstore's schema, so the
schema goes in as it is (closed as the server closes it) under `components.schemas.CustomFields`,
and its properties become properties of `Entry` and `StoredEntry` beside the Atom fields. They are
merged rather than composed with `allOf`: a closed object can't be combined with another one.

The core lists response sets once (`components.x-response-sets`); an operation's `responses` that
refers to one gets a copy, with its own statuses on top, and the sets leave the served document.

The core describes the feed JSON style. In the bare style (`json_style` bare) every answer of
entries is rewritten to its bare shape, so the document always describes the answers of the style
in force, and a validator checks them exactly.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from feedstore.schema import Schema, closed

CORE_PATH = Path(__file__).with_name("openapi.json")
CONTENT_TYPE = "application/json"
RESPONSE_SETS = "x-response-sets"
_SET_PREFIX = f"#/components/{RESPONSE_SETS}/"
_CUSTOM = "#/components/schemas/CustomFields"
_ENTRY_FEED = "#/components/schemas/EntryFeed"
# Answers that may be one entry (an entry read, a PATCH of one key); all others are lists.
_ONE_OR_MORE = ("Read", "Patched")
# Keywords that change how a schema's references resolve; they'd be wrong inside another document.
_RELOCATING = ("$id", "$schema", "$anchor", "$dynamicAnchor")


@functools.cache
def core() -> dict[str, Any]:
    """The static core with its response sets expanded: the document when no schema is loaded."""
    from feedstore import __version__

    document: dict[str, Any] = orjson.loads(CORE_PATH.read_bytes())
    document["info"]["version"] = __version__
    sets = document["components"].pop(RESPONSE_SETS)
    for path_item in document["paths"].values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"] = _expanded(operation["responses"], sets)
    _add_delete_bodies(document)
    return document


# The schemas of a feed DELETE's body, copies of the keyed entries' that refer to each other
# and to `FormEntry`, the core's `Entry`, instead.
_DELETE_SCHEMAS = {
    "Entry": "FormEntry",
    "KeyedEntry": "EntryToDelete",
    "KeyedEntryOrList": "EntryToDeleteOrList",
    "KeyedEntriesBody": "EntriesToDeleteBody",
}
_DELETE_BODY = "EntriesToDelete"


def _add_delete_bodies(document: dict[str, Any]) -> None:
    """`DELETE /d/`'s body: keyed entries as a PUT's, of the core's `Entry`, which the
    schema's fields never go into. A delete reads each entry's key and id; its other fields
    are checked for form (names, bounds), never against the schema, so that a client can send
    back what it read, even after the schema changed."""
    components = document["components"]
    schemas = components["schemas"]
    for keyed, deleted in _DELETE_SCHEMAS.items():
        schemas[deleted] = copy.deepcopy(schemas[keyed])
    body = components["requestBodies"][_DELETE_BODY] = copy.deepcopy(
        components["requestBodies"]["KeyedEntries"]
    )
    for keyed, deleted in _DELETE_SCHEMAS.items():
        old, new = f"#/components/schemas/{keyed}", f"#/components/schemas/{deleted}"
        _replace_reference(body, old, new)
        for name in _DELETE_SCHEMAS.values():
            _replace_reference(schemas[name], old, new)
    schemas["FormEntry"]["description"] = (
        "An entry of a feed DELETE: `Entry` without the schema's custom fields (any field with "
        "a valid name, of any value)."
    )
    body["description"] = (
        "The entries to delete, each naming its key (a self link, or an id, whose revision "
        "makes its delete conditional). Their other fields are checked for form, not against "
        "the schema."
    )
    document["paths"]["/d/"]["delete"]["requestBody"] = {
        "$ref": f"#/components/requestBodies/{_DELETE_BODY}"
    }


def _expanded(responses: dict[str, Any], sets: Mapping[str, Any]) -> dict[str, Any]:
    reference = responses.get("$ref")
    if not isinstance(reference, str) or not reference.startswith(_SET_PREFIX):
        return responses
    own = {status: response for status, response in responses.items() if status != "$ref"}
    return {**copy.deepcopy(sets[reference.removeprefix(_SET_PREFIX)]), **own}


def document(schema: Schema | None, json_style: str = "feed") -> dict[str, Any]:
    """The document for the schema and JSON style in force (the core itself by default)."""
    result = copy.deepcopy(core())
    if schema is not None:
        _add_custom_fields(result["components"]["schemas"], schema.document)
    if json_style == "bare":
        _bare_answers(result)
    return result


@functools.lru_cache(maxsize=8)
def rendered(schema: Schema | None, json_style: str = "feed") -> tuple[bytes, str]:
    """The document as JSON bytes and its ETag; a Schema is cached until its version changes."""
    body = orjson.dumps(document(schema, json_style))
    return body, f'"{hashlib.sha256(body).hexdigest()}"'


def _add_custom_fields(schemas: dict[str, Any], schema_document: Mapping[str, Any]) -> None:
    """Put the schema under CustomFields and its properties into Entry and StoredEntry."""
    custom = _relocated(closed(copy.deepcopy(dict(schema_document))), "#", _CUSTOM)
    for keyword in _RELOCATING:
        custom.pop(keyword, None)
    custom["description"] = "The custom fields: the schema loaded in the server."
    schemas["CustomFields"] = custom
    declared = {
        name: {"$ref": f"{_CUSTOM}/properties/{_pointer_token(name)}"}
        for name in custom.get("properties", {})
    }
    entry, stored = schemas["Entry"], schemas["StoredEntry"]
    # Atom fields are the server's to define, whatever the schema says of the same names.
    for target in (entry, stored):
        atom = target["properties"]
        target["properties"] = {**atom, **{n: s for n, s in declared.items() if n not in atom}}
    if "additionalProperties" in custom:
        entry["additionalProperties"] = copy.deepcopy(custom["additionalProperties"])
    if isinstance(custom.get("required"), list):
        entry["required"] = list(custom["required"])


def _bare_answers(document: dict[str, Any]) -> None:
    """Describe the bare JSON style: every `EntryFeed` answer becomes its bare shape."""
    for name, response in document["components"]["responses"].items():
        bare = "BareEntryOrEntries" if name in _ONE_OR_MORE else "BareEntries"
        _replace_reference(response, _ENTRY_FEED, f"#/components/schemas/{bare}")
    _replace_reference(document["paths"], _ENTRY_FEED, "#/components/schemas/BareEntries")
    document["info"]["description"] += (
        "\n\nThis server answers in the bare JSON style (`json_style` bare), as vte.cx does: an "
        "entry read is the entry itself, a feed an array of entries; messages stay message feeds."
    )


def _replace_reference(node: Any, old: str, new: str) -> None:
    """Point every `$ref` to `old` under `node` (in place) to `new`."""
    if isinstance(node, dict):
        if node.get("$ref") == old:
            node["$ref"] = new
        for value in node.values():
            _replace_reference(value, old, new)
    elif isinstance(node, list):
        for item in node:
            _replace_reference(item, old, new)


def _relocated(node: Any, old_root: str, new_root: str) -> Any:
    """Rewrite local references (`#/$defs/x`) for a schema that now lives at `new_root`."""
    if isinstance(node, dict):
        return {
            name: (
                new_root + value[len(old_root) :]
                if name == "$ref" and isinstance(value, str) and value.startswith(old_root)
                else _relocated(value, old_root, new_root)
            )
            for name, value in node.items()
        }
    if isinstance(node, list):
        return [_relocated(item, old_root, new_root) for item in node]
    return node


def _pointer_token(name: str) -> str:
    """A property name as a JSON Pointer token (RFC 6901)."""
    return name.replace("~", "~0").replace("/", "~1")
