"""The page routes: index.html at `/`, its files, and jQuery served from the xstatic wheel."""

from __future__ import annotations

import re
from pathlib import Path

import fakeredis
import pytest
from flask.testing import FlaskClient

from feedstore import create_app
from feedstore.app import STATIC_DIR
from feedstore.page import JQUERY_DIR, JQUERY_VERSION


@pytest.fixture
def page_client() -> FlaskClient:
    """The page needs no data: one in-memory Redis is enough."""
    return create_app(None, fakeredis.FakeRedis()).test_client()


def test_index_is_the_page(page_client: FlaskClient) -> None:
    with page_client.get("/") as answer:
        assert answer.status_code == 200
        assert answer.mimetype == "text/html"
        assert answer.headers["Cache-Control"] == "no-cache"
        html = answer.get_data(as_text=True)
    assert '<script src="/static/vendor/jquery.min.js"></script>' in html
    assert '<script src="/static/app.js"></script>' in html


def test_the_page_loads_nothing_from_elsewhere(page_client: FlaskClient) -> None:
    with page_client.get("/") as answer:
        html = answer.get_data(as_text=True)
    urls = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert urls, "the page links its files"
    for url in urls:
        if url.startswith("data:"):
            continue  # inline, e.g. the empty favicon that spares a request
        assert url.startswith("/") and not url.startswith("//"), url
        with page_client.get(url) as linked:
            assert linked.status_code == 200, url


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [
        ("/static/app.js", "text/javascript"),
        ("/static/conflict.js", "text/javascript"),
        ("/static/history.js", "text/javascript"),
        ("/static/changes.js", "text/javascript"),
        ("/static/live.js", "text/javascript"),
        ("/static/style.css", "text/css"),
    ],
)
def test_serves_the_page_files(page_client: FlaskClient, path: str, mimetype: str) -> None:
    with page_client.get(path) as answer:
        assert (answer.status_code, answer.mimetype) == (200, mimetype)
        assert answer.data == (STATIC_DIR / Path(path).name).read_bytes()


def test_serves_jquery_from_the_xstatic_package(page_client: FlaskClient) -> None:
    with page_client.get("/static/vendor/jquery.min.js") as answer:
        assert (answer.status_code, answer.mimetype) == (200, "text/javascript")
        assert answer.data == (Path(JQUERY_DIR) / "jquery.min.js").read_bytes()
        assert f"jQuery v{JQUERY_VERSION}".encode() in answer.data[:200]
    with page_client.get("/static/vendor/jquery.min.map") as source_map:
        assert source_map.status_code == 200


def test_jquery_is_not_copied_into_the_repository() -> None:
    assert not [path for path in STATIC_DIR.rglob("*") if "jquery" in path.name.lower()]


@pytest.mark.parametrize(
    "path", ["/static/vendor/nothing.js", "/static/vendor/../../page.py", "/static/missing.css"]
)
def test_unknown_files_are_404_in_the_error_shape(page_client: FlaskClient, path: str) -> None:
    answer = page_client.get(path)
    assert answer.status_code == 404
    assert answer.get_json()["error"]["status"] == 404


def test_the_page_routes_are_read_only(page_client: FlaskClient) -> None:
    answer = page_client.post("/", headers={"X-Requested-With": "XMLHttpRequest"})
    assert answer.status_code == 405
    assert answer.get_json()["error"]["code"] == "method_not_allowed"
