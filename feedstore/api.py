"""The /d/ blueprint: read the request, make one Store call, encode the answer.

Every route is listed here; no view touches Redis or builds a body by hand.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, request

from feedstore import codec_json, negotiation
from feedstore.entry import Entry, parent_of, validate_entry_key, validate_key
from feedstore.errors import (
    FeedstoreError,
    InvalidOption,
    KeyRequired,
    PreconditionRequired,
    UnsupportedMediaType,
    collect,
)
from feedstore.negotiation import IfMatch
from feedstore.settings import Settings
from feedstore.store import Action, Store, Write

bp = Blueprint("api", __name__)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


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
    if request.method in WRITE_METHODS:
        negotiation.check_csrf(request.headers.keys(), request.mimetype)


@bp.get("/d/", defaults={"path": ""}, strict_slashes=False)
@bp.get("/d/<path:path>")
def read(path: str) -> Response:
    key = validate_key(request_key())
    if "f" in request.args:
        return read_feed(key)
    if "c" in request.args:
        return message(str(get_feedstore().store.count(key)))
    return read_entry(key)


@bp.post("/d/", defaults={"path": ""}, strict_slashes=False)
@bp.post("/d/<path:path>")
def create(path: str) -> Response:
    negotiation.method_override(request.method, override_header())
    parent = validate_key(request_key())
    entries = decode_entries()
    unnumbered = [entry for entry in entries if entry.key is None]
    if unnumbered:
        if parent == "/":
            raise KeyRequired()
        for entry, key in zip(
            unnumbered, get_feedstore().store.number(parent, len(unnumbered)), strict=True
        ):
            entry.key = key
    check_entry_keys(entries)
    writes = [Write(Action.CREATE, str(e.key), e.fields, index=e.index) for e in entries]
    written = get_feedstore().store.write(writes)
    headers = {}
    if len(written) == 1:
        headers = {"Location": f"/d{written[0].key}", "ETag": negotiation.etag(written[0].revision)}
    return message(",".join(w.key for w in written), 201, headers)


@bp.put("/d/", defaults={"path": ""}, strict_slashes=False)
@bp.put("/d/<path:path>")
def update(path: str) -> Response:
    target = validate_key(request_key())
    entries = decode_entries()
    if target != "/" and len(entries) == 1 and entries[0].key is None:
        entries[0].key = target
    collect([KeyRequired(field=f"entry[{e.index}]") for e in entries if e.key is None])
    check_entry_keys(entries)
    if_match, if_none_match = preconditions(single=len(entries) == 1)
    writes = [put_write(entry, if_match, if_none_match) for entry in entries]
    written = get_feedstore().store.write(writes)
    if "return=representation" in request.headers.get("Prefer", ""):
        body = codec_json.dumps(w.document for w in written if w.document is not None)
        return Response(body, 200, content_type=codec_json.CONTENT_TYPE)
    single = len(written) == 1 and written[0].document is not None
    return message(
        "Updated.", 200, {"ETag": negotiation.etag(written[0].revision)} if single else {}
    )


@bp.delete("/d/<path:path>")
def delete(path: str) -> Response:
    key = validate_entry_key(request_key())
    revision = parse_revision(request.args.get("r"))
    if_match, _ = preconditions(single=True)
    write = Write(
        Action.DELETE, key, revision=revision, if_match=if_match, recursive="_rf" in request.args
    )
    require_condition(write)
    get_feedstore().store.write([write])
    return message("Deleted.")


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
    if request.if_none_match.contains(str(revision)):
        return Response(status=304, headers=headers)
    return Response(
        codec_json.dumps_stored([raw]), 200, headers, content_type=codec_json.CONTENT_TYPE
    )


def read_feed(key: str) -> Response:
    limit = parse_limit(request.args.get("l"), get_feedstore().settings.fetch_limit)
    after = decode_cursor(request.args["p"], key) if "p" in request.args else None
    page = get_feedstore().store.children(key, limit, after)
    if not page.documents:
        return Response(status=204)
    headers = {}
    if page.last is not None:
        cursor = encode_cursor(page.last)
        headers["x-vtecx-nextpage"] = cursor
        headers["Link"] = f'</d{key if key != "/" else "/"}?f&l={limit}&p={cursor}>; rel="next"'
    body = codec_json.dumps_stored(page.documents)
    return Response(body, 200, headers, content_type=codec_json.CONTENT_TYPE)


def parse_limit(value: str | None, fetch_limit: int) -> int:
    """`l=<n>` (1..1000) or `l=*` (everything, up to the fetch limit)."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    if value == "*":
        return fetch_limit
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidOption(f"Limit must be a number from 1 to {MAX_LIMIT}, or *: l={value}")
    return int(value)


def encode_cursor(last_key: str) -> str:
    """An opaque, URL-safe cursor: the last key returned, base64url without padding."""
    return base64.urlsafe_b64encode(last_key.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str, parent: str) -> str:
    """The key a cursor continues after; 400 when it isn't one of `parent`'s children."""
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        validate_key(key)
    except (binascii.Error, UnicodeDecodeError, ValueError, FeedstoreError) as e:
        raise InvalidOption(f"Cursor is invalid: p={cursor}") from e
    if parent_of(key) != parent:
        raise InvalidOption(f"Cursor is invalid: p={cursor}")
    return key


# -- writing --------------------------------------------------------------------------------


def decode_entries() -> list[Entry]:
    body = request.get_data(cache=True, parse_form_data=False)
    if not body.strip():
        return codec_json.entries_from([], get_feedstore().settings.limits)
    if negotiation.body_format(request.mimetype, body) is negotiation.Format.XML:
        raise UnsupportedMediaType("XML request bodies are not supported yet.")
    return codec_json.loads(body, get_feedstore().settings.limits)


def check_entry_keys(entries: list[Entry]) -> None:
    errors: list[FeedstoreError] = []
    for entry in entries:
        try:
            validate_entry_key(str(entry.key))
        except FeedstoreError as error:
            errors.append(error)
    collect(errors)


def put_write(entry: Entry, if_match: IfMatch | None, if_none_match: bool) -> Write:
    key = str(entry.key)
    revision = entry.revision
    if isinstance(if_match, frozenset) and revision is not None and revision not in if_match:
        raise InvalidOption(f"If-Match does not agree with the id. Key = {key}", key=key)
    action = Action.DELETE if entry.id is not None and entry.id.delete else Action.PUT
    write = Write(action, key, entry.fields, revision, if_match, if_none_match, index=entry.index)
    require_condition(write)
    return write


def preconditions(single: bool) -> tuple[IfMatch | None, bool]:
    if_match = negotiation.parse_if_match(request.headers.get("If-Match"))
    if_none_match = negotiation.parse_if_none_match(request.headers.get("If-None-Match"))
    if not single and (if_match is not None or if_none_match):
        raise InvalidOption("If-Match and If-None-Match apply to one entry: use the ids.")
    return if_match, if_none_match


def require_condition(write: Write) -> None:
    """428 for a forced write under a `require_revision` prefix."""
    conditional = write.revision is not None or write.if_match is not None or write.if_none_match
    if not conditional and get_feedstore().settings.requires_revision(write.key):
        raise PreconditionRequired(write.key)


def parse_revision(value: str | None) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise InvalidOption(f"Revision is invalid: r={value}")
    return int(value)


# -- answering ------------------------------------------------------------------------------


def request_key() -> str:
    """The key a /d/ URL names: the path after /d, percent-decoded, `/` for /d/."""
    return request.path[len("/d") :] or "/"


def override_header() -> str | None:
    return request.headers.get("X-HTTP-Method-Override") or request.headers.get("X-Method-Override")


def message(title: str, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = codec_json.dumps_message(title)
    return Response(body, status, dict(headers or {}), content_type=codec_json.CONTENT_TYPE)


def error_response(error: FeedstoreError) -> Response:
    """The one rendering of every error: a message feed with the `error` member (API.md §7)."""
    body: Any = codec_json.dumps_message(error.message, error.to_dict())
    return Response(body, error.status, error.headers, content_type=codec_json.CONTENT_TYPE)
