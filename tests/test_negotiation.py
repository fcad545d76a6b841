from __future__ import annotations

import pytest

from feedstore import negotiation
from feedstore.errors import (
    InvalidBody,
    InvalidOption,
    MissingCsrfHeader,
    UnsupportedMediaType,
)
from feedstore.negotiation import Format


@pytest.mark.parametrize(
    ("mimetype", "body", "expected"),
    [
        ("application/json", b"x", Format.JSON),
        ("application/merge-patch+json", b"{}", Format.JSON),
        ("application/atom+xml", b"{", Format.XML),
        ("text/xml", b"", Format.XML),
        ("", b'  {"a": 1}', Format.JSON),
        ("application/x-www-form-urlencoded", b"[{}]", Format.JSON),
        ("text/plain", b"<feed/>", Format.XML),
    ],
)
def test_body_format(mimetype: str, body: bytes, expected: Format) -> None:
    assert negotiation.body_format(mimetype, body) is expected


def test_body_format_rejects_unsniffable_and_unknown_types() -> None:
    with pytest.raises(InvalidBody):
        negotiation.body_format("text/plain", b"a=1")
    with pytest.raises(UnsupportedMediaType):
        negotiation.body_format("image/png", b"{}")


def test_answer_format() -> None:
    assert negotiation.answer_format({"x": ""}, "") is Format.XML
    assert negotiation.answer_format({}, "application/atom+xml") is Format.XML
    assert negotiation.answer_format({"j": ""}, "application/atom+xml") is Format.JSON
    assert negotiation.answer_format({}, "*/*") is Format.JSON


@pytest.mark.parametrize(
    ("names", "mimetype"),
    [
        (["X-Requested-With"], ""),
        (["x-anything"], ""),
        (["Authorization"], ""),
        ([], "application/json"),
    ],
)
def test_csrf_accepts(names: list[str], mimetype: str) -> None:
    negotiation.check_csrf(names, mimetype)


@pytest.mark.parametrize("mimetype", ["", "application/x-www-form-urlencoded", "text/plain"])
def test_csrf_rejects_what_a_form_can_send(mimetype: str) -> None:
    with pytest.raises(MissingCsrfHeader):
        negotiation.check_csrf(["Content-Type", "Origin"], mimetype)


def test_method_override_only_on_post_and_only_three_methods() -> None:
    assert negotiation.method_override("POST", "patch") == "PATCH"
    assert negotiation.method_override("POST", None) is None
    assert negotiation.method_override("PUT", None) is None
    with pytest.raises(InvalidOption) as refused:
        negotiation.method_override("POST", "GET")
    assert refused.value.message == "Method override is not allowed: GET"
    for method in ("PUT", "PATCH", "DELETE", "GET"):
        with pytest.raises(InvalidOption) as refused:
            negotiation.method_override(method, "PATCH")
        assert refused.value.message == "Method override is only allowed on POST."


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ('"3"', frozenset({3})),
        ("3", frozenset({3})),
        ('"1", "2"', frozenset({1, 2})),
        ("*", "*"),
        # Strong comparison: a weak tag is well-formed but names no revision.
        ('W/"3"', frozenset()),
        ('W/"3", "4"', frozenset({4})),
    ],
)
def test_parse_if_match(value: str | None, expected: object) -> None:
    assert negotiation.parse_if_match(value) == expected


@pytest.mark.parametrize(
    "value", ['"abc"', '"3', '3"', '""3""', "W/3", '"\uff11"', "\uff11", '"1", W/"\uff12"', '"*"']
)
def test_parse_if_match_rejects_garbage(value: str) -> None:
    with pytest.raises(InvalidOption) as refused:
        negotiation.parse_if_match(value)
    assert refused.value.message == f"If-Match is invalid: {value}"
