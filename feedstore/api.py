"""The /d/ blueprint: read the request, make one Store call, encode the answer.

Every route is listed here; no view touches Redis or builds a body by hand.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from flask import Blueprint, Request, Response, current_app, request
from werkzeug.routing import PathConverter

from feedstore import (
    access_log,
    acl,
    authentication,
    bulk,
    change_feed,
    codec_json,
    codec_xml,
    cursor,
    history,
    idempotency,
    negotiation,
    openapi,
    options,
    pagination,
    writes,
)
from feedstore import counter as counter_module
from feedstore import query as query_module
from feedstore.access import Access
from feedstore.authentication import current_principal
from feedstore.change_hub import ChangeHub
from feedstore.context import BODY, current_flask, current_request
from feedstore.credentials import token_record
from feedstore.entry import Entry, validate_key
from feedstore.errors import (
    FeedstoreError,
    IdempotencyKeyNotAccepted,
    IdempotencyKeyRequired,
    InvalidBody,
    InvalidKey,
    InvalidOption,
    UnsupportedMediaType,
)
from feedstore.feed import FeedReader
from feedstore.fields import Limits
from feedstore.negotiation import Format
from feedstore.pagination import PageIndex, PageRange
from feedstore.schema import Schema
from feedstore.settings import Settings
from feedstore.store import Store, Write, Written

bp = Blueprint("api", __name__)
CODECS: dict[Format, Codec] = {Format.JSON: codec_json, Format.XML: codec_xml}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
META_FIELDS = ("id", "author", "published", "updated")
# The server's own resources under /d/: only GET reaches them, other methods are 405.
RESERVED_RESOURCES = ("_schema", "_openapi")
# A kept revision never changes: a cache may keep it for a year (API.md §15).
IMMUTABLE = "private, max-age=31536000, immutable"
# The views of entries, whose query options the options table governs.
ENTRY_VIEWS = frozenset(
    {"api.read", "api.create", "api.update", "api.partial_update", "api.delete"}
)
# What an Idempotency-Key's fingerprint covers, besides the body (API.md §19).
FINGERPRINTED = (
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "HTTP_ACCEPT",
    "HTTP_IF_MATCH",
    "HTTP_IF_NONE_MATCH",
    "HTTP_MERGE_BASE",
    "HTTP_PREFER",
    "HTTP_PATCHTYPE",
)
RESPONSE = "feedstore.idempotent_response"  # the answer an idempotent write made, in environ
IDEMPOTENCY_KEY = "feedstore.idempotency_key"  # the request's key, parsed by the guard


class EntryPath(PathConverter):
    """A key after /d/, except the server's own resources, so that they answer 405 to writes.

    Any character, newlines included (`.` and `$` would stop at one and answer 404): a bad key is
    validate_key's 400."""

    regex = rf"(?!(?:{'|'.join(RESERVED_RESOURCES)})\Z)[^/][\s\S]*?"


class Codec(Protocol):
    """What codec_json and codec_xml both offer: one format's readers and writers."""

    CONTENT_TYPE: str

    def loads(self, body: bytes, limits: Limits, schema: Schema | None = None) -> list[Entry]: ...
    def loads_documents(self, body: bytes, limits: Limits, schema: Schema | None = None) -> Any: ...
    def loads_message(self, body: bytes, limits: Limits) -> str | None: ...
    def dumps(self, documents: Iterable[Mapping[str, Any]]) -> bytes: ...
    def dumps_stored(self, raw_documents: Iterable[bytes]) -> bytes: ...
    def dumps_message(
        self,
        title: str,
        error: Mapping[str, Any] | None = None,
        *,
        subtitle: str | None = None,
        links: Sequence[Mapping[str, str]] = (),
        rights: str | None = None,
    ) -> bytes: ...


@dataclass(frozen=True)
class Feedstore:
    """What the views need, kept in `app.extensions["feedstore"]`."""

    store: Store
    settings: Settings


def get_feedstore() -> Feedstore:
    feedstore: Feedstore = current_flask().extensions["feedstore"]
    return feedstore


def access() -> Access | None:
    """The read authorization of this request's principal; None with auth off."""
    config = settings()
    if not config.auth_on:
        return None
    return Access(get_feedstore().store, config.default_grants, current_principal())


# -- routes ---------------------------------------------------------------------------------


@bp.before_request
def guard() -> None:
    """The CSRF guard first, then the options the method takes, before any view runs; then
    the method override (guard_method_override)."""
    current = current_request()
    method, args, environ = current.method, current.args, current.environ
    # X-Requested-With is what jQuery sends: settle the common case without scanning headers.
    if method in WRITE_METHODS and environ.get("HTTP_X_REQUESTED_WITH") is None:
        negotiation.check_csrf(current.headers.keys(), current.mimetype)
    entry_view = current.endpoint in ENTRY_VIEWS
    if args and entry_view:
        options.check(method, args.keys())
        bulk.check_options(args.keys())  # `_async`: refused, not ignored
    if method in WRITE_METHODS and entry_view:
        check_idempotency_key()
    guard_method_override(environ.get(negotiation.SENT_METHOD, method), environ)


def guard_method_override(sent: str, environ: Mapping[str, Any]) -> None:
    """An override header is refused on any method but POST, and with a method it can't ask."""
    # Without either header (most requests) there is nothing to refuse.
    if "HTTP_X_HTTP_METHOD_OVERRIDE" in environ or "HTTP_X_METHOD_OVERRIDE" in environ:
        negotiation.method_override(sent, override_header())


@bp.get("/d/", defaults={"path": ""}, strict_slashes=False)
@bp.get("/d/<entry_path:path>")
def read(path: str) -> Response:
    key = validate_key(request_key())
    if "_changes" in request.args:
        return read_changes(key)
    change_feed.check_without_changes(request.args)
    query_module.check_options(request.args)
    pagination.check_options(request.args)
    counter_option = options.counter_option(request.args)
    if counter_option is not None:
        return counter(key, counter_option)
    if "_access" in request.args:
        return access_answer(key)
    if "_history" in request.args:
        return read_history(key)
    if "r" in request.args:
        return read_revision(key)
    # When a URL names several read modes, vte.cx's order decides: pagination, page number,
    # count, entry, feed.
    if "_pagination" in request.args:
        return build_page_index(key)
    if "c" in request.args and "n" not in request.args:
        return read_feed(key, counting=True)
    if "n" in request.args or ("f" in request.args and "e" not in request.args):
        return read_feed(key, counting=False)
    return read_entry(key)


@bp.post("/d/", defaults={"path": ""}, strict_slashes=False)
@bp.post("/d/<entry_path:path>")
def create(path: str) -> Response:
    parent = validate_key(request_key())
    entries = decode_entries()
    conditions = request_conditions(single=len(entries) == 1)
    return respond(writes.creates(entries, parent, conditions), created)


def created(written: Sequence[Written]) -> Response:
    headers = {}
    if len(written) == 1:
        headers = {"Location": f"/d{written[0].key}", "ETag": negotiation.etag(written[0].revision)}
    return message(",".join(w.key for w in written), 201, headers)


@bp.put("/d/", defaults={"path": ""}, strict_slashes=False)
@bp.put("/d/<entry_path:path>")
def update(path: str) -> Response:
    # The request read once and handed down (context.py says why).
    current = current_request()
    args = current.args
    if "_revert" in args:
        # A write of its own: no other option applies to it (the fuzzer found a counter option
        # taking over and the revision going unread).
        others = sorted(name for name in args if name.startswith("_") and name != "_revert")
        if others:
            raise InvalidOption(f"_revert and {others[0]} can't be combined.")
        return revert(validate_key(request_key()))
    counter_option = options.counter_option(args)
    if counter_option is not None:
        return counter(validate_key(request_key()), counter_option)
    mode, config = bulk.mode(args), settings()
    limits = config.limits if mode is None else config.bulk_limits
    entries = writes.target_entries(
        decode_entries(limits, current), validate_key(request_key(current))
    )
    # If-Match and If-None-Match name one entry: a bulk is refused them, as a multi-entry PUT.
    conditions = request_conditions(single=len(entries) == 1 and mode is None, current=current)
    adding, removing = "_addalias" in args, "_removealias" in args
    if adding and removing:
        raise InvalidOption("_addalias and _removealias can't be combined.")
    if adding or removing:
        write_list = writes.alias_edits(entries, adding, conditions, config)
    else:
        write_list = writes.puts(entries, conditions, config, merge="_merge" in args)
    return respond(write_list, updated, mode)


def updated(written: Sequence[Written]) -> Response:
    headers = merged_header(written)
    if "return=representation" in (header("Prefer") or ""):
        return feed_response([w.document for w in written if w.document is not None], 200, headers)
    if len(written) == 1 and written[0].document is not None:
        headers["ETag"] = negotiation.etag(written[0].revision)
    return message("Updated.", 200, headers)


@bp.patch("/d/", defaults={"path": ""}, strict_slashes=False)
@bp.patch("/d/<entry_path:path>")
def partial_update(path: str) -> Response:
    target = validate_key(request_key())
    return respond(patch_writes(target), functools.partial(patched, target))


def patched(target: str, written: Sequence[Written]) -> Response:
    headers = merged_header(written)
    if len(written) == 1:
        headers["ETag"] = negotiation.etag(written[0].revision)
    status = 201 if any(w.created for w in written) else 200
    if "return=minimal" in (header("Prefer") or ""):
        return Response(status=204, headers=headers)
    documents = [w.document for w in written if w.document is not None]
    return feed_response(documents, status, headers, single=target != "/")


@bp.delete("/d/", defaults={"path": ""}, strict_slashes=False)
@bp.delete("/d/<entry_path:path>")
def delete(path: str) -> Response:
    key, revision = request_key(), writes.parse_revision(request.args.get("r"))
    if "_clearfolder" in request.args:
        conditions = request_conditions(single=True)
        write_list = [writes.clear(key, revision, conditions, settings())]
    elif key == "/":
        # A feed of the entries to delete, all or none.
        entries = writes.target_entries(decode_entries(), key)
        conditions = request_conditions(single=len(entries) == 1)
        write_list = writes.deletes(entries, "_rf" in request.args, conditions, settings())
    else:
        conditions = request_conditions(single=True)
        write = writes.delete(key, revision, "_rf" in request.args, conditions, settings())
        write_list = [write]
    return respond(write_list, deleted)


def deleted(written: Sequence[Written]) -> Response:
    return message("The folder has been emptied." if "_clearfolder" in request.args else "Deleted.")


@bp.get("/d/_schema")
def schema() -> Response:
    document = get_feedstore().store.schema_document()
    if document is None:
        return Response(status=204)
    return Response(codec_json.dumps_document(document), 200, content_type=codec_json.CONTENT_TYPE)


@bp.get("/d/_openapi")
@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 document, with the loaded schema's custom fields and the JSON style."""
    body, tag = openapi.rendered(get_feedstore().store.schema(), settings().json_style)
    headers = {"ETag": tag}
    if request.if_none_match.contains_weak(tag.strip('"')):
        return Response(status=304, headers=headers)
    return Response(body, 200, headers, content_type=openapi.CONTENT_TYPE)


def revert(key: str) -> Response:
    """PUT ?_revert=<n>: write revision n's fields again, as a new revision (API.md §15)."""
    if request_body().strip():
        raise InvalidOption(f"PUT ?_revert takes no body. Key = {key}", key=key)
    revision = history.parse_revision(request.args["_revert"], "_revert")
    store = get_feedstore().store
    # Reading the revision needs R on the key now; the write is authorized as any (U, or C).
    if (checker := access()) is not None:
        checker.require(key, "R")
    raw, _ = store.revision(key, revision)
    write = writes.revert(key, raw, request_conditions(single=True), settings())
    return respond([write], reverted)


def reverted(written: Sequence[Written]) -> Response:
    return message("Updated.", 200, {"ETag": negotiation.etag(written[0].revision)})


def counter(key: str, option: str) -> Response:
    """A vte.cx counter request (API.md §8) instead of an entry request.

    It carries nothing else: preconditions, and a body (but the range a PUT `_rangeids` sends
    as a message feed), are 400, never silently ignored.
    """
    body = request_body()
    writing, sent_range = request.method == "PUT", None
    if body.strip() and not (writing and option == "_rangeids"):
        raise InvalidOption(f"A counter request takes no body: {option}")
    if any(request.headers.get(name, "").strip() for name in ("If-Match", "If-None-Match")):
        raise InvalidOption(f"If-Match and If-None-Match don't apply to counters: {option}")
    mode = bulk.mode(request.args)
    if mode is not None:
        raise InvalidOption(f"{mode.value} doesn't apply to counters: {option}")
    if body.strip():
        codec = CODECS[negotiation.body_format(request.mimetype, body)]
        sent_range = codec.loads_message(body, settings().limits)
    checker = access()
    if checker is not None:
        reading = option == "_getids" or (option == "_rangeids" and not writing)
        checker.require(key, "R" if reading else "U")
    store, value = get_feedstore().store, request.args[option]
    once = idempotent(counted) if writing else None  # a GET ignores an Idempotency-Key
    if once is None:
        return message(counter_module.answer(store, key, option, value, writing, sent_range))
    return answered(
        store.once(
            key,
            current_principal(),
            once,
            lambda lease: counter_module.answer(
                store, key, option, value, writing, sent_range, lease
            ),
        )
    )


def counted(result: Any) -> Response:
    return message(counter_module.title(result))


@bp.get("/_health")
def health() -> Response:
    get_feedstore().store.ping()
    return message("OK")


# -- reading --------------------------------------------------------------------------------


def read_entry(key: str) -> Response:
    token = authentication.pending_token()
    if token is not None:
        found = read_entry_with_token(key, token)
    else:
        checker = access()
        found = checker.read_entry(key) if checker else get_feedstore().store.get(key)
    if found is None:
        return Response(status=204)
    revision, raw = found
    headers = {"ETag": negotiation.etag(revision)}
    # If-None-Match compares weakly (RFC 9110 §13.1.2): W/"3" is as good as "3" for a cache.
    if "If-None-Match" in request.headers and request.if_none_match.contains_weak(str(revision)):
        return Response(status=304, headers=headers)
    return stored_response([raw], 200, headers, single=True)


def read_entry_with_token(key: str, token: str) -> tuple[int, bytes] | None:
    """The entry, its path's ACLs and the token's record in one round trip; then the token
    authenticates (401 as it would have before the view) and the entry is answered only with R."""
    store = get_feedstore().store
    record, found, mirrors = store.get_guarded_with(token_record(token), key, acl.path(key))
    principal = authentication.get_authenticator().credentials.principal_of_record(token, record)
    authentication.settle(principal)
    return Access(store, settings().default_grants, principal).checked(key, found, mirrors)


def read_revision(key: str) -> Response:
    """`?e&r=<n>`: one revision of an entry, the current one or one its history keeps."""
    history.check_entry_read(request.args)
    revision = history.parse_revision(request.args["r"], "r")
    # Reading history needs R on the key now (history-merge.md §3.3), as Kinto's rule.
    if (checker := access()) is not None:
        checker.require(key, "R")
    raw, current = get_feedstore().store.revision(key, revision)
    headers = {"ETag": negotiation.etag(revision)}
    if not current:
        headers["Cache-Control"] = IMMUTABLE
    if "If-None-Match" in request.headers and request.if_none_match.contains_weak(str(revision)):
        return Response(status=304, headers=headers)
    return stored_response([raw], 200, headers, single=True)


def read_history(key: str) -> Response:
    """`?_history[&l=][&p=]`: the entry's revisions, newest first, a page at a time."""
    below, limit = history.parse_page(request.args)
    # Reading history needs R on the key now (history-merge.md §3.3), as Kinto's rule.
    if (checker := access()) is not None:
        checker.require(key, "R")
    documents, following = get_feedstore().store.revisions(key, below, limit)
    if not documents:
        return Response(status=204)
    headers = {}
    if following is not None:
        headers["x-vtecx-nextpage"] = str(following)
        headers["Link"] = f'</d{key}?{next_query(str(following))}>; rel="next"'
    return stored_response(documents, 200, headers)


def read_changes(key: str) -> Response:
    """`?_changes[&_since=<seq>|now][&l=][&e][&_wait=]`: the events of `key`'s subtree after a
    sequence, oldest first (API.md §18); as Server-Sent Events for `text/event-stream`."""
    asked = change_feed.ChangeRequest.parse(request.args, header("Last-Event-ID"))
    store, checker, hub = get_feedstore().store, access(), change_hub()
    since = asked.start(store, key)
    if "text/event-stream" in (header("Accept") or ""):
        hub.check_room()  # 503 now: once the stream's answer began, it can't be one
        first = change_feed.read(store, key, since, asked)  # and a 410 (ChangesExpired) too
        lasting = settings().changes_stream_max
        events = change_feed.event_stream(
            store, checker, hub, key, asked, since, lasting, request.environ, first
        )
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(events, 200, headers, content_type="text/event-stream; charset=utf-8")
    longest = settings().changes_wait_max
    page = change_feed.wait_for(store, hub, key, asked, since, longest, request.environ)
    shown = change_feed.shown(store, checker, page, asked.entries)
    headers = {"x-feedstore-seq": page.seq}
    href = None
    if page.more:
        href = f"/d{key}?{next_query(page.seq, '_since')}"
        headers |= {"x-vtecx-nextpage": page.seq, "Link": f'<{href}>; rel="next"'}
    if not shown:
        return Response(status=204, headers=headers)
    if answer_codec() is codec_xml:
        body = codec_xml.dumps_changes(shown, href)
        return Response(body, 200, headers, content_type=codec_xml.CONTENT_TYPE)
    return feed_response(shown, 200, headers)


def change_hub() -> ChangeHub:
    hub: ChangeHub = current_app.extensions["feedstore_change_hub"]
    return hub


@dataclass(frozen=True)
class FeedQuery:
    """A feed request's query, the scope its cursors are bound to, and the reader that runs it."""

    parent: str
    query: query_module.Query
    scope: str
    reader: FeedReader
    sealed: bool = False  # auth on: cursors are encrypted, and bound to the principal

    def page_index(self) -> PageIndex:
        store, ttl = get_feedstore().store, settings().pagination_ttl
        return PageIndex(
            store, self.reader, self.parent, self.query, self.scope, ttl, sealed=self.sealed
        )


def feed_query(key: str) -> FeedQuery:
    """The feed request's query; with auth on, R on the parent's children is required, and the
    children the caller can't read are hidden (API.md §16.4)."""
    store, fetch_limit = get_feedstore().store, settings().fetch_limit
    schema = store.schema()
    query = query_module.parse(list(request.args.items(multi=True)), schema, fetch_limit)
    scope = f"{key}\n{query.fingerprint()}"
    checker = access()
    if checker is None:
        return FeedQuery(key, query, scope, FeedReader(store, schema, fetch_limit))
    checker.require(key, "R", layer=True)
    reader = FeedReader(store, schema, fetch_limit, checker.children(key))
    return FeedQuery(key, query, f"{scope}\n{current_principal().name}", reader, sealed=True)


def read_feed(key: str, counting: bool) -> Response:
    """`?f` (a page of children), `?n=<k>` (a numbered page, §4.10) or `?c` (their count), with
    filters, sort and cursor (API.md §4)."""
    store, feed = get_feedstore().store, feed_query(key)
    after = None
    if "n" in request.args:
        after = feed.page_index().start(pagination.page_number(request.args["n"]))
    elif "p" in request.args:
        after = cursor.decode(request.args["p"], feed.scope, store.existing_secret(), feed.sealed)
    reader, query = feed.reader, feed.query
    if counting:
        page = reader.count(key, query, after)
    else:
        # The first page of a listing carries the change feed's sequence: list, then follow.
        first = "p" not in request.args and "n" not in request.args
        page = reader.page(key, query, after, follow=first)
    headers = {} if page.seq is None else {"x-feedstore-seq": page.seq}
    if page.next is not None:
        token = cursor.encode(page.next, feed.scope, store.secret(), feed.sealed)
        headers["x-vtecx-nextpage"] = token
        headers["Link"] = f'</d{key}?{next_query(token)}>; rel="next"'
    status = 206 if page.partial else 200
    if counting:
        return message(str(page.count), status, headers)
    if not page.documents and not page.partial:
        return Response(status=204, headers=headers)
    return stored_response(page.documents, status, headers, nometa=query.nometa)


def access_answer(key: str) -> Response:
    """`?_access`: the caller's rights on `key`, the key whose ACL decided, and the URNs that
    granted them ("admin", "default_acl"; "auth_off" with auth off) (API.md §16.5)."""
    checker = access()
    if checker is None:
        return message("CRUDA", rights="auth_off")
    decision = checker.decide(key)
    return message(decision.letters, subtitle=decision.key, rights=decision.source)


def build_page_index(key: str) -> Response:
    """`?_pagination=<from>,<to>` (API.md §4.10): index the pages, answer vte.cx's summary."""
    built = feed_query(key).page_index().build(PageRange.parse(request.args["_pagination"]))
    links = [{"___rel": "next"}] if built.more else []
    status = 206 if built.partial else 200
    return message(str(built.pages), status, subtitle=str(built.entries), links=links)


def stored_response(
    raw_documents: list[bytes],
    status: int,
    headers: Mapping[str, str],
    nometa: bool = False,
    single: bool = False,
) -> Response:
    """Stored entries in the answer's format; `?_nometa` leaves out the server's fields. In the
    bare JSON style, one entry (`single`) is an object and the others an array."""
    if nometa or "_nometa" in request.args:
        documents = [without_meta(codec_json.loads_stored(raw)) for raw in raw_documents]
        return feed_response(documents, status, headers, single)
    codec = answer_codec()
    if codec is codec_json and settings().json_style == "bare":
        body = codec_json.dumps_stored_bare(raw_documents, single)
    else:
        body = codec.dumps_stored(raw_documents)
    return Response(body, status, dict(headers), content_type=codec.CONTENT_TYPE)


def next_query(cursor: str, name: str = "p") -> str:
    """This request's query (options, filters, format) with the cursor of the next page (in
    `name`: `_since` for a change feed)."""
    # A page number would win over the cursor (§4.1): the next page is named by its cursor only.
    left_out = ("p", "n", name)
    pairs = [(k, value) for k, value in request.args.items(multi=True) if k not in left_out]
    return "&".join(
        quote(k, safe="") + (f"={quote(value, safe='*')}" if value else "")
        for k, value in [*pairs, (name, cursor)]
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
        merge_base = writes.parse_merge_base(header("Merge-Base"), conditions)
        return [
            writes.standard_patch(
                kind,
                target,
                document,
                conditions,
                settings(),
                upsert,
                "_merge" in request.args,
                merge_base,
            )
        ]
    codec = CODECS[body_format]
    documents = codec.loads_documents(body, limits, body_schema(codec))
    entries = codec_json.entries_from(documents, limits, directives=True)
    if target != "/":
        if len(entries) != 1:
            raise InvalidBody(f"PATCH /d{target} takes one entry.")
        writes.check_id_key(entries[0], target)
        entries[0].key = target
    entries = writes.target_entries(entries, target)
    conditions = request_conditions(single=len(entries) == 1)
    merge_base = writes.parse_merge_base(header("Merge-Base"), conditions)
    if merge_base is not None and len(entries) != 1:
        raise InvalidOption("Merge-Base applies to one entry: use the ids.")
    return writes.merges(
        documents,
        entries,
        conditions,
        settings(),
        keep_unmentioned=request.headers.get("PATCHTYPE", "").upper() == "MERGE",
        upsert=upsert,
        merge="_merge" in request.args,
        merge_base=merge_base,
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


def request_conditions(single: bool, current: Request | None = None) -> writes.Conditions:
    environ = (current or current_request()).environ
    return writes.Conditions.from_headers(
        environ.get("HTTP_IF_MATCH"), environ.get("HTTP_IF_NONE_MATCH"), single
    )


def settings() -> Settings:
    return get_feedstore().settings


def merged_header(written: Sequence[Written]) -> dict[str, str]:
    """`x-feedstore-merged` when a stale write was merged: its base revision, or for several
    entries each merged key with its base (`/a/1=3, /a/2=5`)."""
    merged = [w for w in written if w.merged_from is not None]
    if not merged:
        return {}
    if len(written) == 1:
        return {"x-feedstore-merged": str(merged[0].merged_from)}
    return {"x-feedstore-merged": ", ".join(f"{w.key}={w.merged_from}" for w in merged)}


def respond(
    write_list: list[Write],
    render: Callable[[Sequence[Written]], Response],
    mode: bulk.Mode | None = None,
) -> Response:
    """A write request's answer, `render` of what it wrote: one transaction, or a bulk's chunks
    of `max_entries` (API.md §5.6). With an Idempotency-Key, the answer is made inside the
    transaction and stored with the data, or an earlier one replayed (API.md §19)."""
    feedstore = get_feedstore()
    store, config = feedstore.store, feedstore.settings
    once = idempotent(render)
    if once is not None:
        if mode is not None and bulk.transactions(store, write_list, config.max_entries) > 1:
            raise IdempotencyKeyNotAccepted(
                f"{mode.value} of {len(write_list)} entries takes more than one transaction "
                f"(max_entries = {config.max_entries} per chunk, one tree per chunk on Redis "
                "Cluster): send each chunk as a request of its own, with a key of its own."
            )
        return answered(store.write_once(write_list, current_principal(), once))
    if mode is None:
        return render(write_as_caller(write_list, store))
    written = bulk.write(
        store, write_list, mode, config.max_entries, config.bulk_workers, current_principal()
    )
    return render(written)


def check_idempotency_key() -> None:
    """Before a write's view: 400 for an invalid Idempotency-Key, or for none where the
    `require_idempotency` setting wants one."""
    environ = current_request().environ
    key = idempotency.parse_key(environ.get("HTTP_IDEMPOTENCY_KEY"))
    environ[IDEMPOTENCY_KEY] = key
    if key is None and settings().require_idempotency:
        target = request_key()
        if settings().requires_idempotency(target):
            raise IdempotencyKeyRequired(target)


def idempotent(render: Callable[[Any], Response]) -> idempotency.Request | None:
    """The request's Idempotency-Key, fingerprint and answer (`render` of the write's result)
    for Store.write_once; None without the header. The fingerprint covers all a write's
    answer depends on: method (after an override), path, query, body, and the headers that
    change it."""
    environ = current_request().environ
    if IDEMPOTENCY_KEY not in environ:
        check_idempotency_key()
    key: str | None = environ[IDEMPOTENCY_KEY]
    if key is None:
        return None
    parts = [environ.get(name) for name in FINGERPRINTED]
    parts.append(request_body())

    def made(result: Any) -> idempotency.Answer:
        response = render(result)
        environ[RESPONSE] = response  # the fresh answer is sent as made
        return idempotency.Answer.of(
            response.status_code, response.headers.items(), response.get_data()
        )

    return idempotency.Request(
        key, idempotency.fingerprint(parts), settings().idempotency_ttl, made
    )


def answered(outcome: idempotency.Outcome[Any]) -> Response:
    """The answer an idempotent write made, or replays (`Idempotency-Replayed: true`)."""
    response: Response | None = request.environ.pop(RESPONSE, None)
    if response is not None and not outcome.replayed:
        return response
    answer = outcome.answer
    headers = [*answer.headers, *([(idempotency.REPLAYED, "true")] if outcome.replayed else [])]
    return Response(answer.body, answer.status, headers)


def write_as_caller(writes: Sequence[Write], store: Store | None = None) -> list[Written]:
    """Store.write (of the app's Store, unless given one) as the request's principal; a token
    left to the write (authentication's write_token) is authenticated inside its transaction,
    in the same round trip as its reads."""
    store = store or get_feedstore().store
    token = authentication.deferred_token()
    if token is None:
        return store.write(writes, current_principal())
    try:
        return store.write(writes, token=token)
    finally:
        authentication.settle_write(token)


def decode_entries(limits: Limits | None = None, current: Request | None = None) -> list[Entry]:
    """The entries of a POST or PUT body (of `current`, the request unless given), in whichever
    format it is (API.md §1.1)."""
    limits = limits or settings().limits
    current = current or current_request()
    body = request_body(current)
    if not body.strip():
        return codec_json.entries_from([], limits)
    codec = CODECS[negotiation.body_format(current.mimetype, body)]
    return codec.loads(body, limits, body_schema(codec))


def request_body(current: Request | None = None) -> bytes:
    """The request body, less a leading UTF-8 byte order mark (Windows tools write one, §2.2)."""
    current = current or current_request()
    body: bytes | None = current.environ.get(BODY)
    if body is None:
        body = current.get_data(cache=True, parse_form_data=False)
    return body.removeprefix(codecs.BOM_UTF8)


def body_schema(codec: Codec) -> Schema | None:
    """The schema types XML values; JSON carries its own types, so it needs no Redis read."""
    return get_feedstore().store.schema() if codec is codec_xml else None


# -- answering ------------------------------------------------------------------------------


def without_meta(document: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name not in META_FIELDS}


def request_key(current: Request | None = None) -> str:
    """The key a /d/ URL (of `current`, the request unless given) names: the path after /d,
    percent-decoded, `/` for /d/.

    werkzeug decodes the path with U+FFFD for bytes that aren't UTF-8; such a path names no key
    (InvalidKey), which only the raw bytes of PATH_INFO tell from a key that holds a real U+FFFD.
    """
    current = current or current_request()
    path = current.path
    if "\ufffd" in path:
        check_utf8_path(current.environ.get("PATH_INFO", ""))
    return path[len("/d") :] or "/"


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


def header(name: str) -> str | None:
    """A request header's value, None when it is absent: what request.headers.get reads, without
    the KeyError werkzeug raises and catches for each absent one (most of a write's headers)."""
    environ = current_request().environ
    value: str | None = environ.get("HTTP_" + name.upper().replace("-", "_"))
    return value


def override_header() -> str | None:
    """The method override asked for; an empty header is none, as MethodOverride reads it."""
    return header("X-HTTP-Method-Override") or header("X-Method-Override") or None


def answer_codec() -> Codec:
    """The codec of the answer: `?x` or an XML Accept header picks Atom XML (API.md §1.2)."""
    current = current_request()
    accept = current.environ.get("HTTP_ACCEPT") or ""
    return CODECS[negotiation.answer_format(current.args, accept)]


def feed_response(
    documents: Sequence[Mapping[str, Any]],
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    single: bool = False,
) -> Response:
    """Entries in the answer's format: a feed, or in the bare JSON style an array (an object for
    one entry, `single`), as vte.cx answers them (API.md §2.3)."""
    codec = answer_codec()
    if codec is codec_json and settings().json_style == "bare":
        body = codec_json.dumps_bare(documents, single)
    else:
        body = codec.dumps(documents)
    return Response(body, status, dict(headers or {}), content_type=codec.CONTENT_TYPE)


def message(
    title: str,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    subtitle: str | None = None,
    links: Sequence[Mapping[str, str]] = (),
    rights: str | None = None,
) -> Response:
    codec = answer_codec()
    body = codec.dumps_message(title, subtitle=subtitle, links=links, rights=rights)
    return Response(body, status, dict(headers or {}), content_type=codec.CONTENT_TYPE)


def error_response(error: FeedstoreError) -> Response:
    """The one rendering of every error: a message feed with the `error` member (API.md §7)."""
    error = authentication.outranking(error)
    access_log.note(request.environ, access_log.ERROR_CODE, error.code)
    codec = answer_codec()
    body = codec.dumps_message(error.message, error.to_dict())
    return Response(body, error.status, error.headers, content_type=codec.CONTENT_TYPE)
