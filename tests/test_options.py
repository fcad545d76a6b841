"""The options table (API.md §4.2): what each method takes, and the 400 for anything else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from feedstore import options
from feedstore.errors import InvalidOption
from tests.conftest import snapshot

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def refusal(method: str, names: list[str]) -> str:
    with pytest.raises(InvalidOption) as caught:
        options.check(method, names)
    return caught.value.message


def test_filters_and_known_options_pass() -> None:
    options.check("GET", ["f", "l", "s", "p", "n", "_pagination", "title-ft-a", "|code", "a.b"])
    options.check("PUT", ["x", "j", "e", "_addids"])
    options.check("DELETE", ["r", "_rf", "e"])
    options.check("PATCH", ["_upsert", "x"])


@pytest.mark.parametrize("method", METHODS)
def test_an_unknown_option_is_named_on_every_method(method: str) -> None:
    assert refusal(method, ["x", "_foo"]) == "Unknown option: _foo"
    assert refusal(method, ["q"]) == "Unknown option: q"


@pytest.mark.parametrize(
    ("method", "name"),
    [("GET", "_rf"), ("GET", "_setids"), ("PUT", "f"), ("POST", "_upsert"), ("HEAD", "_allocids")],
)
def test_a_known_option_on_another_method_is_refused(method: str, name: str) -> None:
    assert refusal(method, [name]) == f"Option does not apply to {method}: {name}"


def test_options_requests_are_not_checked() -> None:
    options.check("OPTIONS", ["_addids", "_anything"])  # a CORS preflight of the real request


def test_every_option_is_one_letter_or_underscored_and_listed_once() -> None:
    names = [option.name for option in options.TABLE]
    assert len(names) == len(set(names))
    assert all(options.is_option(name) for name in names)


def test_two_counter_options_are_refused() -> None:
    assert options.counter_option(["x", "_getids"]) == "_getids"
    assert options.counter_option(["e"]) is None
    with pytest.raises(InvalidOption, match=r"_addids and _setids can.t be combined\."):
        options.counter_option(["_setids", "_addids"])


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/d/p?e&_foo"),
        ("GET", "/d/p?f&k=1"),
        ("HEAD", "/d/p?_bar=1"),
        ("POST", "/d/p?_foo"),
        ("PUT", "/d/p?_foo=1"),
        ("PATCH", "/d/p?_foo"),
        ("DELETE", "/d/p?_foo"),
        ("PUT", "/d/p?_RXID"),
        ("PUT", "/d/p?m"),
    ],
)
def test_over_http_an_unknown_option_is_400_and_changes_nothing(
    client: FlaskClient, redis_client: redis.Redis, method: str, url: str
) -> None:
    client.put("/d/p", json={"title": "t"})
    before = snapshot(redis_client)
    response = client.open(url, method=method, json={"title": "u"})
    assert response.status_code == 400
    if method != "HEAD":
        name = url.split("?", 1)[1].split("&")[-1].split("=")[0]
        assert response.json == {  # type: ignore[comparison-overlap]
            "feed": {"title": f"Unknown option: {name}"},
            "error": {"status": 400, "code": "invalid_option", "entries": []},
        }
    assert snapshot(redis_client) == before


def test_over_http_a_method_override_is_checked_as_the_method_it_becomes(
    client: FlaskClient,
) -> None:
    client.put("/d/p", json={"title": "t"})
    override = {"X-HTTP-Method-Override": "PATCH"}
    assert client.post("/d/p?_upsert", json={"a": 1}, headers=override).status_code == 200
    response = client.post("/d/p?_rf", json={"a": 1}, headers=override)
    assert response.json["feed"]["title"] == "Option does not apply to PATCH: _rf"  # type: ignore[index]


def test_over_http_vtecx_clients_e_on_writes_is_accepted(client: FlaskClient) -> None:
    entry = {"link": [{"___href": "/a", "___rel": "self"}]}
    assert client.post("/d/?e", json=entry).status_code == 201
    assert client.put("/d/?e", json=entry).status_code == 200
    assert client.delete("/d/a?e&r=2").status_code == 200


def test_the_table_of_the_docs_is_this_table() -> None:
    """docs/api.md §4.9 lists the options per method; it must say what the code does."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    section = text[text.index("### 4.9 Options per method") : text.index("### 4.10")]
    rows = dict(re.findall(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]*)` \|$", section, re.M))
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        wired = {o.name for o in options.TABLE if method in o.methods}
        assert set(rows[method].split()) == wired, method
    head = {o.name for o in options.TABLE if "HEAD" in o.methods}
    assert head == set(rows["GET"].split()) - {"_pagination", "_allocids"}
