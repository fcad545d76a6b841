"""Every error is the same body: a message feed plus the machine-readable `error` (API.md §7)."""

from __future__ import annotations

import inspect
from typing import Any

import orjson
import pytest
import redis
from flask.testing import FlaskClient
from lxml import etree

from feedstore import errors
from feedstore.codec_xml import ATOM, FIELDS
from tests.conftest import snapshot

FORM = "application/x-www-form-urlencoded"
WIDE = str(2**64)  # a revision no Redis integer holds
SELF = {"___href": "/p/1", "___rel": "self"}


def error_classes() -> list[type[errors.FeedstoreError]]:
    """Every class but EntryErrors and its kind, which are made of the others (tested below)."""
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.FeedstoreError) and not issubclass(cls, errors.EntryErrors)
    ]


def make(cls: type[errors.FeedstoreError]) -> errors.FeedstoreError:
    """An instance of any error class, whatever its constructor asks for."""
    values = {"key": "/k", "parent": "/", "limit": 3, "count": 4, "revision": 2, "current": None}
    parameters = inspect.signature(cls.__init__).parameters.values()
    positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD][1:]
    return cls(*(values.get(name, "detail") for name in positional))


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_class_has_the_documented_shape(cls: type[errors.FeedstoreError]) -> None:
    error = make(cls)
    body = error.to_dict()
    assert body["status"] == cls.status and 400 <= cls.status <= 503
    assert body["code"] == cls.code and body["code"].islower() and " " not in body["code"]
    assert isinstance(body["entries"], list)
    assert error.message and not error.message.startswith(" ")


def test_entry_errors_list_every_entry_under_the_first_status() -> None:
    error = errors.EntryErrors([errors.NotFound("/a"), errors.DuplicatedKey("/b")])
    body = error.to_dict()
    assert (error.status, body["code"], error.message) == (404, "not_found", "No entry. Key = /a")
    assert [(e["key"], e["code"]) for e in body["entries"]] == [
        ("/a", "not_found"),
        ("/b", "duplicated_key"),
    ]


def deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


def body(document: Any) -> bytes:
    return orjson.dumps(document)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<entry><link href="/p/1" rel="self"/><title>&lol3;</title></entry>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<entry><link href="/p/1" rel="self"/><title>&xxe;</title></entry>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?><!DOCTYPE entry SYSTEM "http://127.0.0.1:9/x.dtd">
<entry><link href="/p/1" rel="self"/></entry>"""

# (method, url, body, headers, status, title or title prefix, code)
BAD_INPUT: list[tuple[str, str, bytes | None, dict[str, str], int, str, str]] = [
    ("PUT", "/d/", b'{"feed": [', {}, 400, "Request format is invalid: ", "invalid_body"),
    (
        "PUT",
        "/d/",
        b"hello",
        {"Content-Type": "text/plain"},
        400,
        "Request format is invalid: the body is neither JSON nor XML.",
        "invalid_body",
    ),
    (
        "PUT",
        "/d/",
        b"{}",
        {"Content-Type": "image/png"},
        415,
        "Unsupported media type: image/png",
        "unsupported_media_type",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [{"___href": "p/1", "___rel": "self"}]}),
        {},
        400,
        "Key must start with a slash. p/1",
        "invalid_key",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [{"___href": "/p/1/", "___rel": "self"}]}),
        {},
        400,
        "Key must not end with a slash. /p/1/",
        "invalid_key",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [{"___href": "/p//1", "___rel": "self"}]}),
        {},
        400,
        "Key must not contain an empty segment. /p//1",
        "invalid_key",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [{"___href": "/p/<1>", "___rel": "self"}]}),
        {},
        400,
        "Key must not contain any prohibited characters. /p/<1>",
        "invalid_key",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [{"___href": "/p/..", "___rel": "self"}]}),
        {},
        400,
        "Key must not contain a . or .. segment. /p/..",
        "invalid_key",
    ),
    (
        "PUT",
        "/d/p/%2E/1",
        body({"title": "x"}),
        {},
        400,
        "Key must not contain a . or .. segment. /p/./1",
        "invalid_key",
    ),
    (
        "GET",
        "/d/p/..?e",
        None,
        {},
        400,
        "Key must not contain a . or .. segment. /p/..",
        "invalid_key",
    ),
    (
        "PUT",
        "/d/",
        body({"id": "/p/../1,1", "link": [SELF]}),
        {},
        400,
        "ID format is invalid. /p/../1,1 has an invalid key.",
        "invalid_id",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [{"___href": "/p" * 11, "___rel": "self"}]}),
        {},
        400,
        "Key is too deep. " + "/p" * 11,
        "invalid_key",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [{"___href": "/_p", "___rel": "self"}]}),
        {},
        400,
        "Key is reserved for the server. /_p",
        "invalid_key",
    ),
    (
        "PUT",
        "/d/",
        body({"id": "/p/1", "link": [SELF]}),
        {},
        400,
        "ID format is invalid. /p/1 has no revision.",
        "invalid_id",
    ),
    (
        "PUT",
        "/d/",
        body({"id": "/p/1,abc", "link": [SELF]}),
        {},
        400,
        "ID format is invalid. /p/1,abc has an invalid revision.",
        "invalid_id",
    ),
    (
        "PUT",
        "/d/",
        body({"id": "/p/1,-2", "link": [SELF]}),
        {},
        400,
        "ID format is invalid. /p/1,-2 has an invalid revision.",
        "invalid_id",
    ),
    (
        "PUT",
        "/d/",
        body({"id": "/p/2,1", "link": [SELF]}),
        {},
        400,
        "ID format is invalid. /p/2,1 does not match the self link /p/1.",
        "invalid_id",
    ),
    (
        "PUT",
        "/d/",
        body([{"link": [SELF]}] * 3),
        {},
        400,
        "Too many entries. Please keep less than 2 entries.",
        "too_many_entries",
    ),
    (
        "PUT",
        "/d/",
        body([{"link": [SELF]}, {"link": [SELF]}]),
        {},
        400,
        "Keys are duplicated. /p/1",
        "duplicated_keys",
    ),
    ("PUT", "/d/", body({"feed": {"entry": []}}), {}, 400, "Entry is required.", "entry_required"),
    ("PUT", "/d/", b"", {}, 400, "Entry is required.", "entry_required"),
    (
        "PUT",
        "/d/",
        body({"link": [SELF], "x": "y" * 5000}),
        {},
        413,
        "Payload too large.",
        "payload_too_large",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [SELF], "x": "y" * 200}),
        {},
        400,
        "String is longer than 100 characters: x",
        "invalid_field",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [SELF], "x": deep(70)}),
        {},
        400,
        "Request format is invalid: nesting is deeper than 64 levels.",
        "invalid_body",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [SELF], "bad name": 1}),
        {},
        400,
        "Field name is invalid: bad name",
        "invalid_field",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [SELF], "title": ["x"]}),
        {},
        400,
        "title must be a string or an object.",
        "invalid_field",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [SELF], "x": {"a.b": 1}}),
        {},
        400,
        "Field name is invalid: x.a.b",
        "invalid_field",
    ),
    ("PUT", "/d/", body([]), {}, 400, "Entry is required.", "entry_required"),
    (
        "PUT",
        "/d/",
        body("text"),
        {},
        400,
        "Request format is invalid: the body must be a feed, an entry or an array of entries.",
        "invalid_body",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [SELF]}),
        {"If-Match": "abc"},
        400,
        "If-Match is invalid: abc",
        "invalid_option",
    ),
    (
        "PUT",
        "/d/",
        b"<feed><entry>",
        {"Content-Type": "application/atom+xml"},
        400,
        "Request format is invalid: ",
        "invalid_body",
    ),
    (
        "PUT",
        "/d/",
        BILLION_LAUGHS,
        {"Content-Type": "application/xml"},
        400,
        "Request format is invalid: DTDs and entity declarations are not allowed.",
        "invalid_body",
    ),
    (
        "PUT",
        "/d/",
        XXE,
        {"Content-Type": "text/xml"},
        400,
        "Request format is invalid: DTDs and entity declarations are not allowed.",
        "invalid_body",
    ),
    (
        "PUT",
        "/d/",
        EXTERNAL_DTD,
        {"Content-Type": "text/plain"},
        400,
        "Request format is invalid: DTDs and entity declarations are not allowed.",
        "invalid_body",
    ),
    (
        "PUT",
        "/d/?x",
        b"<entry><link href='/p/1' rel='self'/><id>/p/1,9</id></entry>",
        {"Content-Type": "application/atom+xml"},
        409,
        "Optimistic locking failed. Key = /p/1",
        "revision_conflict",
    ),
    (
        "PUT",
        "/d/",
        b"<html><body/></html>",
        {"Content-Type": "application/xml"},
        400,
        "Request format is invalid: the root element must be an Atom feed or entry, not html.",
        "invalid_body",
    ),
    (
        "PUT",
        "/d/",
        b"<entry xmlns:o='urn:other'><link href='/p/1' rel='self'/><o:x/></entry>",
        {"Content-Type": "application/xml"},
        400,
        "Request format is invalid: unknown element {urn:other}x in an entry.",
        "invalid_body",
    ),
    ("POST", "/d/", body({"title": "x"}), {}, 400, "Key is required.", "key_required"),
    ("POST", "/d/", body({"link": [SELF]}), {}, 409, "Duplicated key. /p/1", "duplicated_key"),
    (
        "POST",
        "/d/",
        body({"link": [{"___href": "/q/1", "___rel": "self"}]}),
        {},
        400,
        "Parent path is required. /q",
        "parent_required",
    ),
    (
        "POST",
        "/d/",
        body({"link": [SELF]}),
        {"X-HTTP-Method-Override": "GET"},
        400,
        "Method override is not allowed: GET",
        "invalid_option",
    ),
    (
        "PUT",
        "/d/p/1",
        body({"title": "x"}),
        {"X-HTTP-Method-Override": "PATCH"},
        400,
        "Method override is only allowed on POST.",
        "invalid_option",
    ),
    (
        "PATCH",
        "/d/p/1",
        body({"title": "x"}),
        {"X-Method-Override": "PUT"},
        400,
        "Method override is only allowed on POST.",
        "invalid_option",
    ),
    (
        "DELETE",
        "/d/p/1",
        None,
        {"X-HTTP-Method-Override": "DELETE"},
        400,
        "Method override is only allowed on POST.",
        "invalid_option",
    ),
    (
        "GET",
        "/d/p/1?e",
        None,
        {"X-HTTP-Method-Override": "DELETE"},
        400,
        "Method override is only allowed on POST.",
        "invalid_option",
    ),
    (
        "POST",
        "/d/",
        body({"link": [{"___href": "/a", "___rel": "self"}]}),
        {"Content-Type": FORM, "_bare": "1"},
        403,
        "Missing X-Requested-With header.",
        "missing_csrf_header",
    ),
    (
        "DELETE",
        "/d/p",
        None,
        {},
        400,
        "Can't delete for the child entries exist. /p",
        "has_children",
    ),
    ("DELETE", "/d/p/2", None, {}, 404, "No entry. Key = /p/2", "not_found"),
    ("DELETE", "/d/p/1?r=abc", None, {}, 400, "Revision is invalid: r=abc", "invalid_option"),
    (
        "DELETE",
        "/d/p/1?r=9",
        None,
        {},
        409,
        "Optimistic locking failed. Key = /p/1",
        "revision_conflict",
    ),
    (
        "DELETE",
        "/d/p/1",
        None,
        {"If-Match": '"9"'},
        412,
        "Precondition failed. Key = /p/1",
        "precondition_failed",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [SELF], "id": "/p/1,9"}),
        {},
        409,
        "Optimistic locking failed. Key = /p/1",
        "revision_conflict",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [SELF], "id": "/p/1,1"}),
        {"If-Match": '"2"'},
        400,
        "If-Match does not agree with the id. Key = /p/1",
        "invalid_option",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [SELF]}),
        {"If-None-Match": "*"},
        412,
        "Precondition failed. Key = /p/1",
        "precondition_failed",
    ),
    # A full-width digit (U+FF11) is never read as a number.
    (
        "PUT",
        "/d/",
        body({"link": [SELF]}),
        {"If-Match": '"\uff11"'},
        400,
        'If-Match is invalid: "\uff11"',
        "invalid_option",
    ),
    (
        "PUT",
        "/d/",
        body({"id": "/p/1,\uff11", "link": [SELF]}),
        {},
        400,
        "ID format is invalid. /p/1,\uff11 has an invalid revision.",
        "invalid_id",
    ),
    ("DELETE", "/d/p/1?r=\uff11", None, {}, 400, "Revision is invalid: r=\uff11", "invalid_option"),
    (
        "GET",
        "/d/p?f&l=\uff11",
        None,
        {},
        400,
        "Limit must be a number from 1 to 1000, or *: l=\uff11",
        "invalid_option",
    ),
    (
        "PUT",
        "/d/p?_addids=\uff11",
        None,
        {},
        400,
        "_addids must be a whole number: _addids=\uff11",
        "invalid_option",
    ),
    (
        "PUT",
        "/d/p?_setids=-\uff11",
        None,
        {},
        400,
        "_setids must be a whole number: _setids=-\uff11",
        "invalid_option",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [SELF], "id": "/p/1,1"}),
        {"If-Match": 'W/"1"'},
        412,
        "Precondition failed. Key = /p/1",
        "precondition_failed",
    ),
    (
        "GET",
        "/d/p?f&l=0",
        None,
        {},
        400,
        "Limit must be a number from 1 to 1000, or *: l=0",
        "invalid_option",
    ),
    ("GET", "/d/p?f&p=!!", None, {}, 400, "Cursor is invalid: p=!!", "invalid_option"),
    ("GET", "/d/p?f&p=L3EvMQ", None, {}, 400, "Cursor is invalid: p=L3EvMQ", "invalid_option"),
    (
        "GET",
        "/d/p//1?e",
        None,
        {},
        400,
        "Key must not contain an empty segment. /p//1",
        "invalid_key",
    ),
    ("GET", "/nowhere", None, {}, 404, "The requested URL was not found", "not_found"),
    (
        "GET",
        "/d/p%0A1?e",
        None,
        {},
        400,
        "Key must not contain any prohibited characters. /p\n1",
        "invalid_key",
    ),
    ("GET", "/d/p?f&_foo", None, {}, 400, "Unknown option: _foo", "invalid_option"),
    ("GET", "/d/p?f&title-ft-,", None, {}, 400, "Full-text search needs a word", "invalid_option"),
    (
        "GET",
        "/d/p?n=1",
        None,
        {},
        400,
        "Please make a pagination index in advance.",
        "invalid_option",
    ),
    ("GET", "/d/p?_allocids=501", None, {}, 400, "_allocids must be a number", "invalid_option"),
    (
        "PUT",
        "/d/p?_rangeids",
        body({"feed": {"title": "5-1"}}),
        {},
        400,
        "Range is invalid: 5-1",
        "invalid_option",
    ),
    ("PATCH", "/_health", None, {}, 405, "Method not allowed.", "method_not_allowed"),
    (
        "PUT",
        "/d/",
        body({"id": "?_delete"}),
        {},
        400,
        "ID format is invalid. ?_delete needs the entry's self link.",
        "invalid_id",
    ),
    # Revisions past 18 digits were a 500: the error body couldn't carry them (issue 11).
    (
        "PUT",
        "/d/",
        body({"id": f"/p/1,{WIDE}", "link": [SELF]}),
        {},
        400,
        f"ID format is invalid. /p/1,{WIDE} has a revision of more than 18 digits.",
        "invalid_id",
    ),
    (
        "PUT",
        "/d/",
        body({"id": "/p/1,1234567890123456789", "link": [SELF]}),
        {},
        400,
        "ID format is invalid. /p/1,1234567890123456789 has a revision of more than 18 digits.",
        "invalid_id",
    ),
    (
        "PUT",
        "/d/",
        body({"id": f"/p/1,{WIDE}?_delete"}),
        {},
        400,
        f"ID format is invalid. /p/1,{WIDE}?_delete has a revision of more than 18 digits.",
        "invalid_id",
    ),
    (
        "PUT",
        "/d/",
        body({"feed": {"entry": [{"link": [SELF], "id": f"/p/1,{WIDE}"}]}}),
        {},
        400,
        "ID format is invalid. ",
        "invalid_id",
    ),
    (
        "PATCH",
        "/d/p/1",
        body({"id": f"/p/1,{WIDE}", "x": 1}),
        {},
        400,
        "ID format is invalid. ",
        "invalid_id",
    ),
    (
        "PATCH",
        "/d/",
        body([{"id": f"/p/1,{WIDE}", "x": 1}]),
        {},
        400,
        "ID format is invalid. ",
        "invalid_id",
    ),
    (
        "PUT",
        "/d/p/1",
        body({"x": 1}),
        {"If-Match": WIDE},
        400,
        f"If-Match is invalid: {WIDE}",
        "invalid_option",
    ),
    (
        "PATCH",
        "/d/p/1",
        body({"x": 1}),
        {"If-Match": f'"1", "{WIDE}"'},
        400,
        f'If-Match is invalid: "1", "{WIDE}"',
        "invalid_option",
    ),
    (
        "DELETE",
        f"/d/p/1?r={WIDE}",
        None,
        {},
        400,
        f"Revision is invalid: r={WIDE}",
        "invalid_option",
    ),
    (
        "DELETE",
        "/d/p/1",
        None,
        {"If-Match": f'W/"{WIDE}"'},
        400,
        f'If-Match is invalid: W/"{WIDE}"',
        "invalid_option",
    ),
    # Found by the schemathesis run (tests/test_fuzz.py): each was accepted, or a 500.
    (
        "GET",
        "/d/p%0A?e",
        None,
        {},
        400,
        "Key must not contain any prohibited characters. /p\n",
        "invalid_key",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [SELF], "a": {"$patch": "delete"}}),
        {},
        400,
        "Field name is invalid: a.$patch",
        "invalid_field",
    ),
    (
        "PATCH",
        "/d/p/1",
        body({"a": {"$patch": "delete"}}),
        {},
        400,
        "Field name is invalid: a.$patch",
        "invalid_field",
    ),
    (
        "POST",
        "/d/p",
        body({"link": {"___rel": "self"}}),
        {},
        400,
        "The self link has no ___href.",
        "invalid_field",
    ),
    (
        "PUT",
        "/d/",
        body({"link": [SELF, {"___href": "/p/9", "___rel": "self"}]}),
        {},
        400,
        "An entry has one self link. /p/1",
        "invalid_field",
    ),
    ("PUT", "/d/_schema", b"{}", {}, 405, "Method not allowed.", "method_not_allowed"),
    ("DELETE", "/d/_openapi", None, {}, 405, "Method not allowed.", "method_not_allowed"),
    ("GET", "/d/p?e&s=", None, {}, 400, "Filter field is invalid: s=", "invalid_option"),
    (
        "GET",
        "/d/?l=",
        None,
        {},
        400,
        "Limit must be a number from 1 to 1000, or *: l=",
        "invalid_option",
    ),
    ("GET", "/d/p/1?p=!", None, {}, 400, "Cursor is invalid: p=!", "invalid_option"),
    (
        "PUT",
        "/d/p?_addids=1",
        body({"link": [SELF]}),
        {},
        400,
        "A counter request takes no body: _addids",
        "invalid_option",
    ),
    (
        "PUT",
        "/d/p?_addids=1&_setids=2",
        None,
        {},
        400,
        "_addids and _setids can't be combined.",
        "invalid_option",
    ),
    (
        "PUT",
        "/d/p?_setids=1",
        None,
        {"If-None-Match": "\u0084"},
        400,
        "If-Match and If-None-Match don't apply to counters: _setids",
        "invalid_option",
    ),
    (
        "POST",
        "/d/p",
        body({"title": "x"}),
        {"If-None-Match": "x"},
        400,
        "If-None-Match on a write must be *: x",
        "invalid_option",
    ),
    (
        "POST",
        "/d/",
        body({"link": [{"___href": "/p/2", "___rel": "self"}]}),
        {"If-Match": '"1"'},
        412,
        "Precondition failed. Key = /p/2",
        "precondition_failed",
    ),
    (
        "PATCH",
        "/d/p%0F?x",
        b"{}",
        {},
        400,
        "Key must not contain any prohibited characters. /p\ufffd",
        "invalid_key",
    ),
    (  # werkzeug's path converter stopped at a newline: the route didn't match, an undocumented 404
        "GET",
        "/d/p%0A1?s=x",
        None,
        {},
        400,
        "Key must not contain any prohibited characters. /p\n1",
        "invalid_key",
    ),
    ("PUT", "/d/_schema%0A", b"{}", {}, 400, "Key must not contain any prohibited", "invalid_key"),
    (
        "PUT",
        "/d/",
        body({"link": [SELF], "title": "a\u0001b"}),
        {},
        400,
        "String contains a control character: title",
        "invalid_field",
    ),
    (
        "PATCH",
        "/d/p/1",
        body({"author": [{"name": "me"}]}),
        {"Content-Type": "application/merge-patch+json"},
        400,
        "author can't be patched.",
        "invalid_field",
    ),
    (
        "PATCH",
        "/d/p/1",
        body({"x¤": 1}),
        {"Content-Type": "application/merge-patch+json"},
        400,
        "Field name is invalid: x¤",
        "invalid_field",
    ),
    (
        "PATCH",
        "/d/p/1",
        body([{"op": "add", "path": "/a", "value": "\u0000"}]),
        {"Content-Type": "application/json-patch+json"},
        400,
        "String contains a control character: a",
        "invalid_field",
    ),
]


@pytest.mark.parametrize("config", [{"max_entries": 2, "max_string": 100, "max_body": 4096}])
@pytest.mark.parametrize(
    ("method", "url", "data", "headers", "status", "message", "code"),
    BAD_INPUT,
    ids=[f"{row[0]} {row[5][:40]}" for row in BAD_INPUT],
)
def test_bad_input_is_answered_as_documented_and_changes_nothing(
    client: FlaskClient,
    redis_client: redis.Redis,
    method: str,
    url: str,
    data: bytes | None,
    headers: dict[str, str],
    status: int,
    message: str,
    code: str,
) -> None:
    client.post("/d/", json=[{"link": [{"___href": "/p", "___rel": "self"}]}, {"link": [SELF]}])
    before = snapshot(redis_client)
    headers = {"Content-Type": "application/json", **headers}
    if headers.pop("_bare", None):
        client = client.application.test_client()
    response = client.open(url, method=method, data=data, headers=headers)
    assert response.status_code == status
    if "x" in response.request.args:
        assert response.content_type == "application/atom+xml; charset=utf-8"
        feed = etree.fromstring(response.data)
        assert feed.findtext(f"{{{ATOM}}}title").startswith(message)
        error = feed.find(f"{{{FIELDS}}}error")
        assert (error.get("status"), error.get("code")) == (str(status), code)
    else:
        assert response.content_type == "application/json; charset=utf-8"
        document = response.json
        assert document is not None
        assert document["feed"]["title"].startswith(message)
        assert (document["error"]["status"], document["error"]["code"]) == (status, code)
    assert "Traceback" not in response.get_data(as_text=True)
    assert snapshot(redis_client) == before


def test_a_bug_is_a_500_in_the_same_shape_without_a_traceback(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("secret internals")

    store = client.application.extensions["feedstore"].store
    # Every way an entry read reaches Redis (with auth on and a token, the token's record is
    # read with the entry).
    for name in ("get", "get_guarded", "get_guarded_with"):
        monkeypatch.setattr(store, name, broken)
    for url, content_type in (("/d/a?e", "application/json"), ("/d/a?e&x", "application/atom+xml")):
        response = client.get(url)
        assert response.status_code == 500
        assert response.content_type.startswith(content_type)
        assert b"Internal server error." in response.data
        assert b"secret internals" not in response.data and b"Traceback" not in response.data
    assert "secret internals" in caplog.text, "the traceback goes to the log instead"
