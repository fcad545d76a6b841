from __future__ import annotations

import orjson
import pytest

from feedstore import codec_json
from feedstore.entry import Limits
from feedstore.errors import (
    EntryErrors,
    EntryRequired,
    InvalidBody,
    InvalidKey,
    TooManyEntries,
)

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
