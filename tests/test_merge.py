"""merge.three_way: disjoint changes merge in either order, overlaps are named, never lost."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedstore.errors import MergeConflict
from feedstore.merge import ABSENT, diff, format_path, three_way
from feedstore.schema import Schema

NAMES = ["a", "b", "c", "d"]
MEMBERS = ["x", "y"]
leaves = st.integers(0, 3)
objects = st.dictionaries(st.sampled_from(MEMBERS), leaves, max_size=2)
entries = st.dictionaries(st.sampled_from(NAMES), st.one_of(leaves, objects), max_size=4)
# An edit sets (or removes, ABSENT) a top-level field or a member of an object field.
edits = st.lists(
    st.tuples(
        st.sampled_from(NAMES),
        st.one_of(st.none(), st.sampled_from(MEMBERS)),
        st.one_of(leaves, st.just(ABSENT)),
    ),
    max_size=4,
)

Edit = tuple[str, str | None, Any]


def apply(fields: dict[str, Any], changes: list[Edit]) -> dict[str, Any]:
    result = copy.deepcopy(fields)
    for name, member, value in changes:
        if member is None:
            if value is ABSENT:
                result.pop(name, None)
            else:
                result[name] = value
        elif isinstance(result.get(name), dict):
            if value is ABSENT:
                result[name].pop(member, None)
            else:
                result[name][member] = value
        elif value is not ABSENT:
            result[name] = {member: value}
    return result


def changed(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """The oracle: the leaves of this two-level model that differ, with their new value."""
    found: dict[str, Any] = {}
    for name in {*base, *other}:
        before, after = base.get(name, ABSENT), other.get(name, ABSENT)
        if before == after and type(before) is type(after):
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            for member in {*before, *after}:
                if before.get(member, ABSENT) != after.get(member, ABSENT):
                    found[f"{name}.{member}"] = after.get(member, ABSENT)
        else:
            found[name] = after
    return found


@given(entries, edits, edits)
def test_disjoint_changes_merge_in_either_order(
    base: dict[str, Any], theirs: list[Edit], yours: list[Edit]
) -> None:
    yours = [edit for edit in yours if edit[0] not in {name for name, _, _ in theirs}]
    current, mine = apply(base, theirs), apply(base, yours)
    merged = three_way(base, current, mine)
    assert merged == three_way(base, mine, current)
    assert merged == apply(apply(base, theirs), yours)


@given(entries, edits, edits)
def test_a_merge_conflicts_exactly_where_both_changed_a_field(
    base: dict[str, Any], theirs: list[Edit], yours: list[Edit]
) -> None:
    current, mine = apply(base, theirs), apply(base, yours)
    their_changes, your_changes = changed(base, current), changed(base, mine)
    expected = set()
    for path, value in your_changes.items():
        for other, their_value in their_changes.items():
            if path == other:
                if value != their_value or type(value) is not type(their_value):
                    expected.add(path)
            elif path.startswith(other + "."):
                expected.add(other)
            elif other.startswith(path + "."):
                expected.add(path)
    if not expected:
        merged = three_way(base, current, mine)
        # Nothing of either side is lost: each changed leaf has the value its side wrote.
        assert changed(base, merged) == {**their_changes, **your_changes}
        return
    with pytest.raises(MergeConflict) as caught:
        three_way(base, current, mine, key="/k")
    conflicts = caught.value.conflicts
    assert {c["field"] for c in conflicts} == expected
    for conflict in conflicts:
        name, _, member = conflict["field"].partition(".")
        for side, fields in (("base", base), ("current", current), ("yours", mine)):
            value = fields.get(name, None)
            if member:
                value = value.get(member) if isinstance(value, dict) else None
            assert conflict[side] == value


def test_the_conflict_error_names_each_field_and_its_three_values() -> None:
    with pytest.raises(MergeConflict) as caught:
        three_way({"score": 1}, {"score": 5}, {"score": 7}, key="/k")
    error = caught.value
    assert (error.status, error.code, error.message) == (
        409,
        "merge_conflict",
        "Merge conflict. Key = /k",
    )
    assert error.to_dict()["conflicts"] == [{"field": "score", "base": 1, "current": 5, "yours": 7}]


def test_convergent_changes_merge() -> None:
    assert three_way({"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 2, "b": 3}) == {"a": 2, "b": 3}


def test_a_removed_field_stays_removed_beside_their_change() -> None:
    """A null reset (the field gone from yours) merges with a change elsewhere."""
    assert three_way({"a": 1, "b": 1}, {"a": 1, "b": 2}, {"b": 1}) == {"b": 2}


def test_a_number_is_not_its_float_or_boolean() -> None:
    assert diff({"a": 1}, {"a": 1.0}) == {(diff({}, {"a": 0}).popitem()[0]): 1.0}
    with pytest.raises(MergeConflict):
        three_way({"a": 0}, {"a": 1}, {"a": True})


SCHEMA = Schema(
    {
        "type": "object",
        "properties": {
            "parts": {
                "type": "array",
                "x-merge-key": "partsid",
                "items": {
                    "type": "object",
                    "properties": {"partsid": {"type": "string"}, "quantity": {"type": "integer"}},
                },
            },
            "address": {
                "type": "object",
                "x-merge": "atomic",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            },
            "note": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            },
        },
    }
)
PARTS = [{"partsid": "p1", "quantity": 1}, {"partsid": "p2", "quantity": 1}]


def test_keyed_items_merge_one_by_one() -> None:
    base = {"parts": PARTS}
    current = {"parts": [PARTS[0] | {"quantity": 5}, PARTS[1]]}
    mine = {"parts": [PARTS[0], PARTS[1] | {"quantity": 7}, {"partsid": "p3", "quantity": 1}]}
    assert three_way(base, current, mine, SCHEMA) == {
        "parts": [
            {"partsid": "p1", "quantity": 5},
            {"partsid": "p2", "quantity": 7},
            {"partsid": "p3", "quantity": 1},
        ]
    }


def test_the_same_keyed_item_field_conflicts_by_its_key() -> None:
    base = {"parts": PARTS}
    current = {"parts": [PARTS[0], PARTS[1] | {"quantity": 5}]}
    mine = {"parts": [PARTS[0], PARTS[1] | {"quantity": 7}]}
    with pytest.raises(MergeConflict) as caught:
        three_way(base, current, mine, SCHEMA, key="/k")
    assert caught.value.conflicts == [
        {"field": "parts[partsid=p2].quantity", "base": 1, "current": 5, "yours": 7}
    ]


def test_an_item_they_removed_that_you_changed_conflicts() -> None:
    with pytest.raises(MergeConflict) as caught:
        three_way(
            {"parts": PARTS},
            {"parts": PARTS[:1]},
            {"parts": [PARTS[0], PARTS[1] | {"quantity": 2}]},
            SCHEMA,
        )
    assert [c["field"] for c in caught.value.conflicts] == ["parts[partsid=p2]"]


def test_an_atomic_object_is_one_field() -> None:
    base = {"address": {"street": "1 A St", "city": "X"}, "note": {"a": 1, "b": 1}}
    current = {"address": {"street": "2 B St", "city": "X"}, "note": {"a": 2, "b": 1}}
    mine = {"address": {"street": "1 A St", "city": "Y"}, "note": {"a": 1, "b": 2}}
    with pytest.raises(MergeConflict) as caught:
        three_way(base, current, mine, SCHEMA)
    assert [c["field"] for c in caught.value.conflicts] == ["address"]
    # Without the mark, the same object merges member by member.
    del mine["address"], current["address"]
    assert three_way(base, current, mine, SCHEMA) == {"note": {"a": 2, "b": 2}}


def test_links_merge_per_rel() -> None:
    self_link = {"___href": "/k", "___rel": "self"}
    alias = {"___href": "/other", "___rel": "alternate"}
    related = {"___href": "http://example.com/", "___rel": "related"}
    base = {"link": [self_link]}
    merged = three_way(base, {"link": [self_link, alias]}, {"link": [self_link, related]})
    assert merged == {"link": [self_link, alias, related]}
    assert (
        format_path(next(iter(diff(base, {"link": [self_link, alias]})))) == "link[rel=alternate]"
    )


def test_an_acl_they_changed_always_conflicts() -> None:
    acl = {"uri": "urn:vte.cx:acl:+,R"}
    with pytest.raises(MergeConflict) as caught:
        three_way({"a": 1}, {"a": 1, "contributor": [acl]}, {"a": 2})
    assert [c["field"] for c in caught.value.conflicts] == ["contributor"]
    # A contributor that is no ACL is an ordinary field.
    person = {"uri": "mailto:ann@example.com"}
    assert three_way({"a": 1}, {"a": 1, "contributor": [person]}, {"a": 2}) == {
        "a": 2,
        "contributor": [person],
    }


def test_the_server_fields_take_no_part() -> None:
    base = {"id": "/k,1", "updated": "t1", "a": 1}
    assert diff(base, {"id": "/k,2", "updated": "t2", "a": 1}) == {}
