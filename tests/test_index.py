from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from feedstore.index import encode_text, encode_value, indexed_fields, key_of, members
from feedstore.schema import Schema


@given(st.lists(st.floats(allow_nan=False) | st.integers(-(2**53), 2**53), min_size=2))
def test_numbers_encode_in_numeric_order(values: list[float]) -> None:
    encoded = [encode_value(value) for value in sorted(values)]
    assert encoded == sorted(encoded)  # type: ignore[type-var]


@given(st.lists(st.text(), min_size=2))
def test_strings_encode_in_code_point_order_with_the_separator_lowest(values: list[str]) -> None:
    ordered = sorted(values, key=lambda text: text.encode())
    encoded = [encode_value(text) + b"\x00key" for text in ordered]  # type: ignore[operator]
    assert encoded == sorted(encoded)


def test_minus_zero_is_zero_and_text_is_encoded_by_the_declared_type() -> None:
    assert encode_value(-0.0) == encode_value(0)
    assert encode_text("12", "integer") == encode_value(12)
    assert encode_text("12", "string") == b"12"
    assert encode_text("x", "number") is None
    assert encode_text("true", "boolean") == encode_value(True)


def test_indexed_fields_and_members() -> None:
    schema = Schema(
        {
            "type": "object",
            "properties": {
                "score": {"type": "integer", "x-index": True},
                "user": {
                    "type": "object",
                    "properties": {"email": {"type": "string", "x-index": True}},
                },
                "plain": {"type": "string"},
            },
        }
    )
    fields = indexed_fields(schema)
    assert fields == [("score",), ("user", "email")]
    found = members({"score": 3, "user": {}}, "/p/1", fields)
    assert list(found) == [("score",)]
    assert key_of(found[("score",)]) == "/p/1"
