from __future__ import annotations

from typing import Any

import pytest

from feedstore.errors import InvalidOption
from feedstore.query import Filter, Matcher, Sort, parse, values_at
from feedstore.schema import Schema

SCHEMA = Schema(
    {
        "type": "object",
        "properties": {
            "userinfo": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
            },
            "code": {"type": "string"},
        },
    }
)


def test_parse_reads_filters_or_group_sort_limit_and_skips_options() -> None:
    args = [
        ("f", ""), ("x", ""), ("_nometa", ""), ("l", "5"), ("s", "userinfo.id-desc"),
        ("userinfo.email", "a@b"), ("userinfo.id-ge-3", ""),
        ("|code-fm-A", ""), ("|code-bm-=Z", "q"),
    ]  # fmt: skip
    query = parse(args, SCHEMA, 50_000)
    assert query.filters == [
        Filter(("userinfo", "email"), "eq", "a@b"),
        Filter(("userinfo", "id"), "ge", "3"),
    ]
    assert query.any_of == [Filter(("code",), "fm", "A"), Filter(("code",), "bm", "=Z=q")]
    assert (query.sort, query.limit, query.nometa) == (Sort(("userinfo", "id"), True), 5, True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([("l", "0")], "Limit must be a number from 1 to 1000, or *: l=0"),
        ([("l", "1001")], "Limit must be a number from 1 to 1000, or *: l=1001"),
        ([("favorite.color", "red")], "Unknown field: favorite.color"),
        ([("s", "nothing")], "Unknown field: nothing"),
        ([("code-rg-(", "")], "Regular expression is invalid: ("),
        ([("bad field", "1")], "Filter field is invalid: bad field"),
    ],
)
def test_parse_errors(args: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        parse(args, SCHEMA, 50_000)
    assert caught.value.message.startswith(message)


def test_without_a_schema_any_field_is_a_filter() -> None:
    assert parse([("favorite.color", "red")], None, 10).filters[0].path == ("favorite", "color")
    assert parse([("l", "*")], None, 10).limit == 10


def matches(
    args: list[tuple[str, str]], document: dict[str, Any], schema: Schema | None = SCHEMA
) -> bool:
    return Matcher(parse(args, schema, 100), schema)(document)


USER = {"userinfo": {"id": 12, "email": "hoge@foo.com"}, "code": "AB-12", "title": "Hello"}


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ("userinfo.id-eq-12", True), ("userinfo.id-eq-12.0", True), ("userinfo.id-ne-12", False),
        ("userinfo.id-lt-13", True), ("userinfo.id-le-12", True), ("userinfo.id-gt-12", False),
        ("userinfo.id-ge-9", True),  # 12 >= 9 as numbers, though "12" < "9" as strings
        ("code-lt-AB-2", True), ("code-gt-AB-2", False),  # strings compare as strings
        ("code-fm-AB", True), ("code-bm-12", True), ("code-bm-AB", False),
        ("code-rg-[A-Z]+-[0-9]+", True), ("code-rg-AB", False),  # a full match, not a search
        ("title-fm-Hel", True), ("userinfo.missing-ne-1", True), ("userinfo.missing-eq-1", False),
    ],
)  # fmt: skip
def test_operators_typed_by_the_schema(filter: str, expected: bool) -> None:
    schema = None if filter.startswith("userinfo.missing") else SCHEMA
    assert matches([(filter, "")], USER, schema) is expected


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ("title-ft-ell", True),  # anywhere in the text, not only at a word's start
        ("title-ft-HELLO", True),  # any case
        ("title-ft-\uff28\uff45\uff4c\uff4c\uff4f", True),  # any width: full-width "Ｈｅｌｌｏ"
        ("title-ft-hello,xyz", False), ("code-ft-ab,12", True),  # `,`: every word
        ("code-ft-ab-12", True), ("code-ft-b 1", False),  # a word is taken as written
        ("userinfo.id-ft-2", True),  # a number by its text
        ("userinfo-ft-12", False),  # an object has no text
        ("title-ft-hello,", True),  # empty words are left out
    ],
)  # fmt: skip
def test_full_text_search(filter: str, expected: bool) -> None:
    assert matches([(filter, "")], USER) is expected


def test_full_text_search_normalizes_kana_and_finds_words_across_list_items() -> None:
    document = {"tags": ["\uff76\uff80\uff76\uff85 red apple", "green pear"], "title": "x"}
    assert matches([("tags-ft-\u30ab\u30bf\u30ab\u30ca", "")], document, None)  # half-width kana
    assert matches([("tags-ft-apple,green", "")], document, None)
    assert not matches([("tags-ft-apple,plum", "")], document, None)
    assert matches([("|tags-ft-plum", ""), ("|title-ft-X", "")], document, None)


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_full_text_search_needs_a_word(value: str) -> None:
    with pytest.raises(InvalidOption, match="Full-text search needs a word: title-ft-"):
        parse([(f"title-ft-{value}", "")], None, 10)


def test_a_full_width_digit_is_never_a_number() -> None:
    with pytest.raises(InvalidOption, match="not a valid integer"):  # declared: refused
        matches([("userinfo.id-lt-\uff19\uff19", "")], USER)
    assert not matches([("userinfo.id-lt-\uff19\uff19", "")], USER, None)  # undeclared
    assert not matches([("userinfo.id-eq-\uff11\uff12", "")], USER, None)
    stored_text = {"userinfo": {"id": "\uff11\uff12"}}  # stored before the schema typed it
    assert not matches([("userinfo.id-ge-0", "")], stored_text)


def test_without_a_schema_numbers_still_compare_as_numbers() -> None:
    assert matches([("n-gt-9", "")], {"n": 12}, None)
    assert not matches([("n-gt-9", "")], {"n": "12"}, None), "a stored string compares as a string"


def test_and_with_an_or_group() -> None:
    args = [("title", "Hello"), ("|code", "nope"), ("|userinfo.id", "12")]
    assert matches(args, USER)
    assert not matches([("title", "Bye"), ("|userinfo.id", "12")], USER)


def test_lists_match_when_any_item_does() -> None:
    document = {"category": [{"___term": "a"}, {"___term": "b"}]}
    assert matches([("category.___term", "b")], document, None)
    assert list(values_at(document, ("category", "___term"))) == ["a", "b"]


def test_a_hostile_regular_expression_is_cut_off() -> None:
    matcher = Matcher(parse([("code-rg-(a|aa)+$", "")], None, 10), None)
    with pytest.raises(InvalidOption, match="Regular expression took too long"):
        for _ in range(100):
            matcher({"code": "a" * 64 + "!"})
