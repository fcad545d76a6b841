from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from feedstore import codec_json
from feedstore.errors import (
    EntryErrors,
    EntryRequired,
    InvalidBody,
    InvalidField,
    InvalidKey,
    TooManyEntries,
)
from feedstore.fields import Limits, check_depth
from tests.conftest import snapshot

ENTRY = {"link": [{"___href": "/a", "___rel": "self"}], "x": 1}


@pytest.mark.parametrize(
    "body",
    [
        {"feed": {"entry": [ENTRY]}},
        {"feed": {"entry": ENTRY}},
        {"entry": ENTRY},
        {"entry": [ENTRY]},
        [ENTRY],
        ENTRY,
    ],
)
def test_every_body_shape_reads_the_same_entry(body: object) -> None:
    [entry] = codec_json.loads(orjson.dumps(body), Limits())
    assert entry.key == "/a"
    assert entry.fields["x"] == 1


def test_malformed_json_says_so() -> None:
    with pytest.raises(InvalidBody) as caught:
        codec_json.loads(b'{"feed": ', Limits())
    assert caught.value.message.startswith("Request format is invalid: ")


def test_depth_is_bounded() -> None:
    deep: object = 1
    for _ in range(70):
        deep = {"a": deep}
    with pytest.raises(InvalidBody, match="nesting is deeper than 64"):
        codec_json.loads(orjson.dumps(deep), Limits())


def _nested(levels: int, shape: str) -> object:
    """A value of `levels` containers, objects or lists or an Atom link list at the top."""
    value: object = "x"
    for level in range(levels):
        value = {"a": value} if shape == "object" or level % 2 else [value]
    return value


@pytest.mark.parametrize(
    "wrap",
    [
        lambda e: {"feed": {"entry": [e]}},
        lambda e: {"feed": {"entry": e}},
        lambda e: {"entry": [e]},
        lambda e: {"entry": e},
        lambda e: [e],
        lambda e: e,
    ],
)
@given(
    levels=st.integers(0, 8),
    shape=st.sampled_from(["object", "mixed"]),
    max_depth=st.integers(1, 8),
)
def test_an_entry_is_as_deep_as_its_body_allows(
    wrap: Any, levels: int, shape: str, max_depth: int
) -> None:
    """The walk that checks an entry's fields bounds their depth: loads refuses a body exactly
    when its whole document nests deeper than max_depth, whatever shape wraps the entry."""
    entry = {"link": [{"___href": "/a", "___rel": "self"}], "x": _nested(levels, shape)}
    body = wrap(entry)
    limits = Limits(max_depth=max_depth)
    try:
        check_depth(body, max_depth)
    except InvalidBody as expected:
        with pytest.raises(InvalidBody) as caught:
            codec_json.loads(orjson.dumps(body), limits)
        assert caught.value.message == expected.message
    else:
        [read] = codec_json.loads(orjson.dumps(body), limits)
        assert read.fields["x"] == entry["x"]


def test_entry_count_is_bounded() -> None:
    with pytest.raises(EntryRequired):
        codec_json.loads(b"[]", Limits())
    with pytest.raises(TooManyEntries):
        codec_json.loads(orjson.dumps([ENTRY] * 3), Limits(max_entries=2))


def test_every_bad_entry_is_reported() -> None:
    bad = [
        {"link": [{"___href": "a", "___rel": "self"}]},
        ENTRY,
        {"link": [{"___href": "/b/", "___rel": "self"}]},
    ]
    with pytest.raises(EntryErrors) as caught:
        codec_json.loads(orjson.dumps(bad), Limits())
    assert [type(e) for e in caught.value.errors] == [InvalidKey, InvalidKey]
    assert [e["key"] for e in caught.value.to_dict()["entries"]] == ["a", "/b/"]


def test_stored_documents_are_spliced_into_a_feed() -> None:
    raw = [codec_json.dumps_document({"id": "/a,1"}), codec_json.dumps_document({"id": "/b,2"})]
    assert orjson.loads(codec_json.dumps_stored(raw)) == {
        "feed": {"entry": [{"id": "/a,1"}, {"id": "/b,2"}]}
    }
    assert codec_json.loads_stored(raw[0]) == {"id": "/a,1"}


@pytest.mark.parametrize("title", ["1-100!", "", "りんご"])
def test_a_message_reads_back_as_it_was_written(title: str) -> None:
    assert codec_json.loads_message(codec_json.dumps_message(title), Limits()) == title
    assert codec_json.loads_message(b'{"feed":{}}', Limits()) is None


@pytest.mark.parametrize(
    "body", [b'{"title":"x"}', b'{"feed":{"title":"x","entry":[]}}', b"[]", b'{"feed":{"title":1}}']
)
def test_a_message_is_a_feed_with_only_a_title(body: bytes) -> None:
    with pytest.raises(InvalidBody, match="message"):
        codec_json.loads_message(body, Limits())


# -- integers: exact within what JSON storage carries, refused beyond ---------------------------

json_integers = st.integers(-(2**63), 2**64 - 1)  # what orjson carries exactly
wide_integers = st.integers(max_value=-(2**63) - 1) | st.integers(min_value=2**64)


digit_runs = st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12)), max_size=60).map(
    lambda runs: b"".join(b"7" * digits + b"x" * gap for digits, gap in runs)
)


@given(digit_runs, st.integers(0, 8))
def test_long_digits_are_found_from_every_ninth_byte_as_by_a_scan_of_all(
    body: bytes, shift: int
) -> None:
    body = b"-" * shift + body  # every alignment of the runs to the sampled bytes
    scanned = b"0" * codec_json.LONG_DIGITS in body.translate(codec_json._DIGITS_TO_ZEROS)
    assert codec_json.has_long_digits(body) is scanned


def test_a_run_of_long_digits_is_found_wherever_it_starts() -> None:
    for length in range(codec_json.LONG_DIGITS - 2, codec_json.LONG_DIGITS + 3):
        for start in range(30):
            body = b"x" * start + b"9" * length + b"x" * 7
            found = codec_json.has_long_digits(body)
            assert found is (length >= codec_json.LONG_DIGITS), (length, start)


def test_long_digits_are_found_past_many_near_misses() -> None:
    near_misses = b"x".join([b"1" * 18] * 100)  # each a place to look closer at, and short
    assert not codec_json.has_long_digits(near_misses)
    assert codec_json.has_long_digits(near_misses + b"x" + b"2" * 19)


@given(json_integers)
def test_an_integer_orjson_carries_reads_back_exactly(number: int) -> None:
    [entry] = codec_json.loads(orjson.dumps({**ENTRY, "x": {"n": [number]}}), Limits())
    assert entry.fields["x"]["n"][0] == number and type(entry.fields["x"]["n"][0]) is int


@given(wide_integers.filter(lambda n: len(str(n)) < 300))
def test_an_integer_wider_than_64_bits_is_refused_naming_its_field(number: int) -> None:
    body = b'{"link":[{"___href":"/a","___rel":"self"}],"x":{"n":[%d]}}' % number
    with pytest.raises(InvalidField) as caught:
        codec_json.loads(body, Limits())
    assert caught.value.message == f"Invalid value: x.n[0]: {number} is wider than 64 bits"
    assert (caught.value.key, caught.value.field) == ("/a", "x.n[0]")


def test_long_digits_in_strings_and_floats_are_no_integers() -> None:
    body = b'{"link":[{"___href":"/a","___rel":"self"}],"s":"%s","f":1%s.5,"e":1e30}' % (
        b"9" * 40,
        b"0" * 25,
    )
    [entry] = codec_json.loads(body, Limits())
    assert (entry.fields["s"], entry.fields["f"], entry.fields["e"]) == ("9" * 40, 1e25, 1e30)


# -- over HTTP --------------------------------------------------------------------------------


def test_integers_past_64_bits_are_400_and_the_edges_round_trip(
    client: FlaskClient, redis_client: redis.Redis
) -> None:
    edges = {"low": -(2**63), "high": 2**64 - 1}
    assert client.put("/d/a", json={"n": edges}).status_code == 200
    assert client.get("/d/a?e").json["feed"]["entry"][0]["n"] == edges  # type: ignore[index]
    xml = client.get("/d/a?e&x").data
    assert client.put("/d/a", data=xml, content_type="application/atom+xml").status_code == 200
    before = snapshot(redis_client)
    body = b'{"link":{"___href":"/a","___rel":"self"},"n":{"wide":%d}}' % (2**70 + 1)
    response = client.put("/d/a", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["feed"]["title"] == (  # type: ignore[index]
        f"Invalid value: n.wide: {2**70 + 1} is wider than 64 bits"
    )
    error = response.json["error"]  # type: ignore[index]
    assert (error["code"], error["key"], error["field"]) == ("invalid_field", "/a", "n.wide")
    assert snapshot(redis_client) == before
