"""The /d/ blueprint: read the request, make one Store call, encode the answer.

Every route is listed here; no view touches Redis or builds a body by hand.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from flask import Blueprint, Response, current_app, request
from werkzeug.routing import PathConverter

from feedstore import codec_json, codec_xml, cursor, negotiation, openapi, writes
from feedstore import query as query_module
from feedstore.entry import Entry, Limits, validate_key
from feedstore.errors import (
    FeedstoreError,
    InvalidBody,
    InvalidKey,
    InvalidOption,
    KeyRequired,
    UnsupportedMediaType,
)
from feedstore.feed import FeedReader
from feedstore.negotiation import Format
from feedstore.schema import Schema
from feedstore.settings import Settings
from feedstore.store import Store, Write

bp = Blueprint("api", __name__)
CODECS: dict[Format, Codec] = {Format.JSON: codec_json, Format.XML: codec_xml}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
META_FIELDS = ("id", "author", "published", "updated")
# The server's own resources under /d/: only GET reaches them, other methods are 405.
RESERVED_RESOURCES = ("_schema", "_openapi")


class EntryPath(PathConverter):
    """A key after /d/, except the server's own resources, so that they answer 405 to writes."""

    regex = rf"(?!(?:{'|'.join(RESERVED_RESOURCES)})$)[^/].*?"


class Codec(Protocol):
    """What codec_json and codec_xml both offer: one format's readers and writers."""

    CONTENT_TYPE: str

    def loads(self, body: bytes, limits: Limits, schema: Schema | None = None) -> list[Entry]: ...
    def loads_documents(self, body: bytes, limits: Limits, schema: Schema | None = None) -> Any: ...
    def dumps(self, documents: Iterable[Mapping[str, Any]]) -> bytes: ...
    def dumps_stored(self, raw_documents: Iterable[bytes]) -> bytes: ...
    def dumps_message(self, title: str, error: Mapping[str, Any] | None = None) -> bytes: ...


@dataclass(frozen=True)
class Feedstore:
    """What the views need, kept in `app.extensions["feedstore"]`."""

    store: Store
    settings: Settings


def get_feedstore() -> Feedstore:
    feedstore: Feedstore = current_app.extensions["feedstore"]
    return feedstore


# -- routes ---------------------------------------------------------------------------------


@bp.before_request
def guard_writes() -> None:
    # X-Requested-With is what jQuery sends: settle the common case without scanning headers.
    if request.method in WRITE_METHODS and "X-Requested-With" not in request.headers:
        negotiation.check_csrf(request.headers.keys(), request.mimetype)


@bp.before_request
def guard_method_override() -> None:
    """An override header is refused on any method but POST, and with a method it can't ask."""
    sent = request.environ.get(negotiation.SENT_METHOD, request.method)
    negotiation.method_override(sent, override_header())


@bp.get("/d/", defaults={"path": ""}, strict_slashes=False)
@bp.get("/d/<entry_path:path>")
def read(path: str) -> Response:
    key = validate_key(request_key())
    query_module.check_options(request.args)
    if "_getids" in request.args:
        return message(str(get_feedstore().store.get_ids(key)))
    if "f" in request.args or "c" in request.args:
        return read_feed(key, counting="f" not in request.args)
    return read_entry(key)


@bp.post("/d/", defaults={"path": ""}, strict_slashes=False)
@bp.post("/d/<entry_path:path>")
def create(path: str) -> Response:
    parent = validate_key(request_key())
    entries = decode_entries()
    conditions = request_conditions(single=len(entries) == 1)
    unnumbered = [entry for entry in entries if entry.key is None]
    if unnumbered:
        if parent == "/":
            raise KeyRequired()
        numbers = get_feedstore().store.number(parent, len(unnumbered))
        for entry, key in zip(unnumbered, numbers, strict=True):
            entry.key = key
    targets = writes.target_entries(entries, "/")
    written = get_feedstore().store.write(writes.creates(targets, conditions))
    headers = {}
    if len(written) == 1:
        headers = {"Location": f"/d{written[0].key}", "ETag": negotiation.etag(written[0].revision)}
    return message(",".join(w.key for w in written), 201, headers)


@bp.put("/d/", defaults={"path": ""}, strict_slashes=False)
@bp.put("/d/<entry_path:path>")
def update(path: str) -> Response:
    if "_addids" in request.args or "_setids" in request.args:
        return counter(validate_key(request_key()))
    entries = writes.target_entries(decode_entries(), validate_key(request_key()))
    conditions = request_conditions(single=len(entries) == 1)
    written = get_feedstore().store.write(writes.puts(entries, conditions, settings()))
    if "return=representation" in request.headers.get("Prefer", ""):
        return feed_response([w.document for w in written if w.document is not None])
    single = len(written) == 1 and written[0].document is not None
    return message(
        "Updated.", 200, {"ETag": negotiation.etag(written[0].revision)} if single else {}
    )


@bp.patch("/d/", defaults={"path": ""}, strict_slashes=False)
@bp.patch("/d/<entry_path:path>")
def partial_update(path: str) -> Response:
    target = validate_key(request_key())
    written = get_feedstore().store.write(patch_writes(target))
    headers = {"ETag": negotiation.etag(written[0].revision)} if len(written) == 1 else {}
    status = 201 if any(w.created for w in written) else 200
    if "return=minimal" in request.headers.get("Prefer", ""):
        return Response(status=204, headers=headers)
    return feed_response([w.document for w in written if w.document is not None], status, headers)


@bp.delete("/d/<entry_path:path>")
def delete(path: str) -> Response:
    write = writes.delete(
        request_key(),
        writes.parse_revision(request.args.get("r")),
        "_rf" in request.args,
        request_conditions(single=True),
        settings(),
    )
    get_feedstore().store.write([write])
    return message("Deleted.")


@bp.get("/d/_schema")
def schema() -> Response:
    document = get_feedstore().store.schema_document()
    if document is None:
        return Response(status=204)
    return Response(codec_json.dumps_document(document), 200, content_type=codec_json.CONTENT_TYPE)


@bp.get("/d/_openapi")
@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 document, with the loaded schema's custom fields."""
    body, tag = openapi.rendered(get_feedstore().store.schema())
    headers = {"ETag": tag}
    if request.if_none_match.contains_weak(tag.strip('"')):
        return Response(status=304, headers=headers)
    return Response(body, 200, headers, content_type=openapi.CONTENT_TYPE)


def counter(key: str) -> Response:
    """vte.cx counters: `?_addids=<n>` adds (n may be negative), `?_setids=<v>` sets (§6).

    A counter request carries nothing else: a body, preconditions or both options are 400, never
    silently ignored.
    """
    option = "_addids" if "_addids" in request.args else "_setids"
    if "_addids" in request.args and "_setids" in request.args:
        raise InvalidOption("_addids and _setids can't be combined.")
    if request_body().strip():
        raise InvalidOption(f"A counter request takes no body: {option}")
    if any(request.headers.get(name, "").strip() for name in ("If-Match", "If-None-Match")):
        raise InvalidOption(f"If-Match and If-None-Match don't apply to counters: {option}")
    store = get_feedstore().store
    if "_addids" in request.args:
        return message(str(store.add_ids(key, parse_integer("_addids"))))
    return message(str(store.set_ids(key, parse_integer("_setids"))))


@bp.get("/_health")
def health() -> Response:
    get_feedstore().store.ping()
    return message("OK")


# -- reading --------------------------------------------------------------------------------


def read_entry(key: str) -> Response:
    found = get_feedstore().store.get(key)
    if found is None:
        return Response(status=204)
    revision, raw = found
    headers = {"ETag": negotiation.etag(revision)}
    # If-None-Match compares weakly (RFC 9110 §13.1.2): W/"3" is as good as "3" for a cache.
    if "If-None-Match" in request.headers and request.if_none_match.contains_weak(str(revision)):
        return Response(status=304, headers=headers)
    return stored_response([raw], 200, headers)


def read_feed(key: str, counting: bool) -> Response:
    """`?f` (a page of children) or `?c` (their count), with filters, sort and cursor (§2)."""
    store, fetch_limit = get_feedstore().store, settings().fetch_limit
    schema = store.schema()
    query = query_module.parse(list(request.args.items(multi=True)), schema, fetch_limit)
    scope = f"{key}\n{query.fingerprint()}"
    after = None
    if "p" in request.args:
        after = cursor.decode(request.args["p"], scope, store.existing_secret())
    reader = FeedReader(store, schema, fetch_limit)
    page = reader.count(key, query, after) if counting else reader.page(key, query, after)
    headers = {}
    if page.next is not None:
        token = cursor.encode(page.next, scope, store.secret())
        headers["x-vtecx-nextpage"] = token
        headers["Link"] = f'</d{key}?{next_query(token)}>; rel="next"'
    status = 206 if page.partial else 200
    if counting:
        return message(str(page.count), status, headers)
    if not page.documents and not page.partial:
        return Response(status=204)
    return stored_response(page.documents, status, headers, nometa=query.nometa)


def stored_response(
    raw_documents: list[bytes], status: int, headers: Mapping[str, str], nometa: bool = False
) -> Response:
    """Stored entries in the answer's format; `?_nometa` leaves out the server's fields."""
    codec = answer_codec()
    if nometa or "_nometa" in request.args:
        documents = [without_meta(codec_json.loads_stored(raw)) for raw in raw_documents]
        body = codec.dumps(documents)
    else:
        body = codec.dumps_stored(raw_documents)
    return Response(body, status, dict(headers), content_type=codec.CONTENT_TYPE)


def next_query(cursor: str) -> str:
    """This request's query (options, filters, format) with the cursor of the next page."""
    pairs = [(name, value) for name, value in request.args.items(multi=True) if name != "p"]
    return "&".join(
        quote(name, safe="") + (f"={quote(value, safe='*')}" if value else "")
        for name, value in [*pairs, ("p", cursor)]
    )


# -- writing --------------------------------------------------------------------------------


def patch_writes(target: str) -> list[Write]:
    """The writes of a PATCH: its kind by Content-Type (API.md §4), its target and conditions."""
    body = request_body()
    kind, body_format = patch_kind(request.mimetype, body)
    upsert, limits = "_upsert" in request.args, settings().limits
    if kind is not writes.PatchKind.MERGE:
        document = codec_json.loads_document(body, limits)
        conditions = request_conditions(single=True)
        return [writes.standard_patch(kind, target, document, conditions, settings(), upsert)]
    codec = CODECS[body_format]
    documents = codec.loads_documents(body, limits, body_schema(codec))
    entries = codec_json.entries_from(documents, limits)
    if target != "/":
        if len(entries) != 1:
            raise InvalidBody(f"PATCH /d{target} takes one entry.")
        writes.check_id_key(entries[0], target)
        entries[0].key = target
    entries = writes.target_entries(entries, target)
    return writes.merges(
        documents,
        entries,
        request_conditions(single=len(entries) == 1),
        settings(),
        keep_unmentioned=request.headers.get("PATCHTYPE", "").upper() == "MERGE",
        upsert=upsert,
    )


def patch_kind(mimetype: str, body: bytes) -> tuple[writes.PatchKind, Format]:
    """Which patch a PATCH body is, by its type; sniffed only when the type says nothing."""
    for kind in writes.PatchKind:
        if mimetype == kind.value:
            return kind, Format.JSON
    if mimetype in negotiation.XML_TYPES:
        return writes.PatchKind.MERGE, Format.XML
    if mimetype in negotiation.SNIFFED_TYPES:
        return writes.PatchKind.MERGE, negotiation.body_format(mimetype, body)
    raise UnsupportedMediaType(
        f"Unsupported patch type: {mimetype or 'none'}",
        headers={"Accept-Patch": writes.ACCEPT_PATCH},
    )


def request_conditions(single: bool) -> writes.Conditions:
    return writes.Conditions.from_headers(
        request.headers.get("If-Match"), request.headers.get("If-None-Match"), single
    )


def settings() -> Settings:
    return get_feedstore().settings


def decode_entries() -> list[Entry]:
    """The entries of a POST or PUT body, in whichever format it is (API.md §1.1)."""
    body = request_body()
    if not body.strip():
        return codec_json.entries_from([], settings().limits)
    codec = CODECS[negotiation.body_format(request.mimetype, body)]
    return codec.loads(body, settings().limits, body_schema(codec))


def request_body() -> bytes:
    """The request body, less a leading UTF-8 byte order mark (Windows tools write one, §2.2)."""
    return request.get_data(cache=True, parse_form_data=False).removeprefix(codecs.BOM_UTF8)


def body_schema(codec: Codec) -> Schema | None:
    """The schema types XML values; JSON carries its own types, so it needs no Redis read."""
    return get_feedstore().store.schema() if codec is codec_xml else None


# -- answering ------------------------------------------------------------------------------


def parse_integer(name: str) -> int:
    value = request.args[name]
    if not re.fullmatch(r"-?[0-9]{1,18}", value):
        raise InvalidOption(f"{name} must be a whole number: {name}={value}")
    return int(value)


def without_meta(document: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name not in META_FIELDS}


def request_key() -> str:
    """The key a /d/ URL names: the path after /d, percent-decoded, `/` for /d/.

    werkzeug decodes the path with U+FFFD for bytes that aren't UTF-8; such a path names no key
    (InvalidKey), which only the raw bytes of PATH_INFO tell from a key that holds a real U+FFFD.
    """
    if "\ufffd" in request.path:
        check_utf8_path(request.environ.get("PATH_INFO", ""))
    return request.path[len("/d") :] or "/"


def check_utf8_path(path_info: str) -> None:
    """InvalidKey, with the offending bytes percent-encoded, when the path's bytes aren't UTF-8."""
    try:
        raw = path_info.encode("latin-1")  # PEP 3333: the path's bytes, one character each
    except UnicodeEncodeError:
        return  # the server decoded the path itself: the replacement characters are all we have
    text = raw.decode("utf-8", "surrogateescape")
    if any("\udc80" <= character <= "\udcff" for character in text):
        shown = re.sub("[\udc80-\udcff]", lambda byte: f"%{ord(byte[0]) - 0xDC00:02X}", text)
        key = shown[len("/d") :]
        raise InvalidKey(f"Key must be valid UTF-8. {key}", key=key)


def override_header() -> str | None:
    """The method override asked for; an empty header is none, as MethodOverride reads it."""
    headers = request.headers
    return headers.get("X-HTTP-Method-Override") or headers.get("X-Method-Override") or None


def answer_codec() -> Codec:
    """The codec of the answer: `?x` or an XML Accept header picks Atom XML (API.md §1.2)."""
    return CODECS[negotiation.answer_format(request.args, request.headers.get("Accept", ""))]


def feed_response(
    documents: list[Mapping[str, Any]], status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    codec = answer_codec()
    return Response(
        codec.dumps(documents), status, dict(headers or {}), content_type=codec.CONTENT_TYPE
    )


def message(title: str, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    codec = answer_codec()
    body = codec.dumps_message(title)
    return Response(body, status, dict(headers or {}), content_type=codec.CONTENT_TYPE)


def error_response(error: FeedstoreError) -> Response:
    """The one rendering of every error: a message feed with the `error` member (API.md §7)."""
    codec = answer_codec()
    body = codec.dumps_message(error.message, error.to_dict())
    return Response(body, error.status, error.headers, content_type=codec.CONTENT_TYPE)
