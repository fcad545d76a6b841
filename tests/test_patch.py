from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedstore import patch
from feedstore.errors import InvalidField, InvalidPatch, PatchTestFailed
from feedstore.fields import Limits
from feedstore.schema import Schema
from tests.test_schema import DOCUMENT

SCHEMA = Schema(DOCUMENT)
STORED = {
    "score": 5,
    "favorite": {"food": "りんご"},
    "parts": [{"partsid": "a", "quantity": 1}, {"partsid": "b", "quantity": 2}],
}


def test_fields_sent_replace_and_objects_merge() -> None:
    merged = patch.merge(STORED, {"score": 7, "favorite": {"music": "J-POP"}})
    assert merged["score"] == 7
    assert merged["favorite"] == {"food": "りんご", "music": "J-POP"}
    assert merged["parts"] == STORED["parts"]


def test_null_resets_to_the_default_or_removes() -> None:
    merged = patch.merge(STORED, {"score": None, "favorite": {"food": None}}, SCHEMA)
    assert merged["score"] == 0
    assert merged["favorite"] == {}


def test_keyed_list_merges_matched_adds_new_and_drops_unmentioned() -> None:
    sent = {"parts": [{"partsid": "b", "quantity": 9}, {"partsid": "c"}]}
    assert patch.merge(STORED, sent, SCHEMA)["parts"] == [
        {"partsid": "b", "quantity": 9},
        {"partsid": "c"},
    ]


def test_patchtype_merge_keeps_unmentioned_items_in_place() -> None:
    sent = {"parts": [{"partsid": "c"}, {"partsid": "a", "quantity": None}]}
    assert patch.merge(STORED, sent, SCHEMA, keep_unmentioned=True)["parts"] == [
        {"partsid": "a", "quantity": 1},
        {"partsid": "b", "quantity": 2},
        {"partsid": "c"},
    ]


@pytest.mark.parametrize("keep", [False, True])
def test_patch_delete_removes_one_item_in_either_mode(keep: bool) -> None:
    sent = {"parts": [{"partsid": "a", "$patch": "delete"}, {"partsid": "b"}]}
    assert patch.merge(STORED, sent, SCHEMA, keep_unmentioned=keep)["parts"] == [
        {"partsid": "b", "quantity": 2}
    ]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"quantity": 1}], "Merge key partsid is required: parts[0]"),
        ([{"partsid": "a"}, {"partsid": "a"}], "Merge key partsid is duplicated: parts[1]"),
        ([{"partsid": "a", "$patch": "nope"}], "Only $patch: delete is known: parts[0]"),
    ],
)
def test_bad_keyed_items_name_field_and_index(items: list[Any], message: str) -> None:
    with pytest.raises(InvalidPatch) as caught:
        patch.merge(STORED, {"parts": items}, SCHEMA)
    assert caught.value.message == message


def test_lists_without_a_merge_key_are_replaced_whole() -> None:
    assert patch.merge({"tags": [1, 2]}, {"tags": [3]}) == {"tags": [3]}
    assert patch.merge(STORED, {"parts": [{"x": 1}]})["parts"] == [{"x": 1}]  # no schema


def test_merge_does_not_change_its_inputs() -> None:
    stored, sent = copy.deepcopy(STORED), {"favorite": {"food": None}, "parts": [{"partsid": "a"}]}
    patch.merge(stored, sent, SCHEMA)
    assert stored == STORED


# RFC 7396, Appendix A: every example of the RFC, as (target, patch, result).
RFC7396_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "sent", "result"), RFC7396_EXAMPLES)
def test_merge_patch_matches_the_rfc_examples(target: Any, sent: Any, result: Any) -> None:
    assert patch.merge_patch(target, sent) == result


def test_json_patch_applies_all_six_operations() -> None:
    operations = [
        {"op": "add", "path": "/tags", "value": ["x"]},
        {"op": "replace", "path": "/score", "value": 6},
        {"op": "copy", "from": "/score", "path": "/best"},
        {"op": "move", "from": "/best", "path": "/top"},
        {"op": "remove", "path": "/favorite"},
        {"op": "test", "path": "/top", "value": 6},
    ]
    result = patch.json_patch(STORED, operations)
    assert (result["score"], result["top"], result["tags"]) == (6, 6, ["x"])
    assert "favorite" not in result and "best" not in result


def test_json_patch_failures() -> None:
    with pytest.raises(PatchTestFailed):
        patch.json_patch(STORED, [{"op": "test", "path": "/score", "value": 0}])
    with pytest.raises(InvalidPatch):
        patch.json_patch(STORED, [{"op": "remove", "path": "/nothing"}])
    with pytest.raises(InvalidField):
        patch.check_operations([{"op": "replace", "path": "/published", "value": "x"}])


@pytest.mark.parametrize(
    ("result", "field"),
    [
        ({"x¤": 1}, "x¤"),  # a name PUT refuses
        ({"a": {"b c": 1}}, "a.b c"),
        ({"title": 5}, "title"),  # not Atom text
        ({"a": "x\u0000y"}, "a"),  # XML can't carry it
    ],
)
def test_a_patch_result_is_checked_as_a_put_would_be(result: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        patch.check_result(result, "/a", Limits())
    assert caught.value.field == field
    assert caught.value.key == "/a"


def test_server_fields_and_self_link_cant_be_patched() -> None:
    with pytest.raises(InvalidField):
        patch.check_patchable({"updated": "x"}, "/a")
    with pytest.raises(InvalidField):
        patch.check_result({"link": [{"___href": "/b", "___rel": "self"}]}, "/a", Limits())
    patch.check_patchable({"id": "/a,1", "link": [{"___href": "/a", "___rel": "self"}]}, "/a")


# -- the documented rules, as a model, against generated documents ---------------------------

scalars = st.one_of(st.integers(), st.text(max_size=3), st.booleans())
names = st.sampled_from(["a", "b", "c", "score"])
values = st.recursive(
    scalars | st.lists(scalars, max_size=3),
    lambda inner: st.dictionaries(names, inner | st.none(), max_size=3),
    max_leaves=8,
)
documents = st.dictionaries(names, values, max_size=4)
patches = st.dictionaries(names, values | st.none(), max_size=4)


def model(stored: Any, sent: dict[str, Any]) -> dict[str, Any]:
    """API.md §4 read literally, without a schema: what each field of the result must be."""
    result = dict(stored) if isinstance(stored, dict) else {}
    for name, value in sent.items():
        if value is None:
            result.pop(name, None)
        elif isinstance(value, dict):
            result[name] = model(result.get(name), value)
        else:
            result[name] = value
    return result


@given(documents, patches)
def test_merge_follows_the_documented_rules(stored: dict[str, Any], sent: dict[str, Any]) -> None:
    merged = patch.merge(stored, sent)
    assert merged == model(stored, sent)
    for name in stored.keys() - sent.keys():
        assert merged[name] == stored[name], "fields not sent are untouched"


@given(documents, patches)
def test_merge_is_idempotent(stored: dict[str, Any], sent: dict[str, Any]) -> None:
    once = patch.merge(stored, sent)
    assert patch.merge(once, sent) == once


@given(documents, patches)
def test_merge_patch_with_no_nulls_in_lists_agrees_with_the_feedstore_merge(
    stored: dict[str, Any], sent: dict[str, Any]
) -> None:
    assert patch.merge_patch(stored, sent) == patch.merge(stored, sent)
