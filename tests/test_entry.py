from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedstore.entry import (
    _KEY,
    ROOT,
    EntryId,
    _usual_key_and_id,
    check_key_rules,
    document_fields,
    entry_from_document,
    merge_top_level,
    parent_of,
    put_document,
    server_authors,
    stored_document,
    validate_entry_key,
    validate_key,
)
from feedstore.errors import InvalidField, InvalidId, InvalidKey
from feedstore.fields import Limits


@pytest.mark.parametrize(
    "key",
    [
        "/",
        "/11",
        "/11/0-8-2-9-1-1-1",
        "/a/りんご",
        "/$_.-@'()[]",
        "/a" * 9 + "/x",
        "/.a/a./...",
        "/a.b",
    ],
)
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("11", "Key must start with a slash. 11"),
        ("/11/", "Key must not end with a slash. /11/"),
        ("/11//2", "Key must not contain an empty segment. /11//2"),
        ("/11/a b", "Key must not contain any prohibited characters. /11/a b"),
        ("/11/a,1", "Key must not contain any prohibited characters. /11/a,1"),
        ("/a/b/c/d/e/f/g/h/i/j/k", "Key is too deep. /a/b/c/d/e/f/g/h/i/j/k"),
        ("/11/./2", "Key must not contain a . or .. segment. /11/./2"),
        ("/11/..", "Key must not contain a . or .. segment. /11/.."),
        ("/..", "Key must not contain a . or .. segment. /.."),
        ("/./a b", "Key must not contain a . or .. segment. /./a b"),
    ],
)
def test_invalid_keys(key: str, message: str) -> None:
    with pytest.raises(InvalidKey) as caught:
        validate_key(key)
    assert caught.value.message == message
    assert caught.value.key == key


@pytest.mark.parametrize("key", ["/", "/_schema", "/_x/y"])
def test_entry_keys_exclude_root_and_reserved(key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_entry_key(key)


def test_parent_of() -> None:
    assert parent_of("/11/0-8") == "/11"
    assert parent_of("/11") == "/"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/11/1,3", EntryId("/11/1", 3)),
        ("/11/1,0", EntryId("/11/1", 0)),
        ("/11/1,3?_delete", EntryId("/11/1", 3, delete=True)),
        ("/11/1?_delete", EntryId("/11/1", None, delete=True)),
    ],
)
def test_entry_id_parse_and_format(text: str, expected: EntryId) -> None:
    assert EntryId.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["/11/1", "/11/1,", "/11/1,-1", "/11/1,x", "/11/1,١", "11/1,1", 5])
def test_entry_id_rejects(text: object) -> None:
    with pytest.raises(InvalidId) as caught:
        EntryId.parse(text)
    assert caught.value.message.startswith("ID format is invalid. ")


def test_entry_takes_key_from_self_link_and_drops_server_fields() -> None:
    document = {
        "id": "/a/1,2",
        "link": [{"___href": "/a/1", "___rel": "self"}],
        "author": [{"uri": "urn:feedstore:created:eve"}, {"name": "Ann"}],
        "published": "x",
        "updated": "y",
        "score": 1,
    }
    entry = entry_from_document(document, 0, Limits())
    assert (entry.key, entry.revision) == ("/a/1", 2)
    assert entry.fields == {
        "link": [{"___href": "/a/1", "___rel": "self"}],
        "author": [{"name": "Ann"}],
        "score": 1,
    }


def test_an_id_naming_another_key_than_the_self_link_is_kept_for_the_write_to_judge() -> None:
    # The write refuses it, unless the self link is an alias of the entry the id names.
    document = {"id": "/a/2,1", "link": [{"___href": "/a/1", "___rel": "self"}]}
    entry = entry_from_document(document, 0, Limits())
    assert (entry.key, str(entry.id)) == ("/a/1", "/a/2,1")


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"bad name": 1}, "bad name"),
        ({"title": 5}, "title"),
        ({"link": ["x"]}, "link"),
        ({"a": {"b c": 1}}, "a.b c"),
        ({"a": ["x" * 11]}, "a[0]"),
    ],
)
def test_entry_field_errors_name_the_field(document: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        entry_from_document(document, 0, Limits(max_string=10))
    assert caught.value.field == field


def test_put_merge_replaces_top_level_fields_and_links_per_rel() -> None:
    stored = {
        "link": [
            {"___href": "/a", "___rel": "self"},
            {"___href": "http://x", "___rel": "alternate"},
        ],
        "a": {"x": 1, "y": 2},
        "b": 1,
    }
    sent = {"link": [{"___href": "http://y", "___rel": "alternate"}], "a": {"x": 3}}
    assert merge_top_level(stored, sent) == {
        "link": [
            {"___href": "/a", "___rel": "self"},
            {"___href": "http://y", "___rel": "alternate"},
        ],
        "a": {"x": 3},
        "b": 1,
    }


def test_stored_document_round_trips_through_document_fields() -> None:
    fields = {"author": [{"name": "Ann"}], "title": "t", "score": 1}
    document = stored_document(
        "/a", 2, fields, published="p", updated="u", created_by="c", updated_by="d"
    )
    assert list(document)[:5] == ["id", "link", "author", "published", "updated"]
    assert document["id"] == "/a,2"
    assert document["link"] == [{"___href": "/a", "___rel": "self"}]
    assert document_fields(document) == {**fields, "link": document["link"]}


@given(
    st.text(alphabet=st.sampled_from(["/", ".", "a", "é", "\n", "\ufffe", " ", "$"]), max_size=24)
)
def test_the_one_match_of_validate_key_is_its_rules(key: str) -> None:
    try:
        check_key_rules(key)
        keeps = key != ROOT  # the root is a key, but not one an entry can be at
    except InvalidKey:
        keeps = False
    assert bool(_KEY.fullmatch(key)) is keeps


def _key_and_id_one_by_one(document: dict[str, Any]) -> tuple[str | None, EntryId | None]:
    """entry_from_document's general reading of the self link and the id."""
    entry = entry_from_document({"link": document["link"]}, 0, Limits())
    return entry.key, EntryId.parse(document["id"]) if "id" in document else None


@given(
    st.sampled_from(["/a/1", "/a/b,c", "/a/..", "a", "/a/1 ", "/", "", 5]),
    st.sampled_from(["/a/1", "/a/b,c", "/a/..", "a", "/a", "/a/1 ", "/"]),
    st.sampled_from([",2", ",0", ",", ",1" * 2, ",١", ",12345678901234567890", ",2?_delete", ""]),
    st.sampled_from(["self", "alternate"]),
)
def test_the_usual_key_and_id_are_what_the_general_path_reads(
    href: object, key: str, revision: str, rel: str
) -> None:
    # The fast path reads the usual entry, the self link alone and `<key>,<revision>`; for
    # every other shape it answers (None, None) and the general path reads it.
    document = {"id": key + revision, "link": [{"___href": href, "___rel": rel}], "title": "t"}
    try:
        expected: object = _key_and_id_one_by_one(document)
    except (InvalidKey, InvalidId, InvalidField) as e:
        expected = type(e), e.message
    try:
        usual: object = _usual_key_and_id(document)
    except (InvalidKey, InvalidId, InvalidField) as e:
        usual = type(e), e.message
    assert usual in ((None, None), expected)
    if href == key == "/a/1" and revision == ",2" and rel == "self":
        assert usual == expected == ("/a/1", EntryId("/a/1", 2))  # the usual entry, fast
    try:
        entry = entry_from_document(document, 0, Limits())
        got: object = (entry.key, entry.id)
    except (InvalidKey, InvalidId, InvalidField) as e:
        got = type(e), e.message
    if usual != (None, None):
        assert got == usual


@given(
    st.sampled_from(["/a/1", "/a/b,c", "/a/..", "a", "/a/1 ", "/", "", "/_x", "/a//b", None]),
    st.sampled_from(["/a/1", "/a/b,c", "/a/..", "a", "/a", "/a/1 ", "/", "", "/_x", None]),
    st.sampled_from([",2", ",", "?_delete", ",2?_delete", ""]),
    st.sampled_from(["self", "alternate"]),
)
def test_a_decoded_entry_key_is_a_valid_key(
    href: str | None, key: str | None, suffix: str, rel: str
) -> None:
    # writes.target_entries doesn't match a decoded entry's key again: every way
    # entry_from_document finds a key (the self link, the id, either alone) checks it.
    document: dict[str, Any] = {"title": "t"}
    if href is not None:
        document["link"] = [{"___href": href, "___rel": rel}]
    if key is not None:
        document["id"] = key + suffix
    try:
        entry = entry_from_document(document, 0, Limits())
    except (InvalidKey, InvalidId, InvalidField):
        return
    assert entry.key is None or validate_key(entry.key) == entry.key


link_items = st.fixed_dictionaries(
    {"___href": st.sampled_from(["/a", "/b/c", "http://x"])},
    optional={"___rel": st.sampled_from(["self", "alternate", "related", "via"])},
)
authors = st.lists(
    st.one_of(
        st.fixed_dictionaries({"name": st.sampled_from(["x", "y"])}),
        st.fixed_dictionaries(
            {"uri": st.sampled_from(["urn:x", "urn:feedstore:other", "urn:feedstore:updated:u"])}
        ),
    ),
    max_size=3,
)
sent_fields = st.dictionaries(
    st.sampled_from(["title", "summary", "a", "b", "link", "author", "published", "id"]),
    st.integers(),
).flatmap(
    lambda fields: st.fixed_dictionaries(
        {
            **{name: st.just(value) for name, value in fields.items()},
            **({"link": st.lists(link_items, max_size=4)} if "link" in fields else {}),
            **({"author": authors} if "author" in fields else {}),
        }
    )
)


@given(
    sent_fields,
    st.one_of(st.none(), sent_fields),
    st.sampled_from(["anonymous", "ann", "", "a:b"]),
    st.sampled_from([None, "v", "me", "ne"]),
    st.booleans(),
)
def test_put_document_is_the_merge_made_in_one_pass(
    sent: dict[str, Any],
    earlier: dict[str, Any] | None,
    creator: str,
    updated_before: str | None,
    more_in_authors: bool,
) -> None:
    stored = None
    if earlier is not None:
        stored = stored_document(
            "/k", 3, earlier, published="p", updated="u", created_by=creator,
            updated_by=updated_before,
        )  # fmt: skip
        if more_in_authors:  # a server author with more than its uri (a hand-edited one)
            stored["author"] = [{**author, "name": "n"} for author in stored["author"]]
    by_parts = stored_document(
        "/k",
        4,
        merge_top_level(document_fields(stored) if stored else None, sent),
        published=stored["published"] if stored else "now",
        updated="now",
        created_by=server_authors(stored)[0] if stored else "me",
        updated_by="me" if stored else None,
    )
    made = put_document("/k", 4, stored, sent, updated="now", principal="me")
    assert list(made.items()) == list(by_parts.items())
