"""Entries <-> Atom XML with lxml (API.md §1.2): the mirror of codec_json, one hardened parser.

Atom's own fields are elements in the Atom namespace; custom fields are elements in
`urn:feedstore:fields` (prefix `fs`). A JSON `___name` is an XML attribute, `______text` the text
beside attributes or children, an array its element repeated, `null` an element with
`xsi:nil="true"`. On input, elements without a namespace are accepted too (vte.cx clients send
them), and a schema gives values their JSON types; without one they are strings.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lxml import etree

from feedstore import codec_json
from feedstore.entry import (
    ATOM_FIELDS,
    ATOM_LISTS,
    ATTRIBUTE_PREFIX,
    TEXT_FIELD,
    XML_INVALID,
    Entry,
    Limits,
)
from feedstore.errors import InvalidBody, InvalidField
from feedstore.schema import Path, Schema, format_path

CONTENT_TYPE = "application/atom+xml; charset=utf-8"
ATOM = "http://www.w3.org/2005/Atom"
FIELDS = "urn:feedstore:fields"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NIL = f"{{{XSI}}}nil"
NAMESPACES = {None: ATOM, "fs": FIELDS}

# One parser for all input: no DTD, no entities, no network, no huge trees. Declarations are also
# refused before parsing, so a billion-laughs body is never expanded, whatever lxml would do.
PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_ATOM_FIELD_NAMES = frozenset(ATOM_FIELDS)
_SCALAR_ATOM = ("id", "published", "updated")
_INTEGER = re.compile(r"-?[0-9]+")
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_ATOM_TAGS = {"entry": f"{{{ATOM}}}entry", "feed": f"{{{ATOM}}}feed"}
SubElement = etree.SubElement


# -- reading --------------------------------------------------------------------------------


def loads(body: bytes, limits: Limits, schema: Schema | None = None) -> list[Entry]:
    """Read a `<feed>` of entries or one `<entry>`; raise BadRequest when it is bad or hostile."""
    return codec_json.entries_from(loads_documents(body, limits, schema), limits)


def loads_documents(body: bytes, limits: Limits, schema: Schema | None = None) -> list[Any]:
    """The entries of an XML body as JSON-form documents."""
    root = parse(body, limits)
    name = etree.QName(root)
    if name.namespace not in (None, ATOM) or name.localname not in ("feed", "entry"):
        raise InvalidBody(f"the root element must be an Atom feed or entry, not {name.localname}.")
    if name.localname == "entry":
        return [_read_entry(root, schema)]
    return [_read_entry(child, schema) for child in root if _local(child) == "entry"]


def parse(body: bytes, limits: Limits) -> etree._Element:
    """Parse with the hardened parser; DTDs, entities and deep trees are 400."""
    if _DECLARATION.search(body):
        raise InvalidBody("DTDs and entity declarations are not allowed.")
    try:
        root = etree.fromstring(body, PARSER)
    except etree.XMLSyntaxError as e:
        raise InvalidBody(str(e)) from e
    if root is None:
        raise InvalidBody("the body is empty.")
    tree = root.getroottree()
    if tree.docinfo.doctype or any(isinstance(node, etree._Entity) for node in root.iter()):
        raise InvalidBody("DTDs and entity declarations are not allowed.")
    _check_depth(root, limits.max_depth)
    return root


def _check_depth(root: etree._Element, max_depth: int) -> None:
    level = [root]
    for _ in range(max_depth):
        level = [child for node in level for child in node]
        if not level:
            return
    raise InvalidBody(f"nesting is deeper than {max_depth} levels.")


def _local(element: etree._Element) -> str:
    return str(etree.QName(element).localname)


def _read_entry(element: etree._Element, schema: Schema | None) -> dict[str, Any]:
    document: dict[str, Any] = {}
    custom: list[etree._Element] = []
    for child in element:
        name = etree.QName(child)
        if name.namespace in (None, ATOM) and name.localname in _ATOM_FIELD_NAMES:
            value = _read_atom(child, name.localname)
            if name.localname in ATOM_LISTS:
                document.setdefault(name.localname, []).append(value)
            else:
                document[name.localname] = value
        elif name.namespace in (None, FIELDS):
            custom.append(child)
        else:
            raise InvalidBody(f"unknown element {{{name.namespace}}}{name.localname} in an entry.")
    document.update(_read_children(custom, [], schema))
    return document


def _read_atom(element: etree._Element, name: str) -> Any:
    if name in _SCALAR_ATOM:
        return element.text or ""
    value: dict[str, Any] = {ATTRIBUTE_PREFIX + k: v for k, v in element.attrib.items()}
    children = list(element)
    if name in ATOM_LISTS:
        value.update((_local(child), child.text or "") for child in children)
        return value
    text = (element.text or "") + "".join(etree.tostring(c, encoding="unicode") for c in children)
    if not value:
        return text
    if text:
        value[TEXT_FIELD] = text
    return value


def _read_children(
    children: Iterable[etree._Element], path: Path, schema: Schema | None
) -> dict[str, Any]:
    """Custom elements as fields; an element repeated, or an array in the schema, is a list."""
    grouped: dict[str, list[etree._Element]] = {}
    for child in children:
        grouped.setdefault(_local(child), []).append(child)
    fields: dict[str, Any] = {}
    for name, elements in grouped.items():
        here = [*path, name]
        if len(elements) > 1 or (schema is not None and schema.type_of(here) == "array"):
            fields[name] = [_read_value(e, [*here, i], schema) for i, e in enumerate(elements)]
        else:
            fields[name] = _read_value(elements[0], here, schema)
    return fields


def _read_value(element: etree._Element, path: Path, schema: Schema | None) -> Any:
    if element.get(NIL) == "true":
        return None
    attributes = {ATTRIBUTE_PREFIX + k: v for k, v in element.attrib.items() if k != NIL}
    children = list(element)
    if not children and not attributes:
        return _typed(element.text or "", path, schema)
    value = {**attributes, **_read_children(children, path, schema)}
    if element.text and element.text.strip():
        value[TEXT_FIELD] = element.text
    return value


def _typed(text: str, path: Path, schema: Schema | None) -> Any:
    """A leaf's text as the JSON type the schema declares (a string without one)."""
    declared = schema.type_of(path) if schema is not None else None
    try:
        if declared in ("integer", "number") and not text.isascii():
            raise ValueError(text)  # int() and float() would read full-width digits as numbers
        integral = declared == "number" and _INTEGER.fullmatch(text.strip())
        if declared == "integer" or integral:
            number: int | float = int(text)
            if not _INT_MIN <= number <= _INT_MAX:  # what JSON (orjson) can carry exactly
                raise ValueError(text)
            return number
        if declared == "number":
            number = float(text)
            if not math.isfinite(number):
                raise ValueError(text)
            return number
        if declared == "boolean":
            return {"true": True, "false": False}[text.strip()]
    except (ValueError, KeyError) as e:
        where = format_path(path)
        message = f"Invalid value: {where}: {text!r} is not a valid {declared}"
        raise InvalidField(message, field=where) from e
    if declared == "object":
        return {}
    if declared == "array":
        return []
    return text


# -- writing --------------------------------------------------------------------------------


def dumps(documents: Iterable[Mapping[str, Any]]) -> bytes:
    """A feed of entries: `<feed><entry>...</entry></feed>`."""
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap=NAMESPACES)
    for document in documents:
        _write_entry(feed, document)
    return etree.tostring(feed, encoding="UTF-8", xml_declaration=True)


def dumps_stored(raw_documents: Iterable[bytes]) -> bytes:
    """A feed of entries stored as JSON bytes."""
    return dumps(codec_json.loads_stored(raw) for raw in raw_documents)


def dumps_message(title: str, error: Mapping[str, Any] | None = None) -> bytes:
    """A message feed `<feed><title>...</title></feed>`, with `fs:error` for errors."""
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap=NAMESPACES)
    etree.SubElement(feed, f"{{{ATOM}}}title").text = _text(title)
    if error is not None:
        element = etree.SubElement(feed, f"{{{FIELDS}}}error")
        for name in ("status", "code", "key", "field", "revision"):
            if error.get(name) is not None:
                element.set(name, _text(error[name]))
        for failure in error.get("entries", ()):
            item = etree.SubElement(element, f"{{{FIELDS}}}entry")
            for name, value in failure.items():
                item.set(name, _text(value))
        if error.get("current") is not None:
            _write_entry(etree.SubElement(element, f"{{{FIELDS}}}current"), error["current"])
    return etree.tostring(feed, encoding="UTF-8", xml_declaration=True)


def _write_entry(parent: etree._Element, document: Mapping[str, Any]) -> None:
    entry = SubElement(parent, _ATOM_TAGS["entry"])
    for name, value in document.items():
        if name in _ATOM_FIELD_NAMES:
            for item in value if name in ATOM_LISTS else [value]:
                _write_atom(entry, name, item)
        else:
            _write_value(entry, name, value)


def _write_atom(parent: etree._Element, name: str, value: Any) -> None:
    element = SubElement(parent, _atom_tag(name))
    if type(value) is dict:
        _write_mapping(element, value, _write_atom)
    else:
        element.text = _text(value)


def _write_value(parent: etree._Element, name: str, value: Any) -> None:
    kind = type(value)
    if kind is list:
        for item in value:
            if type(item) is list:
                raise InvalidField(f"An array of arrays has no XML form: {name}", field=name)
            _write_value(parent, name, item)
        return
    try:
        element = SubElement(parent, _field_tag(name))
    except ValueError as e:  # a name stored before the rules that keep them XML names
        raise InvalidField(f"Field name has no XML form: {name}", field=name) from e
    if value is None:
        element.set(NIL, "true")
    elif kind is dict:
        _write_mapping(element, value, _write_value)
    else:
        element.text = _text(value)


def _write_mapping(
    element: etree._Element,
    value: Mapping[str, Any],
    write_child: Callable[[etree._Element, str, Any], None],
) -> None:
    """`______text` as the text, `___name` as attributes, the rest as child elements."""
    for key, item in value.items():
        if key == TEXT_FIELD:
            element.text = _text(item)
        elif key.startswith(ATTRIBUTE_PREFIX):
            try:
                element.set(key[len(ATTRIBUTE_PREFIX) :], _text(item))
            except ValueError as e:
                raise InvalidField(f"Attribute name has no XML form: {key}", field=key) from e
        else:
            write_child(element, key, item)


@functools.lru_cache(maxsize=1024)
def _atom_tag(name: str) -> str:
    return f"{{{ATOM}}}{name}"


@functools.lru_cache(maxsize=4096)
def _field_tag(name: str) -> str:
    return f"{{{FIELDS}}}{name}"


def _text(value: Any) -> str:
    """A value as XML text. Characters XML can't carry (in data stored before writes refused
    them, or quoted in an error message) become U+FFFD, so writing XML never fails on them."""
    if type(value) is str:
        return XML_INVALID.sub("\ufffd", value) if XML_INVALID.search(value) else value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
