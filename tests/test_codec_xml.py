from __future__ import annotations

import time
from typing import Any

import feedparser
import orjson
import pytest
import redis
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from feedstore import codec_json, codec_xml
from feedstore.codec_xml import ATOM, FIELDS
from feedstore.errors import EntryErrors, InvalidBody, InvalidField
from feedstore.fields import Limits
from feedstore.schema import Schema
from tests.conftest import snapshot

SCHEMA = Schema(
    {
        "type": "object",
        "properties": {
            "userinfo": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
            },
            "score": {"type": "number"},
            "active": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "parts": {
                "type": "array",
                "x-merge-key": "partsid",
                "items": {
                    "type": "object",
                    "properties": {"partsid": {"type": "string"}, "quantity": {"type": "integer"}},
                },
            },
        },
    }
)
LIMITS = Limits()
json_integers = st.integers(-(2**63), 2**64 - 1)  # what orjson carries exactly

# What a stored string can hold: writes refuse U+FFFE and U+FFFF, which XML can't carry.
text = st.text(
    st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff"),
    max_size=12,
)
keys = st.from_regex(r"/[a-z0-9]{1,6}(/[a-z0-9]{1,6}){0,2}", fullmatch=True)
server_fields = st.fixed_dictionaries(
    {
        "published": st.just("2015-12-01T13:44:46.067+09:00"),
        "updated": st.just("2015-12-01T13:44:46.067+09:00"),
    }
)
atom_fields = st.fixed_dictionaries(
    {},
    optional={
        "title": text.filter(str.strip),
        "content": st.fixed_dictionaries(
            {"___type": st.just("text/html"), "______text": text.filter(str.strip)}
        ),
        "category": st.lists(
            st.fixed_dictionaries({"___term": text, "___scheme": text}), min_size=1, max_size=2
        ),
    },
)
typed_fields = st.fixed_dictionaries(
    {},
    optional={
        "userinfo": st.fixed_dictionaries(
            {}, optional={"id": json_integers, "email": text.filter(str.strip)}
        ),
        "score": json_integers | st.floats(allow_nan=False, allow_infinity=False),
        "active": st.booleans(),
        "tags": st.lists(text.filter(str.strip), min_size=1, max_size=3),
        "parts": st.lists(
            st.fixed_dictionaries({"partsid": text.filter(str.strip), "quantity": json_integers}),
            min_size=1,
            max_size=3,
        ),
    },
)
names = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True).filter(
    lambda name: name not in codec_xml._ATOM_FIELD_NAMES
)
untyped_values = st.recursive(
    text.filter(str.strip),
    lambda inner: st.dictionaries(names, inner, min_size=1, max_size=3),
    max_leaves=6,
)
untyped_fields = st.dictionaries(names, untyped_values, max_size=4)


def with_key(key: str, revision: int, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{key},{revision}",
        "link": [{"___href": key, "___rel": "self"}],
        "author": [{"uri": "urn:feedstore:created:anonymous"}],
        **fields,
    }


@st.composite
def stored_entries(draw: st.DrawFn, custom: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """An entry as the server stores it: id, self link, author, timestamps, Atom and custom."""
    fields = {**draw(server_fields), **draw(atom_fields), **draw(custom)}
    return with_key(draw(keys), draw(st.integers(1, 10**6)), fields)


@given(stored_entries(typed_fields))
def test_json_xml_json_round_trip_with_a_schema(document: dict[str, Any]) -> None:
    assert codec_xml.loads_documents(codec_xml.dumps([document]), LIMITS, SCHEMA) == [document]


@given(stored_entries(untyped_fields))
def test_json_xml_json_round_trip_without_a_schema(document: dict[str, Any]) -> None:
    assert codec_xml.loads_documents(codec_xml.dumps([document]), LIMITS) == [document]


@given(st.lists(stored_entries(typed_fields), max_size=3))
def test_xml_json_xml_round_trip(documents: list[dict[str, Any]]) -> None:
    xml = codec_xml.dumps(documents)
    as_json = codec_json.dumps(codec_xml.loads_documents(xml, LIMITS, SCHEMA))
    assert codec_xml.dumps(codec_json.loads_stored(as_json)["feed"]["entry"]) == xml


def test_input_without_namespaces_is_accepted_and_typed_by_the_schema() -> None:
    body = b"""<feed><entry><link href="/a" rel="self"/><title>t</title>
      <userinfo><id>7</id></userinfo><tags>x</tags><active>true</active><score>1.5</score>
    </entry></feed>"""
    [entry] = codec_xml.loads(body, LIMITS, SCHEMA)
    assert (entry.key, entry.fields["title"]) == ("/a", "t")
    assert entry.fields["userinfo"] == {"id": 7}
    assert (entry.fields["tags"], entry.fields["active"], entry.fields["score"]) == (
        ["x"],
        True,
        1.5,
    )


def test_without_a_schema_values_are_strings() -> None:
    [document] = codec_xml.loads_documents(b"<entry><n>7</n><t>a</t><t>b</t></entry>", LIMITS)
    assert document == {"n": "7", "t": ["a", "b"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"<entry><userinfo><id>seven</id></userinfo></entry>", "userinfo.id"),
        (b"<entry><userinfo><id>99999999999999999999999</id></userinfo></entry>", "userinfo.id"),
        (b"<entry><score>1e400</score></entry>", "score"),
        (b"<entry><score>nan</score></entry>", "score"),
        (b"<entry><active>yes</active></entry>", "active"),
        # Full-width digits, which int() and float() would read as 1 and 1.5.
        ("<entry><userinfo><id>\uff11</id></userinfo></entry>".encode(), "userinfo.id"),
        ("<entry><score>\uff11.\uff15</score></entry>".encode(), "score"),
    ],
)
def test_a_value_the_schema_types_is_checked(body: bytes, field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        codec_xml.loads(body, LIMITS, SCHEMA)
    assert caught.value.field == field


@given(st.integers(max_value=-(2**63) - 1) | st.integers(min_value=2**64))
def test_an_integer_wider_than_64_bits_is_refused_as_in_json(number: int) -> None:
    for path, body in [  # an integer, and a number, in the schema
        ("userinfo.id", f"<entry><userinfo><id>{number}</id></userinfo></entry>"),
        ("score", f"<entry><score>{number}</score></entry>"),
    ]:
        with pytest.raises(InvalidField) as caught:
            codec_xml.loads(body.encode(), LIMITS, SCHEMA)
        assert caught.value.message == f"Invalid value: {path}: '{number}' is wider than 64 bits"


@pytest.mark.parametrize("text", ["1e2", "100.0", "1_000", "\u0661\u0662", "0x10", "", " "])
def test_integer_text_is_ascii_digits(text: str) -> None:
    body = f"<entry><userinfo><id>{text}</id></userinfo></entry>".encode()
    with pytest.raises(InvalidField) as caught:
        codec_xml.loads(body, LIMITS, SCHEMA)
    assert caught.value.message == f"Invalid value: userinfo.id: {text!r} is not a valid integer"


@pytest.mark.parametrize(
    ("text", "value"), [(" 7 ", 7), ("+7", 7), ("-0", 0), (f"{2**64 - 1}", 2**64 - 1)]
)
def test_integer_text_may_be_signed_and_padded(text: str, value: int) -> None:
    body = f"<entry><userinfo><id>{text}</id></userinfo></entry>".encode()
    [document] = codec_xml.loads_documents(body, LIMITS, SCHEMA)
    assert document["userinfo"]["id"] == value


@pytest.mark.parametrize("text", ["1_0.5", "\u0661.5", "inf", "nan", "1e400", "1.2.3", "."])
def test_number_text_is_a_finite_ascii_number(text: str) -> None:
    body = f"<entry><score>{text}</score></entry>".encode()
    with pytest.raises(InvalidField) as caught:
        codec_xml.loads(body, LIMITS, SCHEMA)
    assert caught.value.message == f"Invalid value: score: {text!r} is not a valid number"


def test_null_and_attributes_beside_text() -> None:
    document = {"note": None, "price": {"___currency": "JPY", "______text": "100"}}
    assert codec_xml.loads_documents(codec_xml.dumps([document]), LIMITS) == [document]


def test_depth_is_bounded() -> None:
    body = b"<entry>" + b"<a>" * 70 + b"</a>" * 70 + b"</entry>"
    with pytest.raises(InvalidBody, match="nesting is deeper than 64"):
        codec_xml.loads(body, LIMITS)


def attributes(count: int, prefix: str = "a") -> bytes:
    return b" ".join(b"%s%d='x'" % (prefix.encode(), n) for n in range(count))


def declarations(count: int, prefix: str = "p") -> bytes:
    return b" ".join(b"xmlns:%s%d='urn:%d'" % (prefix.encode(), n, n) for n in range(count))


SELF = b"<link href='/a' rel='self'/>"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"<entry>" + SELF + b"<title " + attributes(4) + b">t</title></entry>", "title"),
        (
            b"<entry>"
            + SELF
            + b"<n><m "
            + attributes(2)
            + b" "
            + declarations(2)
            + b"/></n></entry>",
            "n.m",
        ),
        (b"<feed><entry>" + SELF + b"<c " + declarations(4) + b"/></entry></feed>", "c"),
        (b"<entry " + attributes(4) + b">" + SELF + b"</entry>", "entry"),
        # (The parser reads a small body whole before the checks see it: the key is known.)
        (b"<feed><entry " + attributes(4) + b">" + SELF + b"</entry></feed>", "entry"),
    ],
)
def test_attributes_per_element_are_bounded_namespace_declarations_included(
    body: bytes, field: str
) -> None:
    with pytest.raises(InvalidField) as caught:
        codec_xml.loads(body, Limits(max_attributes=3))
    assert caught.value.message == f"Too many attributes: {field} has more than 3."
    assert (caught.value.key, caught.value.field) == ("/a", field)
    codec_xml.loads(
        body.replace(b"a3='x'", b"").replace(b" xmlns:p3='urn:3'", b""), Limits(max_attributes=4)
    )


def test_elements_and_attributes_per_body_are_bounded() -> None:
    body = b"<feed>" + b"<entry><link href='/a' rel='self'/></entry>" * 3 + b"</feed>"
    # the feed, and per entry the entry, the link and its two attributes
    assert len(codec_xml.loads(body, Limits(max_nodes=13))) == 3
    with pytest.raises(InvalidBody) as caught:
        codec_xml.loads(body, Limits(max_nodes=12))
    assert caught.value.message == (
        "Request format is invalid: the body has more than 12 elements and attributes."
    )


def test_markup_in_atom_text_stops_at_the_string_limit() -> None:
    """Each child is written with every namespace in scope, so the text grows as children times
    declarations: it is refused when it passes max_string, not after it is all built."""
    body = b"<entry " + declarations(50) + b">" + SELF + b"<content>" + b"<b/>" * 1000
    body += b"</content></entry>"
    with pytest.raises(InvalidField) as caught:
        codec_xml.loads(body, Limits(max_string=10_000))
    assert caught.value.message == "String is longer than 10000 characters: content"
    assert (caught.value.key, caught.value.field) == ("/a", "content")


def test_errors_in_entries_name_each_entry_by_its_key() -> None:
    body = b"""<feed><entry><link href='/a' rel='self'/><userinfo><id>x</id></userinfo></entry>
      <entry><link href='/b' rel='self'/><active>maybe</active></entry></feed>"""
    with pytest.raises(EntryErrors) as caught:
        codec_xml.loads(body, LIMITS, SCHEMA)
    assert [(e.key, e.field) for e in caught.value.errors] == [
        ("/a", "userinfo.id"),
        ("/b", "active"),
    ]


def test_output_is_namespace_correct() -> None:
    document = with_key("/a", 1, {"title": "t", "userinfo": {"id": 1}, "note": None})
    root = etree.fromstring(codec_xml.dumps([document]))
    for element in root.iter():
        assert etree.QName(element).namespace in (ATOM, FIELDS)
    assert root.nsmap == {None: ATOM, "fs": FIELDS}
    assert root.find(f"{{{ATOM}}}entry/{{{FIELDS}}}userinfo/{{{FIELDS}}}id").text == "1"


def test_messages_and_errors() -> None:
    error = {
        "status": 409,
        "code": "revision_conflict",
        "key": "/a",
        "entries": [],
        "current": with_key("/a", 2, {}),
    }
    root = etree.fromstring(codec_xml.dumps_message("Optimistic locking failed. Key = /a", error))
    assert root.findtext(f"{{{ATOM}}}title") == "Optimistic locking failed. Key = /a"
    element = root.find(f"{{{FIELDS}}}error")
    assert (element.get("status"), element.get("code"), element.get("key")) == (
        "409",
        "revision_conflict",
        "/a",
    )
    assert element.findtext(f"{{{FIELDS}}}current/{{{ATOM}}}entry/{{{ATOM}}}id") == "/a,2"


def test_writing_xml_never_fails_on_characters_xml_cant_carry() -> None:
    """Writes refuse them now; data stored before, and messages quoting a bad key, still render."""
    document = with_key("/a", 1, {"title": "a\x00b", "note": {"___x": "\ufffe", "v": "\x1f"}})
    entry = etree.fromstring(codec_xml.dumps([document])).find(f"{{{ATOM}}}entry")
    assert entry.findtext(f"{{{ATOM}}}title") == "a\ufffdb"
    note = entry.find(f"{{{FIELDS}}}note")
    assert (note.get("x"), note.findtext(f"{{{FIELDS}}}v")) == ("\ufffd", "\ufffd")
    error = {"status": 400, "code": "invalid_key", "key": "/k\x01", "entries": []}
    message = etree.fromstring(codec_xml.dumps_message("Bad key /k\x01", error))
    assert message.findtext(f"{{{ATOM}}}title") == "Bad key /k\ufffd"


def test_an_error_whose_stored_entry_has_no_xml_form_still_renders() -> None:
    error = {"status": 409, "code": "duplicated_key", "key": "/a", "entries": []}
    error["current"] = with_key("/a", 1, {"x": {"$patch": True}})
    message = etree.fromstring(codec_xml.dumps_message("Duplicated key. /a", error))
    assert message.find(f"{{{FIELDS}}}error").get("code") == "duplicated_key"
    assert message.find(f"{{{FIELDS}}}error/{{{FIELDS}}}current") is None


def test_a_stored_name_xml_cant_carry_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidField) as caught:
        codec_xml.dumps([with_key("/a", 1, {"x¤": 1})])
    assert caught.value.field == "x¤"


# -- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
def atom(client: FlaskClient) -> FlaskClient:
    client.post("/d/", json={"link": [{"___href": "/p", "___rel": "self"}]})
    for n in (1, 2):
        body = f"""<entry xmlns="http://www.w3.org/2005/Atom" xmlns:fs="urn:feedstore:fields">
          <link href="/p/{n}" rel="self"/><link href="http://example.com/{n}" rel="alternate"/>
          <title>Entry {n}</title><content type="text/html">&lt;p&gt;hi&lt;/p&gt;</content>
          <fs:userinfo><fs:email>{n}@foo.com</fs:email></fs:userinfo></entry>"""
        assert client.post("/d/", data=body, content_type="application/atom+xml").status_code == 201
    return client


def test_feedparser_reads_the_feed_without_complaint(atom: FlaskClient) -> None:
    response = atom.get("/d/p?f&x")
    assert response.content_type == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(response.data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert [e.title for e in parsed.entries] == ["Entry 1", "Entry 2"]
    assert [e.id for e in parsed.entries] == ["/p/1,1", "/p/2,1"]
    assert parsed.entries[0].links[1].href == "http://example.com/1"
    assert parsed.entries[0].content[0].value == "<p>hi</p>"


def test_accept_header_selects_xml_unless_j(atom: FlaskClient) -> None:
    accept = {"Accept": "application/atom+xml"}
    assert atom.get("/d/p/1?e", headers=accept).content_type.startswith("application/atom+xml")
    assert atom.get("/d/p/1?e&j", headers=accept).content_type.startswith("application/json")
    assert atom.get("/d/p?c&x").data.endswith(b"<title>2</title></feed>")


def test_xml_put_patch_and_delete_follow_the_json_rules(atom: FlaskClient) -> None:
    put = b"<entry><id>/p/1,1</id><link href='/p/1' rel='self'/><title>new</title></entry>"
    assert atom.put("/d/?x", data=put, content_type="text/xml").status_code == 200
    stale = atom.put("/d/?x", data=put, content_type="text/xml")
    assert stale.status_code == 409 and b'code="revision_conflict"' in stale.data
    patch = b"<entry><userinfo><id>5</id></userinfo></entry>"
    patched = atom.patch("/d/p/1", data=patch, content_type="application/atom+xml")
    assert patched.json["feed"]["entry"][0]["userinfo"] == {"email": "1@foo.com", "id": "5"}
    delete = b"<feed><entry><id>/p/2?_delete</id></entry></feed>"
    assert atom.put("/d/", data=delete, content_type="application/xml").status_code == 200
    assert atom.get("/d/p/2?e").status_code == 204


@pytest.mark.parametrize("title", ["1-100!", "", "りんご"])
def test_a_message_reads_back_as_it_was_written(title: str) -> None:
    assert codec_xml.loads_message(codec_xml.dumps_message(title), Limits()) == title
    assert codec_xml.loads_message(b"<feed><title>1-2</title></feed>", Limits()) == "1-2"
    assert codec_xml.loads_message(b"<feed/>", Limits()) is None


@pytest.mark.parametrize(
    "body", [b"<entry><title>x</title></entry>", b"<feed><title>x</title><entry/></feed>"]
)
def test_a_message_is_a_feed_with_only_a_title(body: bytes) -> None:
    with pytest.raises(InvalidBody, match="message"):
        codec_xml.loads_message(body, Limits())


# Bodies that cost seconds to minutes of CPU before their shape was bounded (issue 11); each is
# now refused before the costly work. The bound on time is generous: the point is "not 28 s".
HOSTILE = [
    (  # The issue's: lxml reads and writes attributes in quadratic time.
        b"<entry>" + SELF + b"<title " + attributes(100_000) + b">t</title></entry>",
        "Too many attributes: title has more than 256.",
    ),
    (  # Every child of Atom text was serialized with a copy of the declarations in scope.
        b"<entry>"
        + SELF
        + b"<content "
        + declarations(2000)
        + b">"
        + b"<b/>" * 2000
        + b"</content></entry>",
        "Too many attributes: content has more than 256.",
    ),
    (  # The most declarations the bounds allow, on feed, entry and content, and many children.
        b"<feed "
        + declarations(250, "f")
        + b"><entry "
        + declarations(250, "e")
        + b">"
        + SELF
        + b"<content "
        + declarations(250)
        + b">"
        + b"<b/>" * 50_000
        + b"</content></entry></feed>",
        "String is longer than 1048576 characters: content",
    ),
    (  # Linear, but 9 MB of elements is seconds of work per request.
        b"<entry>"
        + SELF
        + b"<a>"
        + b"".join(b"<b%d/>" % n for n in range(900_000))
        + b"</a></entry>",
        "Request format is invalid: the body has more than 100000 elements and attributes.",
    ),
    (  # Bounded before: libxml2 caps a text node at 10 MB, and strings are max_string.
        b"<entry>" + SELF + b"<a>" + b"x" * 9_000_000 + b"</a></entry>",
        "String is longer than 1048576 characters: a",
    ),
    (
        b"<entry>" + SELF + b"<title a='" + b"x" * 9_000_000 + b"'>t</title></entry>",
        "String is longer than 1048576 characters: title.___a",
    ),
    (  # The same attributes in JSON: written as XML for every ?x read, in quadratic time.
        orjson.dumps(
            {
                "link": [{"___href": "/a", "___rel": "self"}],
                "title": {f"___a{n}": "x" for n in range(100_000)},
            }
        ),
        "Too many attributes: title has more than 256.",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"),
    HOSTILE,
    ids=[
        "attributes",
        "declarations",
        "declarations-times-children",
        "elements",
        "text",
        "attribute-value",
        "json-attributes",
    ],
)
def test_a_body_of_a_costly_shape_is_refused_in_well_under_a_second(
    client: FlaskClient, redis_client: redis.Redis, body: bytes, message: str
) -> None:
    client.post("/d/", json={"link": [{"___href": "/a", "___rel": "self"}]})
    before = snapshot(redis_client)
    started = time.perf_counter()
    response = client.put(
        "/d/",
        data=body,
        content_type="application/atom+xml" if body.startswith(b"<") else "application/json",
    )
    elapsed = time.perf_counter() - started
    assert (response.status_code, response.json["feed"]["title"]) == (400, message)  # type: ignore[index]
    # Typically 0.03-0.4 s; the bound leaves room for 2 shared cores under a full suite's load
    # (6 s was seen once), and is still far below what these shapes cost unbounded (17-170 s).
    assert elapsed < 15, f"{elapsed:.1f} s"
    assert snapshot(redis_client) == before


def test_an_integer_field_takes_integers_only_in_both_formats(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    """`1e2` is 100 to JSON Schema, but not an integer as written: stored, its XML would read back
    as no integer. Both formats refuse it, and an integer round-trips through both."""
    client.application.extensions["feedstore"].store.set_schema(SCHEMA.document)
    assert client.put("/d/a", json={"userinfo": {"id": 100}}).status_code == 200
    xml = client.get("/d/a?e&x").data
    assert client.put("/d/a", data=xml, content_type="application/atom+xml").status_code == 200
    assert client.get("/d/a?e").json["feed"]["entry"][0]["userinfo"] == {"id": 100}  # type: ignore[index]
    before = snapshot(redis_client)
    refused = [
        (b'{"userinfo":{"id":1e2}}', "application/json", "100.0 is not of type 'integer'"),
        (b'{"userinfo":{"id":100.0}}', "application/json", "100.0 is not of type 'integer'"),
        (
            b"<entry>" + SELF + b"<userinfo><id>1e2</id></userinfo></entry>",
            "application/atom+xml",
            "'1e2' is not a valid integer",
        ),
    ]
    for body, content_type, reason in refused:
        response = client.put("/d/a", data=body, content_type=content_type)
        assert response.status_code == 400
        assert response.json["feed"]["title"] == f"Invalid value: userinfo.id: {reason}"  # type: ignore[index]
        assert (response.json["error"]["key"], response.json["error"]["field"]) == (  # type: ignore[index]
            "/a",
            "userinfo.id",
        )
    assert snapshot(redis_client) == before
