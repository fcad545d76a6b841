from __future__ import annotations

from typing import Any

import feedparser
import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from feedstore import codec_json, codec_xml
from feedstore.codec_xml import ATOM, FIELDS
from feedstore.entry import Limits
from feedstore.errors import InvalidBody, InvalidField
from feedstore.schema import Schema

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

text = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=12)
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


def test_null_and_attributes_beside_text() -> None:
    document = {"note": None, "price": {"___currency": "JPY", "______text": "100"}}
    assert codec_xml.loads_documents(codec_xml.dumps([document]), LIMITS) == [document]


def test_depth_is_bounded() -> None:
    body = b"<entry>" + b"<a>" * 70 + b"</a>" * 70 + b"</entry>"
    with pytest.raises(InvalidBody, match="nesting is deeper than 64"):
        codec_xml.loads(body, LIMITS)


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
