"""The OpenAPI document: valid OpenAPI 3.1, complete, and saying what the server does.

Its grammars are checked against the validators they describe, on generated strings, so the
document can't drift from the code; tests/test_fuzz.py then checks whole requests with schemathesis.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from feedstore import (
    counter,
    cursor,
    errors,
    idempotency,
    negotiation,
    openapi,
    pagination,
    query,
    writes,
)
from feedstore.entry import EntryId, validate_key
from feedstore.errors import FeedstoreError
from feedstore.schema import Schema

EXAMPLE_SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "examples" / "schema.json").read_text()
)
SCHEMAS = openapi.core()["components"]["schemas"]
PARAMETERS = openapi.core()["components"]["parameters"]
# Routes that serve files, not the API: the page's scripts and styles.
FILE_ROUTES = {"static", "page.vendor"}


def test_the_served_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    response = client.get("/d/_openapi")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    document = response.json
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert "x-response-sets" not in document["components"]
    assert client.get("/openapi.json").data == response.data


def test_every_route_is_documented_with_its_methods(app: Flask) -> None:
    paths = openapi.core()["paths"]
    for rule in app.url_map.iter_rules():
        if rule.endpoint in FILE_ROUTES:
            continue
        path = re.sub(r"<entry_path:path>", "{key}", rule.rule)
        assert path in paths, f"{rule.rule} is not in the document"
        documented = {method.upper() for method in paths[path] if method.isalpha()}
        # HEAD goes wherever GET does (HTTP); the document spells it out for entries only.
        served = set(rule.methods or ()) - {"OPTIONS", "HEAD"}
        assert served - documented == set(), f"{rule.rule}: {served - documented} undocumented"


def test_every_documented_operation_is_served(client: FlaskClient) -> None:
    for path, item in openapi.core()["paths"].items():
        url = path.replace("{key}", "11")
        for method in (m for m in item if m in ("get", "put", "post", "patch", "delete")):
            with client.open(url, method=method.upper(), data=b"{}") as answer:
                assert answer.status_code not in (404, 405), f"{method.upper()} {path}"


def test_a_loaded_schema_puts_the_custom_fields_in_the_document(client: FlaskClient) -> None:
    before = client.get("/d/_openapi")
    client.application.extensions["feedstore"].store.set_schema(EXAMPLE_SCHEMA)
    after = client.get("/d/_openapi")
    validate(after.json)
    assert after.headers["ETag"] != before.headers["ETag"]
    schemas = after.json["components"]["schemas"]
    assert schemas["CustomFields"]["properties"]["score"] == {
        "type": "integer",
        "default": 0,
        "x-index": True,
    }
    # Closed as the server closes it: an undeclared field is refused.
    assert schemas["CustomFields"]["properties"]["userinfo"]["additionalProperties"] is False
    for name in ("Entry", "StoredEntry"):
        properties = schemas[name]["properties"]
        assert properties["score"] == {"$ref": "#/components/schemas/CustomFields/properties/score"}
        assert "link" in properties and "id" in properties
    assert schemas["Entry"]["additionalProperties"] is False


def test_a_feed_delete_takes_entries_whatever_the_schema_says_of_their_fields(
    client: FlaskClient,
) -> None:
    # What a client read before the schema changed, sent back to delete it: the delete reads
    # its key, as the document says; a PUT of it is refused, as the document says too.
    client.application.extensions["feedstore"].store.set_schema(EXAMPLE_SCHEMA)
    headers = {"X-Requested-With": "XMLHttpRequest"}
    assert client.put("/d/", json={"link": [SELF_A]}, headers=headers).status_code == 200
    read = {"link": [SELF_A], "score": "high"}  # the schema's score is an integer
    body = {"feed": {"entry": [read]}}
    document = client.get("/d/_openapi").json
    assert body_is_valid(document, "KeyedEntriesBody", body) is False
    assert client.put("/d/", json=body, headers=headers).status_code == 400
    assert body_is_valid(document, "EntriesToDeleteBody", body) is True
    operation = document["paths"]["/d/"]["delete"]
    assert operation["requestBody"] == {"$ref": "#/components/requestBodies/EntriesToDelete"}
    assert client.delete("/d/", json=body, headers=headers).status_code == 200
    assert client.get("/d/a?e").status_code == 204
    # Its form still counts: a field name the server refuses is refused in a delete too.
    assert body_is_valid(document, "EntriesToDeleteBody", {"link": [SELF_A], "x y": 1}) is False


SELF_A = {"___href": "/a", "___rel": "self"}


def body_is_valid(document: dict[str, Any], schema: str, body: object) -> bool:
    """Whether `body` is valid against one of the document's schemas."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    validator = Draft202012Validator(
        {"$ref": f"urn:openapi#/components/schemas/{schema}"},
        registry=Registry().with_resource("urn:openapi", resource),
    )
    return validator.is_valid(body)


def test_references_inside_a_schema_follow_it_into_the_document() -> None:
    schema = Schema(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": {"part": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "type": "object",
            "properties": {"parts": {"type": "array", "items": {"$ref": "#/$defs/part"}}},
        }
    )
    document = openapi.document(schema)
    validate(document)
    custom = document["components"]["schemas"]["CustomFields"]
    assert custom["properties"]["parts"]["items"] == {
        "$ref": "#/components/schemas/CustomFields/$defs/part"
    }
    assert "$schema" not in custom


def test_the_etag_answers_304_and_changes_with_the_schema(client: FlaskClient) -> None:
    tag = client.get("/openapi.json").headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{64}"', tag)
    assert client.get("/d/_openapi", headers={"If-None-Match": tag}).status_code == 304
    client.application.extensions["feedstore"].store.set_schema(EXAMPLE_SCHEMA)
    assert client.get("/d/_openapi", headers={"If-None-Match": tag}).status_code == 200


def test_every_error_code_is_documented_under_its_status() -> None:
    by_status: dict[int, set[str]] = {}
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, FeedstoreError) and cls.status != 500 and cls is not errors.EntryErrors:
            by_status.setdefault(cls.status, set()).add(cls.code)
    for status, codes in by_status.items():
        documented = SCHEMAS[f"Error{status}"]["properties"]["error"]["properties"]
        assert documented["status"] == {"const": status}
        assert set(documented["code"]["enum"]) == codes, status


# -- the grammars agree with the validators ---------------------------------------------------


def pattern(schema: dict[str, Any]) -> re.Pattern[str]:
    """A document pattern, compiled by Python: the patterns are written to mean the same there."""
    return re.compile(schema["pattern"])


def accepts(check: Callable[[], object]) -> bool:
    try:
        check()
    except FeedstoreError:
        return False
    return True


KEY_CHARACTERS = st.sampled_from(
    "abZ09$_.-@'()[]/ <>%?#,\x01\x7f\u00e9\u3042\ufffe\uffff\U0001f600"
)
# Segments of dots come up often enough only when drawn whole: `.` and `..` are refused.
SEGMENTS = st.sampled_from([".", "..", "...", ".a", "a.", "..\u00e9"]) | st.text(
    KEY_CHARACTERS, max_size=5
)
key_texts = st.text(KEY_CHARACTERS, max_size=30) | st.lists(SEGMENTS, max_size=11).map("/".join)


@given(key_texts)
def test_the_key_grammar_is_the_servers(text: str) -> None:
    server = text != "" and accepts(lambda: validate_key("/" + text))  # "" is the root
    assert (pattern(SCHEMAS["KeyPath"]).fullmatch(text) is not None) == server
    assert (pattern(SCHEMAS["Key"]).fullmatch("/" + text) is not None) == server


ID_TAILS = ["", ",", ",1", ",007", ",-1", ",1?_delete", "?_delete", ",x", f",{'9' * 18}"]
ID_TAILS += [f",{'1' * 19}", f",{'0' * 19}", f",{2**64}?_delete"]


@given(key_texts, st.sampled_from(ID_TAILS))
def test_the_id_grammar_is_the_servers(text: str, tail: str) -> None:
    documented = pattern(SCHEMAS["EntryId"]).fullmatch(f"/{text}{tail}") is not None
    assert documented == (text != "" and accepts(lambda: EntryId.parse(f"/{text}{tail}")))


NAME_CHARACTERS = st.sampled_from("aZ_-09.$ \u00e9\u00a4")


@given(st.text(NAME_CHARACTERS, min_size=1, max_size=8))
def test_the_field_name_grammar_is_the_servers(name: str) -> None:
    from feedstore.fields import _FIELD_NAME

    documented = pattern(SCHEMAS["FieldName"]).fullmatch(name) is not None
    assert documented == bool(_FIELD_NAME.fullmatch(name))


@pytest.mark.parametrize(
    ("parameter", "check"),
    [
        ("l", lambda value: query.check_options({"l": value})),
        ("s", lambda value: query.check_options({"s": value})),
        ("p", cursor.check_syntax),
        ("allocids", counter.allocate_count),
        ("addidsRead", counter.check_read_amount),
        ("n", pagination.page_number),
        ("pagination", pagination.check_range_syntax),
        ("r", writes.parse_revision),
        ("IfMatch", negotiation.parse_if_match),
        ("r", writes.parse_revision),
        ("IfNoneMatchWrite", negotiation.parse_if_none_match),
        ("MergeBase", lambda value: writes.parse_merge_base(value, writes.Conditions())),
        ("MethodOverride", lambda value: negotiation.method_override("POST", value or None)),
        ("IdempotencyKey", idempotency.parse_key),
    ],
)
def test_parameter_grammars_are_the_servers(parameter: str, check: Callable[[str], object]) -> None:
    schema = PARAMETERS[parameter]["schema"]
    if "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rpartition("/")[2]]
    compiled = pattern(schema)

    @given(
        st.text(st.sampled_from('aZ09*-_." ,/W\u00e9!\uff11'), max_size=6)
        | st.sampled_from(SAMPLES)
    )
    def agree(value: str) -> None:
        assert (compiled.fullmatch(value) is not None) == accepts(lambda: check(value)), value

    agree()


SAMPLES = [
    *("1", "1000", "1001", "0", "007", "*", "", "a.b-desc", '"3"', 'W/"3", 4', "patch", "PUT"),
    *("500", "501", "499", "0500", "00", "100000", "100001", "3,2", "2,3", "0,1", "1,100000"),
]
SAMPLES += ["9" * 18, "1" * 19, f'"{"0" * 19}"', f'W/"{"9" * 18}", "{2**64}"', f"-{'9' * 18}"]
# Entity tags that are nearly right, and full-width digits, which are never numbers.
SAMPLES += ['W/"3"', '"3', '3"', '""3""', "W/3", '"\uff11"', "\uff11", "-\uff11", '"1", W/"2"']


@given(st.text(st.sampled_from("a\t\n\r\x00\x01\x0b\x1f\x7f\u00e9\ufffd\ufffe\uffff"), max_size=5))
def test_the_text_grammar_is_the_servers(text: str) -> None:
    from feedstore.entry import Limits, check_field

    documented = pattern(SCHEMAS["Text"]).fullmatch(text) is not None
    assert documented == accepts(lambda: check_field("a", text, "/k", Limits()))
