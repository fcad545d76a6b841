"""The key scheme: every key of a partition carries its tag; the depth says what a partition is."""

from __future__ import annotations

import pytest

from feedstore.keys import KeyScheme, ParsedKey, parse


@pytest.mark.parametrize(
    ("depth", "key", "partition"),
    [
        (1, "/", "/"),
        (1, "/11", "/11"),
        (1, "/11/1/2", "/11"),
        (2, "/", "/"),
        (2, "/_user", "/_user"),
        (2, "/_user/5", "/_user/5"),
        (2, "/_user/5/posts/9", "/_user/5"),
        (3, "/a/b", "/a/b"),
    ],
)
def test_a_partition_is_the_first_depth_segments(depth: int, key: str, partition: str) -> None:
    assert KeyScheme(depth).partition(key) == partition
    assert KeyScheme(depth).tag(key) == f"fs:{{{partition}}}:"


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("key", ["/", "/11", "/11/1", "/11/1/2/3", "/_user/5/x"])
def test_an_entrys_three_keys_are_its_document_revision_and_alias_keys(
    depth: int, key: str
) -> None:
    keys = KeyScheme(depth)
    assert keys.entry_keys(key) == (
        keys.document_key(key),
        keys.revision_key(key),
        keys.alias_key(key),
    )


def test_every_key_of_an_entry_carries_its_partitions_tag() -> None:
    keys = KeyScheme(1)
    assert keys.document_key("/11/1/2") == "fs:{/11}:d:/11/1/2"
    assert keys.revision_key("/11/1") == "fs:{/11}:r:/11/1"
    assert keys.children_key("/11") == "fs:{/11}:c:/11"
    assert keys.children_key("/") == "fs:{/}:c:/"
    assert keys.alias_key("/12/x") == "fs:{/12}:a:/12/x", "an alias is in its own partition"
    assert keys.sequence_key("/11") == "fs:{/11}:n:/11"
    assert keys.counter_key("/11/1") == "fs:{/11}:ids:/11/1"
    assert keys.counter_range_key("/11/1") == "fs:{/11}:idr:/11/1"
    assert keys.index_key("/11", "a.b") == "fs:{/11}:i:a.b:/11"
    assert KeyScheme(2).document_key("/_user/5/x") == "fs:{/_user/5}:d:/_user/5/x"


def test_parents_above_the_depth_are_apart_from_their_children() -> None:
    one, two = KeyScheme(1), KeyScheme(2)
    assert one.children_apart("/") and not one.children_apart("/11")
    assert one.is_partition_root("/11") and not one.is_partition_root("/11/1")
    assert not one.is_partition_root("/")
    assert two.children_apart("/_user") and not two.children_apart("/_user/5")
    assert two.is_partition_root("/_user/5") and not two.is_partition_root("/_user/5/x")


def test_a_depth_outside_1_to_10_is_refused() -> None:
    for depth in (0, 11):
        with pytest.raises(ValueError, match="partition depth must be 1 to 10"):
            KeyScheme(depth)


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("fs:d:/11/1", ParsedKey("d", "/11/1")),
        ("fs:ids:/a", ParsedKey("ids", "/a")),
        ("fs:i:a.b:/11", ParsedKey("i", "/11", "a.b")),
        ("fs:{/11}:d:/11/1", ParsedKey("d", "/11/1", tag="/11")),
        ("fs:{/_user}:i:score:/_user", ParsedKey("i", "/_user", "score", "/_user")),
        ("fs:{schema}", None),
        ("fs:{schema}:v", None),
        ("fs:schema", None),
        ("fs:secret", None),
        ("fs:pg:0a1b", None),
        ("fs:partition-depth", None),
        ("other:d:/a", None),
    ],
)
def test_keys_of_either_scheme_parse_back(name: str, parsed: ParsedKey | None) -> None:
    assert parse(name) == parsed


def test_a_parsed_key_is_named_in_any_scheme() -> None:
    assert parse("fs:d:/_user/5/x").name(KeyScheme(2)) == "fs:{/_user/5}:d:/_user/5/x"  # type: ignore[union-attr]
    index = parse("fs:{/_user/5}:i:n:/_user/5")
    assert index is not None and index.name(KeyScheme(1)) == "fs:{/_user}:i:n:/_user/5"
