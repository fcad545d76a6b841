"""Entries <-> Atom XML with lxml (API.md §1.2): the mirror of codec_json, one hardened parser.

Atom's own fields are elements in the Atom namespace; custom fields are elements in
`urn:feedstore:fields` (prefix `fs`). A JSON `___name` is an XML attribute, `______text` the text
beside attributes or children, an array its element repeated, `null` an element with
`xsi:nil="true"`. On input, elements without a namespace are accepted too (vte.cx clients send
them), and a schema gives values their JSON types; without one they are strings.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from lxml import etree

from feedstore import codec_json
from feedstore.entry import ATOM_FIELDS, Entry
from feedstore.errors import FeedstoreError, InvalidBody, InvalidField, collect
from feedstore.fields import (
    ATOM_LISTS,
    ATTRIBUTE_PREFIX,
    TEXT_FIELD,
    XML_INVALID,
    Limits,
    too_many_attributes,
)
from feedstore.schema import SCALAR_TYPES, Path, Schema, format_path, scalar_from_text

CONTENT_TYPE = "application/atom+xml; charset=utf-8"
ATOM = "http://www.w3.org/2005/Atom"
FIELDS = "urn:feedstore:fields"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NIL = f"{{{XSI}}}nil"
NAMESPACES = {None: ATOM, "fs": FIELDS}

# One parser configuration for all input: no DTD, no entities, no network, no huge trees.
# Declarations are also refused before parsing, so a billion-laughs body is never expanded,
# whatever lxml would do. It parses as a stream (iterparse), so the bounds on a body's shape stop
# it as soon as they are passed, before anything costly runs on the tree.
PARSER_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_ATOM_FIELD_NAMES = frozenset(ATOM_FIELDS)
_SCALAR_ATOM = ("id", "published", "updated")
_ATOM_TAGS = {"entry": f"{{{ATOM}}}entry", "feed": f"{{{ATOM}}}feed"}
_EVENTS = ("start", "end", "start-ns")
SubElement = etree.SubElement


# -- reading --------------------------------------------------------------------------------


def loads(body: bytes, limits: Limits, schema: Schema | None = None) -> list[Entry]:
    """Read a `<feed>` of entries or one `<entry>`; raise BadRequest when it is bad or hostile."""
    return codec_json.entries_from(loads_documents(body, limits, schema), limits)


def loads_documents(body: bytes, limits: Limits, schema: Schema | None = None) -> list[Any]:
    """The entries of an XML body as JSON-form documents; every bad entry is reported, by key."""
    root = parse(body, limits)
    name = etree.QName(root)
    if name.namespace not in (None, ATOM) or name.localname not in ("feed", "entry"):
        raise InvalidBody(f"the root element must be an Atom feed or entry, not {name.localname}.")
    elements = [root] if name.localname == "entry" else [c for c in root if _local(c) == "entry"]
    documents: list[Any] = []
    errors: list[FeedstoreError] = []
    for element in elements:
        try:
            documents.append(_read_entry(element, schema, limits))
        except FeedstoreError as error:
            error.key = error.key or _self_href(element)
            errors.append(error)
    collect(errors)
    return documents


def loads_message(body: bytes, limits: Limits) -> str | None:
    """The title of a message feed `<feed><title>...</title></feed>` (None without a title)."""
    root = parse(body, limits)
    if etree.QName(root).namespace not in (None, ATOM) or _local(root) != "feed":
        raise InvalidBody("a message is an Atom feed with a title.")
    if any(not isinstance(child.tag, str) or _local(child) != "title" for child in root):
        raise InvalidBody("a message feed holds only its title.")
    title = root.find("{*}title")
    return None if title is None else "".join(title.itertext())


def parse(body: bytes, limits: Limits) -> etree._Element:
    """Parse with the hardened parser; DTDs, entities and bodies past the bounds are 400.

    The bounds (API.md §5.5): nesting (`max_depth`), attributes on one element, namespace
    declarations included (`max_attributes`), and elements and attributes in the body
    (`max_nodes`). lxml's work on attributes and namespaces grows with their square, so each is
    checked as the parser reaches it.
    """
    if _DECLARATION.search(body):
        raise InvalidBody("DTDs and entity declarations are not allowed.")
    events = etree.iterparse(io.BytesIO(body), events=_EVENTS, **PARSER_OPTIONS)
    try:
        _check_shape(events, limits)
    except etree.XMLSyntaxError as e:
        raise InvalidBody(str(e)) from e
    root = events.root
    if root is None:
        raise InvalidBody("the body is empty.")
    tree = root.getroottree()
    if tree.docinfo.doctype or any(isinstance(node, etree._Entity) for node in root.iter()):
        raise InvalidBody("DTDs and entity declarations are not allowed.")
    return root


def _check_shape(events: Iterable[tuple[str, Any]], limits: Limits) -> None:
    """Run the parse to its end, raising as soon as the document passes a bound."""
    depth = nodes = declarations = 0
    for event, item in events:
        if event == "start-ns":  # reported before the start of the element declaring it
            declarations += 1
            continue
        if event == "end":
            depth -= 1
            continue
        depth += 1
        if depth > limits.max_depth:
            raise InvalidBody(f"nesting is deeper than {limits.max_depth} levels.")
        attributes = len(item.attrib) + declarations
        declarations = 0
        if attributes > limits.max_attributes:
            entry = _entry_of(item)
            path = _path_within(item, entry)
            key = _self_href(entry) if entry is not None else None
            raise too_many_attributes(path, limits.max_attributes, key)
        nodes += 1 + attributes
        if nodes > limits.max_nodes:
            raise InvalidBody(f"the body has more than {limits.max_nodes} elements and attributes.")


def _entry_of(element: etree._Element) -> etree._Element | None:
    """The Atom entry an element is in (itself, for an entry), as far as it is parsed."""
    for node in (element, *element.iterancestors()):
        parent = node.getparent()
        if _local(node) == "entry" and (parent is None or _local(parent) == "feed"):
            return node
    return None


def _path_within(element: etree._Element, entry: etree._Element | None) -> str:
    """`userinfo.name`: an element's dotted path inside its entry (from the root outside one)."""
    if element is entry:
        return "entry"
    names = [_local(element)]
    for node in element.iterancestors():
        if node is entry:
            break
        names.append(_local(node))
    return ".".join(reversed(names))


def _self_href(entry: etree._Element) -> str | None:
    """The key a parsed entry's self link names, if it has one yet."""
    for child in entry:
        if _local(child) == "link" and child.get("rel") == "self":
            return child.get("href")
    return None


def _local(element: etree._Element) -> str:
    return str(etree.QName(element).localname)


def _read_entry(element: etree._Element, schema: Schema | None, limits: Limits) -> dict[str, Any]:
    document: dict[str, Any] = {}
    custom: list[etree._Element] = []
    for child in element:
        name = etree.QName(child)
        if name.namespace in (None, ATOM) and name.localname in _ATOM_FIELD_NAMES:
            value = _read_atom(child, name.localname, limits.max_string)
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


def _read_atom(element: etree._Element, name: str, max_string: int) -> Any:
    if name in _SCALAR_ATOM:
        return element.text or ""
    value: dict[str, Any] = {ATTRIBUTE_PREFIX + k: v for k, v in element.attrib.items()}
    children = list(element)
    if name in ATOM_LISTS:
        value.update((_local(child), child.text or "") for child in children)
        return value
    text = (element.text or "") + _markup(children, name, max_string)
    if not value:
        return text
    if text:
        value[TEXT_FIELD] = text
    return value


def _markup(children: Iterable[etree._Element], name: str, max_string: int) -> str:
    """Child elements of Atom text as text. Each is written with every namespace declaration in
    scope, so the text can grow as children times declarations: stop when it is too long."""
    parts: list[str] = []
    length = 0
    for child in children:
        parts.append(etree.tostring(child, encoding="unicode"))
        length += len(parts[-1])
        if length > max_string:
            raise InvalidField(f"String is longer than {max_string} characters: {name}", field=name)
    return "".join(parts)


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
    if declared in SCALAR_TYPES:
        try:
            return scalar_from_text(text, declared)
        except ValueError as e:
            where = format_path(path)
            raise InvalidField(f"Invalid value: {where}: {text!r} {e}", field=where) from e
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


TOMBSTONES = "http://purl.org/atompub/tombstones/1.0"


def dumps_changes(documents: Iterable[Mapping[str, Any]], next_href: str | None = None) -> bytes:
    """A change feed (API.md §18): entries, and each deleted item as an RFC 6721
    `<at:deleted-entry ref when>` with `at:by`, its self link and its change category; a
    `<link rel="next">` when more events are waiting."""
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap={**NAMESPACES, "at": TOMBSTONES})
    if next_href is not None:
        _write_atom(feed, "link", {"___rel": "next", "___href": next_href})
    for document in documents:
        [category] = [c for c in document.get("category", ()) if _is_change(c)][-1:]
        if category.get("___term") != "deleted":
            _write_entry(feed, document)
            continue
        tombstone = SubElement(feed, f"{{{TOMBSTONES}}}deleted-entry")
        tombstone.set("ref", _text(document["id"]))
        tombstone.set("when", _text(document["updated"]))
        principal = str(document["author"][0]["uri"]).rpartition(":")[2]
        by = SubElement(tombstone, f"{{{TOMBSTONES}}}by")
        SubElement(by, _atom_tag("name")).text = _text(principal)
        for link in document.get("link", ()):
            _write_atom(tombstone, "link", link)
        _write_atom(tombstone, "category", category)
    return etree.tostring(feed, encoding="UTF-8", xml_declaration=True)


def _is_change(category: Any) -> bool:
    return isinstance(category, dict) and category.get("___scheme") == "urn:feedstore:change"


def dumps_stored(raw_documents: Iterable[bytes]) -> bytes:
    """A feed of entries stored as JSON bytes."""
    return dumps(codec_json.loads_stored(raw) for raw in raw_documents)


def dumps_message(
    title: str,
    error: Mapping[str, Any] | None = None,
    *,
    subtitle: str | None = None,
    links: Sequence[Mapping[str, str]] = (),
    rights: str | None = None,
) -> bytes:
    """A message feed `<feed><title>...</title></feed>`, with `fs:error` for errors; a summary
    (vte.cx's pagination answer) adds a subtitle and links, `?_access` a subtitle and rights."""
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap=NAMESPACES)
    etree.SubElement(feed, f"{{{ATOM}}}title").text = _text(title)
    if subtitle is not None:
        etree.SubElement(feed, f"{{{ATOM}}}subtitle").text = _text(subtitle)
    for link in links:
        _write_atom(feed, "link", link)
    if rights is not None:
        etree.SubElement(feed, f"{{{ATOM}}}rights").text = _text(rights)
    if error is not None:
        element = etree.SubElement(feed, f"{{{FIELDS}}}error")
        for name in ("status", "code", "key", "field", "revision", "right"):
            if error.get(name) is not None:
                element.set(name, _text(error[name]))
        for failure in error.get("entries", ()):
            item = etree.SubElement(element, f"{{{FIELDS}}}entry")
            for name, value in failure.items():
                item.set(name, _text(value))
        for key in error.get("written", ()):
            etree.SubElement(element, f"{{{FIELDS}}}written").set("key", _text(key))
        if error.get("current") is not None:
            current = etree.SubElement(element, f"{{{FIELDS}}}current")
            try:
                _write_entry(current, error["current"])
            except InvalidField:
                # An entry stored before the rules that keep it writable: the error still goes
                # out, without the copy (JSON carries it).
                element.remove(current)
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
