"""What fields may hold: fields_fine, the quick pass, never passes what check_field refuses."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedstore import codec_json
from feedstore.entry import SERVER_OWNED
from feedstore.errors import InvalidField
from feedstore.fields import XML_INVALID, Limits, WideInteger, check_field, fields_fine

LIMITS = Limits(max_string=20, max_attributes=3)


def refused(document: dict[str, Any], limits: Limits = LIMITS, directives: bool = False) -> bool:
    """Whether check_field refuses a field of `document` (the server-owned ones aside)."""
    try:
        for name, value in document.items():
            if name not in SERVER_OWNED:
                check_field(name, value, "/k", limits, directives=directives)
    except InvalidField:
        return True
    return False


@pytest.mark.parametrize(
    "document",
    [
        {"bad name": 1},
        {"___attribute": "at the top"},
        {"title": 5},
        {"title": {"___type": 1}},
        {"link": ["x"]},
        {"link": [{"___href": "/a", "bad name": "x"}]},
        {"link": {"___href": 5}},
        {"link": [{"___href": "/a" + "x" * 20}]},
        {"title": {"___a": "1", "___b": "2", "___c": "3", "___d": "4"}},
        {"author": [{"name": "bell \x07"}]},
        {"a": {"b c": 1}},
        {"a": {"$patch": "delete"}},
        {"a": ["x" * 21]},
        {"a": "x" * 21},
        {"a": [{"b": ["bell \x07"]}]},
        {"a": "\ud800"},
        {"a": "\ufffe"},
        {"a": WideInteger(2**64)},
        {"a": [WideInteger(-(2**63) - 1)]},
        {"a": {"___x": "1", "___y": "2", "___z": "3", "___w": "4"}},
    ],
)
def test_what_check_field_refuses_is_never_fine(document: dict[str, Any]) -> None:
    assert refused(document)
    assert not fields_fine(document, LIMITS)


def test_a_plain_body_skips_only_the_character_check() -> None:
    document = {"id": "/k,1", "a": ["x" * 20, {"___b": "y", "______text": "z"}], "n": None}
    assert fields_fine(document, LIMITS, skip=SERVER_OWNED)
    assert fields_fine({"a": "x" * 20}, LIMITS, plain=True)
    assert not fields_fine({"a": "x" * 21}, LIMITS, plain=True)


def test_patch_directives_only_in_a_merge_body() -> None:
    document = {"a": [{"k": "1", "$patch": "delete"}]}
    assert fields_fine(document, LIMITS, directives=True)
    assert not fields_fine(document, LIMITS)


def test_values_of_other_types_are_left_to_check_field() -> None:
    class Text(str):
        pass

    assert not fields_fine({"a": Text("\x07")}, LIMITS)
    assert not fields_fine({"a": [Text("x")]}, LIMITS)


names = st.sampled_from(["a", "b_1", "___c", "______text", "$patch", "bad name", "___", "link"])
texts = st.sampled_from(["", "x", "x" * 21, "tab\tok", "\x00", "\ud83d", "\uffff", "é"])
scalars = st.one_of(
    texts,
    st.integers(-(2**63), 2**64 - 1),
    st.builds(WideInteger, st.sampled_from([2**64, -(2**63) - 1])),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=5),
    max_leaves=12,
)
documents = st.dictionaries(
    st.sampled_from(["id", "title", "link", "author", "a", "___b", "bad name"]), values
)


@settings(max_examples=400)
@given(documents, st.booleans())
def test_fields_fine_agrees_with_check_field(document: dict[str, Any], directives: bool) -> None:
    fine = fields_fine(document, LIMITS, skip=SERVER_OWNED, directives=directives)
    assert fine == (not refused(document, directives=directives))


@pytest.mark.parametrize(
    ("body", "plain"),
    [
        (b'{"a":"x","b":[1,2]}', True),
        ('{"a":"é日本"}'.encode(), True),
        (b'{"a":"\\u0007"}', False),
        (b'{"a":"\\n"}', False),  # harmless, but any escape is looked at closely
        ('{"a":"\ufffe"}'.encode(), False),
        ('{"a":"\uffff"}'.encode(), False),
        ('{"a":"\ufffd"}'.encode(), True),
    ],
)
def test_plain_strings(body: bytes, plain: bool) -> None:
    assert codec_json.plain_strings(body) is plain


@given(st.recursive(st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_a_plain_body_has_no_string_xml_cant_carry(value: Any) -> None:
    try:
        body = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return  # a lone surrogate: not JSON text
    if codec_json.plain_strings(body):
        assert not any(XML_INVALID.search(text) for text in strings(orjson.loads(body)))


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*value, *(text for item in value.values() for text in strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []
