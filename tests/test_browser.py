"""The page in real headless Chromium (Debian's, driven by Playwright) against a real server.

The server is the app on werkzeug in a thread of this test process, over a real redis-server;
each test starts from an empty database, and runs once against each JSON style (entries in a
feed, or bare as vte.cx answers them). Screenshots go to tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Playwright,
    Route,
    ViewportSize,
    expect,
    sync_playwright,
)
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from feedstore import create_app
from feedstore.credentials import Credentials
from feedstore.embedded import EmbeddedRedis
from feedstore.store import Store
from tests.conftest import OPEN_ACL, bearer
from tests.serving import WRITE_HEADERS, Response, request

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Keys under these prefixes keep their superseded revisions (docs/api.md §17): /plain doesn't.
HISTORY = ("/orders=20", "/notes=20")
LAPTOP: ViewportSize = {"width": 1280, "height": 800}
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SCHEMA = {
    "type": "object",
    "properties": {
        "userinfo": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
        },
        "favorite": {
            "type": "object",
            "properties": {"food": {"type": "string"}, "music": {"type": "string"}},
        },
        "score": {"type": "integer", "default": 0},
        "done": {"type": "boolean"},
        "parts": {
            "type": "array",
            "x-merge-key": "partsid",
            "items": {
                "type": "object",
                "properties": {"partsid": {"type": "string"}, "quantity": {"type": "integer"}},
            },
        },
    },
}
ORDER = {
    "title": "Order for Hanako",
    "userinfo": {"id": 1234, "email": "hanako@example.com"},
    "favorite": {"food": "crème brûlée", "music": "J-POP"},
    "score": 120,
    "done": False,
    "parts": [{"partsid": "a1", "quantity": 2}, {"partsid": "b7", "quantity": 5}],
}


class QuietHandler(WSGIRequestHandler):
    """werkzeug's handler without a log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class Server:
    """The app served on 127.0.0.1 in a thread; `store` is its Store, for seeding the schema."""

    http: BaseWSGIServer
    store: Store
    port: int = field(init=False)

    def __post_init__(self) -> None:
        self.port = self.http.server_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: Any = None) -> Response:
        return request(self.port, method, path, body, WRITE_HEADERS)

    def create(self, key: str, **fields: Any) -> None:
        entry = {"link": [{"___href": key, "___rel": "self"}], **fields}
        assert self.call("POST", "/d/", {"feed": {"entry": [entry]}}).status == 201

    def update(self, key: str, **fields: Any) -> None:
        """Another client's PUT of fields over the entry at key, with the id it reads."""
        stored = self.entry(key)
        assert stored is not None
        assert self.call("PUT", "/d/", {"feed": {"entry": [{**stored, **fields}]}}).status == 200

    def entry(self, key: str) -> dict[str, Any] | None:
        """The stored entry at key, read in the server's JSON style; None when there is none."""
        answer = self.call("GET", f"/d{key}?e")
        if answer.status == 204:
            return None
        document = answer.json()
        found: dict[str, Any] = document["feed"]["entry"][0] if "feed" in document else document
        return found


@contextlib.contextmanager
def serving(redis_server: EmbeddedRedis, config: dict[str, Any]) -> Iterator[Server]:
    """The app of `config` served on 127.0.0.1 in a thread, until the block ends."""
    client = redis.Redis.from_url(redis_server.url)
    app = create_app(config, client)
    http = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=http.serve_forever, name="page-server", daemon=True)
    thread.start()
    try:
        yield Server(http, app.extensions["feedstore"].store)
    finally:
        http.shutdown()
        thread.join(10)
        http.server_close()
        client.close()


@pytest.fixture(scope="module", params=["feed", "bare"])
def live_server(request: pytest.FixtureRequest, redis_server: EmbeddedRedis) -> Iterator[Server]:
    config = {"json_style": request.param, "history": HISTORY}
    with serving(redis_server, config) as server:
        yield server


@pytest.fixture
def server(live_server: Server) -> Server:
    """The live server over an empty database."""
    live_server.store.redis.flushdb()
    return live_server


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # Playwright gives every launch a fresh temporary user-data-dir.
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, chromium_sandbox=False
    )
    yield browser
    browser.close()


@pytest.fixture
def open_page(browser: Browser, server: Server) -> Iterator[Callable[[str], Page]]:
    """Open the page at a hash in a new browser context (a separate user); check what it did."""
    contexts: list[BrowserContext] = []
    failures: list[str] = []
    elsewhere: list[str] = []

    def opener(hash_part: str = "", before: Callable[[Page], Any] | None = None) -> Page:
        """`before(page)` runs before the page loads (to route or watch its requests)."""
        context = browser.new_context(viewport=LAPTOP)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: failures.append(str(error)))
        page.on(
            "request",
            lambda sent: None if sent.url.startswith(server.url) else elsewhere.append(sent.url),
        )
        if before:
            before(page)
        page.goto(f"{server.url}/{hash_part}")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        return page

    yield opener
    for context in contexts:
        context.close()
    assert failures == [], "the page threw"
    assert elsewhere == [], "the page reached beyond the feedstore server"


def field_control(page: Page, *path: str | int) -> Locator:
    """The form control of the field at path, e.g. ("parts", 1, "quantity")."""
    key = json.dumps(list(path), separators=(",", ":"), ensure_ascii=False)
    return page.locator(f"#fields [data-kind][data-path='{key}']")


def save_screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file; AssertionError when it isn't one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is no PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def seed_orders(server: Server, count: int) -> None:
    server.store.set_schema(SCHEMA)
    server.create("/orders", title="Orders")
    entries = [
        {
            "link": [{"___href": f"/orders/{n:03d}", "___rel": "self"}],
            **ORDER,
            "title": f"Order {n:03d}",
            "score": n,
        }
        for n in range(1, count + 1)
    ]
    assert server.call("POST", "/d/", {"feed": {"entry": entries}}).status == 201


# -- browse and page ---------------------------------------------------------------------------


def test_lists_children_and_pages_through_them(server: Server, open_page: Any) -> None:
    seed_orders(server, 25)
    page = open_page("#list=/orders")
    rows = page.locator("#children tbody tr")
    expect(rows).to_have_count(20)
    expect(rows.first).to_contain_text("Order 001")
    expect(page.locator("#page-info")).to_have_text("Page 1 · 1–20")

    page.get_by_role("button", name="Next ›").click()
    expect(page.locator("#page-info")).to_have_text("Page 2 · 21–25")
    expect(rows).to_have_count(5)
    expect(rows.last).to_contain_text("Order 025")
    expect(page.get_by_role("button", name="Next ›")).to_be_disabled()

    page.get_by_role("button", name="‹ Previous").click()
    expect(page.locator("#page-info")).to_have_text("Page 1 · 1–20")
    page.get_by_label("Per page").select_option("10")
    expect(rows).to_have_count(10)


def test_browses_into_children_and_back(server: Server, open_page: Any) -> None:
    seed_orders(server, 2)
    page = open_page()
    expect(page.locator("#children tbody tr")).to_have_count(1)
    page.get_by_role("button", name="Children of /orders ›").click()
    expect(page.locator("#list-key")).to_have_text("/orders")
    expect(page.locator("#children tbody tr")).to_have_count(2)
    page.locator("#breadcrumb").get_by_role("link", name="root").click()
    expect(page.locator("#list-key")).to_have_text("/")
    page.get_by_label("Key", exact=True).fill("/orders")
    page.get_by_label("Key", exact=True).press("Enter")
    expect(page.locator("#children tbody tr")).to_have_count(2)


# -- open, edit, save --------------------------------------------------------------------------


def test_opens_an_entry_as_a_form_typed_by_the_schema(server: Server, open_page: Any) -> None:
    seed_orders(server, 1)
    page = open_page("#list=/orders")
    page.get_by_role("link", name="001").click()
    expect(page.locator("#entry-key")).to_have_text("/orders/001")
    expect(page.locator("#revision")).to_have_text("revision 1")
    expect(field_control(page, "title")).to_have_value("Order 001")
    expect(field_control(page, "userinfo", "email")).to_have_value("hanako@example.com")
    expect(field_control(page, "userinfo", "id")).to_have_attribute("type", "number")
    expect(field_control(page, "userinfo", "id")).to_have_attribute("step", "1")
    expect(field_control(page, "done")).to_have_attribute("type", "checkbox")
    expect(field_control(page, "parts", 1, "quantity")).to_have_value("5")
    expect(page.locator("#fields legend").filter(has_text="keyed list · partsid")).to_be_visible()

    page.get_by_role("tab", name="JSON").click()
    raw = json.loads(page.get_by_label("The entry as JSON").input_value())
    assert raw["id"] == "/orders/001,1" and raw["parts"] == ORDER["parts"]


def test_saves_with_put_sending_the_id_it_read(server: Server, open_page: Any) -> None:
    seed_orders(server, 1)
    page = open_page("#list=/orders&open=/orders/001")
    with page.expect_request(lambda sent: sent.method == "PUT") as sent_put:
        field_control(page, "title").fill("Rush order")
        field_control(page, "parts", 0, "quantity").fill("3")
        field_control(page, "done").check()
        expect(page.locator("#dirty")).to_be_visible()
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#revision")).to_have_text("revision 2")
    expect(page.locator("#dirty")).to_be_hidden()
    expect(page.locator("#notice")).to_contain_text("(PUT)")

    put = sent_put.value
    assert put.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert put.headers["x-requested-with"] == "XMLHttpRequest"
    assert json.loads(put.post_data or "")["feed"]["entry"][0]["id"] == "/orders/001,1"
    stored = server.entry("/orders/001")
    assert stored is not None and stored["id"] == "/orders/001,2"
    assert (stored["title"], stored["done"]) == ("Rush order", True)
    assert stored["parts"] == [{"partsid": "a1", "quantity": 3}, {"partsid": "b7", "quantity": 5}]
    expect(page.locator("#children tr.current")).to_contain_text("Rush order")


def test_saves_with_patch_of_only_the_changed_fields(server: Server, open_page: Any) -> None:
    seed_orders(server, 1)
    page = open_page("#open=/orders/001")
    page.get_by_label("PATCH").check()
    with page.expect_request(lambda sent: sent.method == "PATCH") as sent_patch:
        field_control(page, "userinfo", "email").fill("hanako@example.org")
        page.get_by_role("button", name="Remove favorite", exact=True).click()
        page.get_by_role("button", name="Remove parts[0]", exact=True).click()
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#revision")).to_have_text("revision 2")

    patch = sent_patch.value
    assert patch.headers["if-match"] == '"1"'
    assert json.loads(patch.post_data or "") == {
        "feed": {
            "entry": [
                {
                    "userinfo": {"email": "hanako@example.org"},
                    "parts": [{"partsid": "b7"}],
                    "favorite": None,
                }
            ]
        }
    }
    stored = server.entry("/orders/001")
    assert stored is not None and "favorite" not in stored
    assert stored["userinfo"] == {"id": 1234, "email": "hanako@example.org"}
    assert stored["parts"] == [{"partsid": "b7", "quantity": 5}]


def test_adds_fields_and_items_and_saves_from_the_keyboard(server: Server, open_page: Any) -> None:
    server.create("/notes")
    page = open_page("#open=/notes")
    page.get_by_role("button", name="Other field…", exact=True).click()
    page.get_by_label("Name", exact=True).fill("tags")
    page.get_by_label("Type", exact=True).select_option("array")
    page.get_by_label("Name", exact=True).press("Enter")
    page.get_by_role("button", name="+ Add item to tags").click()
    page.keyboard.type("red")
    page.keyboard.press("Control+s")
    expect(page.locator("#revision")).to_have_text("revision 2")
    stored = server.entry("/notes")
    assert stored is not None and stored["tags"] == ["red"]


def test_edits_the_raw_json(server: Server, open_page: Any) -> None:
    server.create("/notes", title="Plain", body="first")
    page = open_page("#open=/notes")
    page.get_by_role("tab", name="JSON").click()
    editor = page.get_by_label("The entry as JSON")
    editor.fill("{ not json")
    expect(page.locator("#json-error")).not_to_be_empty()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#error")).to_contain_text("not valid")

    raw = server.entry("/notes")
    assert raw is not None
    editor.fill(json.dumps({**raw, "body": "second", "extra": {"n": 1}}))
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#revision")).to_have_text("revision 2")
    stored = server.entry("/notes")
    assert stored is not None and (stored["body"], stored["extra"]) == ("second", {"n": 1})


# -- create and delete -------------------------------------------------------------------------


def test_creates_children_numbered_and_named(server: Server, open_page: Any) -> None:
    server.create("/inbox", title="Inbox")
    page = open_page("#list=/inbox")
    expect(page.locator("#list-empty")).to_be_visible()
    page.get_by_role("button", name="New child").click()
    field_control(page, "title").fill("First")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#entry-key")).to_have_text("/inbox/1")
    expect(page.locator("#revision")).to_have_text("revision 1")

    page.get_by_role("button", name="New child").click()
    page.get_by_label("New key").fill("named")
    field_control(page, "title").fill("Second")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#entry-key")).to_have_text("/inbox/named")
    expect(page.locator("#children tbody tr")).to_have_count(2)
    stored = server.entry("/inbox/1")
    assert stored is not None and stored["title"] == "First"


def test_deletes_an_entry_and_refuses_one_with_children(server: Server, open_page: Any) -> None:
    server.create("/box", title="Box")
    server.create("/box/a", title="A")
    page = open_page("#list=/box&open=/box")
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator("#error")).to_contain_text("Can't delete for the child entries exist")

    page.get_by_role("link", name="a", exact=True).click()
    expect(page.locator("#entry-key")).to_have_text("/box/a")
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator("#notice")).to_have_text("Deleted /box/a.")
    expect(page.locator("#list-empty")).to_be_visible()
    assert server.entry("/box/a") is None


# -- conflicts ---------------------------------------------------------------------------------


def edit_in_two_contexts(server: Server, open_page: Any, mode: str) -> tuple[Page, Page]:
    """Users A and B open /orders/001 and edit it; A saves first (revision 2); B's save then
    conflicts. (B edits first: an unedited editor would follow A's save live.)"""
    seed_orders(server, 1)
    first, second = open_page("#open=/orders/001"), open_page("#open=/orders/001")
    second.get_by_label(mode).check()
    field_control(second, "title").fill("Title by B")
    field_control(second, "favorite", "music").fill("Jazz")

    field_control(first, "title").fill("Title by A")
    field_control(first, "score").fill("7")
    first.get_by_role("button", name="Save", exact=True).click()
    expect(first.locator("#revision")).to_have_text("revision 2")

    second.get_by_role("button", name="Save", exact=True).click()
    expect(second.locator("#conflict")).to_be_visible()
    return first, second


def test_conflict_shows_both_versions_and_keep_mine_wins(server: Server, open_page: Any) -> None:
    _, page = edit_in_two_contexts(server, open_page, "PUT")
    expect(page.locator("#conflict-summary")).to_contain_text("409")
    differing = page.locator("#conflict-table tr.differs")
    expect(differing).to_have_count(3)
    title = page.locator("#conflict-table tr[data-path='title']")
    expect(title.locator("td.mine")).to_have_text("Title by B")
    expect(title.locator("td.theirs")).to_have_text("Title by A")
    expect(title).to_contain_text("both changed")
    expect(page.locator("#conflict-table tr[data-path='score']")).to_contain_text("they changed")

    page.get_by_role("button", name="Keep mine").click()
    expect(page.locator("#revision")).to_have_text("revision 3")
    stored = server.entry("/orders/001")
    assert stored is not None
    assert (stored["title"], stored["score"], stored["favorite"]["music"]) == (
        "Title by B",
        1,
        "Jazz",
    )


def test_conflict_on_patch_take_theirs_keeps_the_stored_entry(
    server: Server, open_page: Any
) -> None:
    _, page = edit_in_two_contexts(server, open_page, "PATCH")
    expect(page.locator("#conflict-summary")).to_contain_text("412")
    page.get_by_role("button", name="Take theirs").click()
    expect(page.locator("#revision")).to_have_text("revision 2")
    expect(field_control(page, "title")).to_have_value("Title by A")
    stored = server.entry("/orders/001")
    assert stored is not None and stored["id"] == "/orders/001,2"
    assert (stored["title"], stored["score"], stored["favorite"]["music"]) == (
        "Title by A",
        7,
        "J-POP",
    )


def test_conflict_merges_field_by_field(server: Server, open_page: Any) -> None:
    _, page = edit_in_two_contexts(server, open_page, "PATCH")
    page.get_by_role("radiogroup", name="Keep for title").get_by_label("Theirs").check()
    page.get_by_role("button", name="Save merge").click()
    expect(page.locator("#revision")).to_have_text("revision 3")
    stored = server.entry("/orders/001")
    assert stored is not None
    assert (stored["title"], stored["score"], stored["favorite"]["music"]) == (
        "Title by A",
        7,
        "Jazz",
    )


# -- merges: the server's merge of a stale save, and its conflicts -----------------------------


def edit_stale(server: Server, open_page: Any, mode: str, **edits: str) -> Page:
    """User B opens /orders/001 and makes `edits`; A saves title and score (revision 2); B is
    then to save from revision 1 with `mode` and Merge checked."""
    seed_orders(server, 1)
    page = open_page("#open=/orders/001")
    page.get_by_label(mode).check()
    page.get_by_label("Merge").check()
    for name, value in edits.items():
        field_control(page, *name.split("__")).fill(value)
    server.update("/orders/001", title="Title by A", score=7)
    return page


@pytest.mark.parametrize("mode", ["PUT", "PATCH"])
def test_merge_saves_a_stale_edit_of_other_fields(
    server: Server, open_page: Any, mode: str
) -> None:
    page = edit_stale(server, open_page, mode, favorite__music="Jazz")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#revision")).to_have_text("revision 3")
    expect(page.locator("#notice")).to_contain_text("were merged with those saved since")
    expect(field_control(page, "title")).to_have_value("Title by A")
    stored = server.entry("/orders/001")
    assert stored is not None
    assert (stored["title"], stored["score"], stored["favorite"]["music"]) == (
        "Title by A",
        7,
        "Jazz",
    )


@pytest.mark.parametrize("mode", ["PUT", "PATCH"])
def test_merge_conflict_shows_the_servers_fields(server: Server, open_page: Any, mode: str) -> None:
    page = edit_stale(server, open_page, mode, title="Title by B", favorite__music="Jazz")
    with page.expect_response(lambda answer: answer.status == 409) as refused:
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#conflict")).to_be_visible()
    assert refused.value.json()["error"]["conflicts"] == [
        {"field": "title", "base": "Order 001", "current": "Title by A", "yours": "Title by B"}
    ]
    expect(page.locator("#conflict-summary")).to_contain_text("Merge conflict")
    expect(page.locator("#conflict-summary .merge-note")).to_contain_text("both changed title")
    conflicting = page.locator("#conflict-table tr.merge-conflict")
    expect(conflicting).to_have_count(1)
    title = conflicting.first
    expect(title).to_have_attribute("data-path", "title")
    expect(title.locator("th")).to_contain_text("conflict")
    expect(title.locator("td.base")).to_have_text("Order 001")
    expect(title.locator("td.mine")).to_have_text("Title by B")
    expect(title.locator("td.theirs")).to_have_text("Title by A")
    music = page.locator("#conflict-table tr[data-path='favorite.music']")
    expect(music).to_contain_text("you changed")
    expect(music).not_to_have_class(re.compile("merge-conflict"))

    page.get_by_role("button", name="Save merge").click()
    expect(page.locator("#revision")).to_have_text("revision 3")
    stored = server.entry("/orders/001")
    assert stored is not None
    assert (stored["title"], stored["score"], stored["favorite"]["music"]) == (
        "Title by B",
        7,
        "Jazz",
    )


def test_merge_without_a_kept_base_shows_the_plain_conflict(server: Server, open_page: Any) -> None:
    server.create("/plain", title="one", body="b")
    page = open_page("#open=/plain")
    page.get_by_label("Merge").check()
    field_control(page, "body").fill("mine")
    server.update("/plain", title="two")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#conflict-summary")).to_contain_text("no longer keeps revision 1")
    expect(page.locator("#conflict-table tr.differs")).to_have_count(2)
    page.get_by_role("button", name="Save merge").click()
    expect(page.locator("#revision")).to_have_text("revision 3")
    stored = server.entry("/plain")
    assert stored is not None and (stored["title"], stored["body"]) == ("two", "mine")


# -- history: view and restore a revision ------------------------------------------------------


def test_history_lists_views_and_restores_a_revision(server: Server, open_page: Any) -> None:
    seed_orders(server, 1)
    server.update("/orders/001", title="Second")
    server.update("/orders/001", score=5)
    page = open_page("#open=/orders/001")
    page.get_by_role("tab", name="History").click()
    rows = page.locator("#history-table tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("current")
    expect(rows.nth(0).locator("td.changed-fields")).to_have_text("score")
    expect(rows.nth(1).locator("td.changed-fields")).to_have_text("title")
    expect(rows.nth(2).locator("td.changed-fields")).to_have_text("created")
    expect(rows.nth(2).locator("td.by")).to_have_text("anonymous")

    page.get_by_role("button", name="View revision 1").click()
    expect(page.locator("#history-view-title")).to_have_text("Revision 1 of /orders/001")
    expect(page.locator("#history-view-diff")).to_have_text(
        "Differs from the current revision in title, score."
    )
    shown = json.loads(page.locator("#history-view-json").inner_text())
    assert (shown["id"], shown["title"]) == ("/orders/001,1", "Order 001")

    with page.expect_request(lambda sent: sent.method == "PUT") as sent_put:
        page.get_by_role("button", name="Restore… revision 1").click()
        page.get_by_role("dialog").get_by_role("button", name="Restore").click()
    expect(page.locator("#revision")).to_have_text("revision 4")
    expect(page.locator("#notice")).to_have_text(
        "Restored revision 1 of /orders/001 as revision 4."
    )
    assert sent_put.value.url.endswith("/d/orders/001?_revert=1")
    assert sent_put.value.headers["if-match"] == '"3"'
    expect(rows).to_have_count(4)
    expect(rows.nth(0).locator("td.changed-fields")).to_have_text("title, score")
    stored = server.entry("/orders/001")
    assert stored is not None and (stored["title"], stored["score"]) == ("Order 001", 1)


def test_history_restore_of_a_stale_entry_is_refused(server: Server, open_page: Any) -> None:
    server.create("/notes", title="first")
    page = open_page("#open=/notes")
    page.get_by_role("tab", name="History").click()
    expect(page.locator("#history-status")).to_contain_text("No earlier revision")
    server.update("/notes", title="2")
    page.locator("#reload").click()
    expect(page.locator("#history-table tbody tr")).to_have_count(2)
    page.get_by_role("tab", name="Form").click()
    field_control(page, "title").fill("mine")  # edited: the editor doesn't follow others' saves
    page.get_by_role("tab", name="History").click()
    server.update("/notes", title="3")
    page.get_by_role("button", name="Restore… revision 1").click()
    expect(page.locator("#confirm-restore")).to_contain_text("Your unsaved changes are dropped.")
    page.get_by_role("dialog").get_by_role("button", name="Restore").click()
    expect(page.locator("#error")).to_contain_text("Not restored: /notes was saved by someone else")
    stored = server.entry("/notes")
    assert stored is not None and stored["id"] == "/notes,3"


def test_history_of_a_key_without_a_history_prefix(server: Server, open_page: Any) -> None:
    server.create("/plain", title="one")
    server.update("/plain", title="two")
    page = open_page("#open=/plain")
    page.get_by_role("tab", name="History").click()
    expect(page.locator("#history-status")).to_contain_text("No earlier revision of /plain is kept")
    expect(page.locator("#history-table tbody tr")).to_have_count(1)
    expect(page.get_by_role("button", name="Restore… revision 1")).to_have_count(0)


# -- live: the change feed (static/changes.js, static/live.js; docs/api.md §18) -----------------

# The change feed's events are one JSON shape in either style, and the page's own reads are
# tested in both above: these run against the bare style only, to spare the suite's time.
bare_only = pytest.mark.parametrize("live_server", ["bare"], indirect=True)


@bare_only
def test_the_list_follows_other_writes_without_reloading(server: Server, open_page: Any) -> None:
    seed_orders(server, 3)
    page = open_page("#list=/orders")
    listings: list[str] = []
    page.on("request", lambda sent: "?f" in sent.url and listings.append(sent.url))
    rows = page.locator("#children tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#live-status")).to_have_text("● Live")

    server.create("/orders/000", title="Zero")  # sorts before the rows shown
    server.create("/orders/002/note", title="a grandchild: not a row")
    server.update("/orders/002", title="Order 002, changed")
    server.call("DELETE", "/d/orders/001?r=1")
    server.create("/orders/004", title="Four")
    expect(rows).to_have_count(4)
    expect(page.locator("#children tr[data-key='/orders/004']")).to_contain_text("Four")
    expect(rows.first).to_contain_text("Zero")
    changed = page.locator("#children tr[data-key='/orders/002']")
    expect(changed).to_contain_text("Order 002, changed")
    expect(changed.locator("td.num")).to_have_text("2")
    expect(page.locator("#children tr[data-key='/orders/001']")).to_have_count(0)
    assert [key for key in rows.evaluate_all("rows => rows.map(r => r.dataset.key)")] == [
        "/orders/000",
        "/orders/002",
        "/orders/003",
        "/orders/004",
    ]
    assert listings == []  # applied from the events: the list was never read again


@bare_only
def test_an_open_unchanged_entry_follows_other_writes(server: Server, open_page: Any) -> None:
    seed_orders(server, 1)
    page = open_page("#open=/orders/001")
    expect(page.locator("#live-status")).to_have_text("● Live")
    server.update("/orders/001", title="Changed elsewhere")
    expect(page.locator("#revision")).to_have_text("revision 2")
    expect(field_control(page, "title")).to_have_value("Changed elsewhere")
    expect(page.locator("#notice")).to_have_text(
        "/orders/001 was changed by anonymous: showing revision 2."
    )
    expect(page.locator("#stale")).to_be_hidden()


@bare_only
def test_an_edited_entry_warns_before_a_conflict_and_merges(server: Server, open_page: Any) -> None:
    seed_orders(server, 1)
    page = open_page("#open=/orders/001")
    expect(page.locator("#live-status")).to_have_text("● Live")
    field_control(page, "title").fill("My title")
    server.update("/orders/001", score=9)
    warning = page.locator("#stale")
    expect(warning).to_be_visible()
    expect(page.locator("#stale-text")).to_have_text(
        "/orders/001 was changed by anonymous (revision 2) since you opened it — reload or merge."
    )
    expect(field_control(page, "title")).to_have_value("My title")  # the edit is kept
    save_screenshot(page, "live-warning.png")

    page.get_by_role("button", name="Merge my edits").click()
    expect(page.locator("#revision")).to_have_text("revision 3")
    expect(warning).to_be_hidden()
    stored = server.entry("/orders/001")
    assert stored is not None and (stored["title"], stored["score"]) == ("My title", 9)


@bare_only
def test_an_edited_entry_warns_and_reloads(server: Server, open_page: Any) -> None:
    seed_orders(server, 1)
    page = open_page("#open=/orders/001")
    expect(page.locator("#live-status")).to_have_text("● Live")
    field_control(page, "title").fill("My title")
    server.update("/orders/001", title="Their title")
    expect(page.locator("#stale")).to_be_visible()
    page.get_by_role("button", name="Reload their revision").click()
    expect(page.locator("#revision")).to_have_text("revision 2")
    expect(field_control(page, "title")).to_have_value("Their title")
    expect(page.locator("#stale")).to_be_hidden()
    expect(page.locator("#dirty")).to_be_hidden()


@bare_only
def test_an_open_entry_deleted_elsewhere_is_flagged(server: Server, open_page: Any) -> None:
    server.create("/elsewhere", title="Kept apart")
    server.create("/inbox", title="Inbox")
    # Outside the list, the open entry gets a stream of its own, from `_since=now`.
    started: list[Any] = []
    page = open_page(
        "#list=/inbox&open=/elsewhere",
        before=lambda page: page.on(
            "response",
            lambda answer: "elsewhere?_changes&_since=now" in answer.url and started.append(answer),
        ),
    )
    expect(page.locator("#live-status")).to_have_text("● Live")
    for _ in range(100):
        if started:
            break
        page.wait_for_timeout(50)
    server.call("DELETE", "/d/elsewhere?r=1")  # an event on the entry's stream
    expect(page.locator("#stale-text")).to_have_text(
        "/elsewhere was deleted by anonymous (revision 1)."
    )
    expect(page.get_by_role("button", name="Merge my edits")).to_be_hidden()
    page.get_by_role("button", name="Reload their revision").click()
    expect(page.locator("#placeholder")).to_be_visible()
    expect(page.locator("#notice")).to_have_text("/elsewhere was deleted.")


@bare_only
def test_an_entry_deleted_before_its_stream_starts_is_flagged(
    server: Server, open_page: Any
) -> None:
    server.create("/elsewhere", title="Kept apart")
    server.create("/inbox", title="Inbox")

    def delete_first(route: Route) -> None:  # after the editor's read, before `now`
        assert server.call("DELETE", "/d/elsewhere?r=1").status == 200
        route.continue_()

    page = open_page(
        "#list=/inbox&open=/elsewhere",
        before=lambda page: page.route(lambda url: "_since=now" in url, delete_first),
    )
    # No event after `now` tells it: the entry read again does, without who deleted it.
    expect(page.locator("#stale-text")).to_have_text("/elsewhere was deleted (revision 1).")
    expect(page.get_by_role("button", name="Merge my edits")).to_be_hidden()


@bare_only
def test_a_listing_read_before_a_change_does_not_undo_it(server: Server, open_page: Any) -> None:
    seed_orders(server, 2)
    page = open_page("#list=/orders&open=/orders/001")
    expect(page.locator("#live-status")).to_have_text("● Live")
    held: list[Route] = []
    page.route(lambda url: "/d/orders?f&" in url, lambda route: held.append(route))
    field_control(page, "title").fill("Mine")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#revision")).to_have_text("revision 2")
    for _ in range(100):  # the save lists again
        if held:
            break
        page.wait_for_timeout(50)
    listing = held[0].fetch()  # read now, before the change below
    server.update("/orders/002", title="changed after the listing was read")
    row = page.locator("#children tr[data-key='/orders/002']")
    expect(row).to_contain_text("changed after the listing")
    row.evaluate("row => { row.dataset.before = 'listing'; }")
    held[0].fulfill(response=listing)
    expect(page.locator("#children tr[data-before]")).to_have_count(0)  # drawn again
    expect(row).to_contain_text("changed after the listing")
    expect(row.locator("td.num")).to_have_text("2")


@pytest.fixture(scope="module")
def short_stream_server(redis_server: EmbeddedRedis) -> Iterator[Server]:
    """The app with every change stream ending after a second, as each does after ten minutes."""
    with serving(redis_server, {"changes_stream_max": 1}) as server:
        yield server


def test_the_list_resumes_an_ended_stream_with_last_event_id(
    browser: Browser, short_stream_server: Server
) -> None:
    server = short_stream_server
    server.store.redis.flushdb()
    server.create("/box", title="Box")
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    streams: list[Any] = []
    page.on("requestfinished", lambda r: "_changes" in r.url and streams.append(r))
    page.goto(f"{server.url}/#list=/box")
    expect(page.locator("#list-empty")).to_be_visible()
    server.create("/box/a", title="Before the stream ended")
    expect(page.locator("#children tbody tr")).to_have_count(1)
    seq = server.call("GET", "/d/box?_changes").headers["x-feedstore-seq"]
    # The server ends the stream; EventSource opens it again from the last event it saw.
    resumed_from: list[str | None] = []
    for _ in range(150):  # a stream lasts a second, and retry: says 3 s: wait up to 30 s
        resumed_from = [r.all_headers().get("last-event-id") for r in streams]
        if any(resumed_from):
            break
        page.wait_for_timeout(200)
    # (Streams that ended before the event came opened again without one.)
    assert resumed_from[0] is None and {sent for sent in resumed_from if sent} == {seq}
    server.create("/box/b", title="After")
    expect(page.locator("#children tbody tr")).to_have_count(2)
    expect(page.locator("#children tr[data-key='/box/b']")).to_contain_text("After")
    context.close()


def test_the_list_lists_again_when_its_changes_are_no_longer_kept(
    browser: Browser, short_stream_server: Server
) -> None:
    server = short_stream_server
    server.store.redis.flushdb()
    server.create("/box", title="Box")
    server.create("/box/a", title="A")
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    listings: list[str] = []
    page.on("request", lambda sent: "?f" in sent.url and listings.append(sent.url))
    page.goto(f"{server.url}/#list=/box")
    expect(page.locator("#children tbody tr")).to_have_count(1)
    expect(page.locator("#live-status")).to_have_text("● Live")

    # Offline: the stream (which the server ends each second) can't come back.
    refused: list[str] = []
    page.route(
        "**/d/box?_changes*", lambda route: refused.append(route.request.url) or route.abort()
    )
    expect(page.locator("#live-status")).to_have_text("Reconnecting…")
    server.create("/box/b", title="B, written while the page was away")
    server.create("/box/c", title="C, too")
    # Keep only the newest event (/box/c's): the page's seq (/box/a's) is below the horizon.
    assert sum(count for _, count in server.store.streams.trim(10**9, 1)) > 0
    page.unroute("**/d/box?_changes*")

    # The stream is refused with 410: the page lists again, and follows from the new seq.
    expect(page.locator("#children tbody tr")).to_have_count(3)
    expect(page.locator("#live-status")).to_have_text("● Live")
    assert len(listings) == 2 and refused
    server.create("/box/d", title="D")
    expect(page.locator("#children tbody tr")).to_have_count(4)
    assert len(listings) == 2
    context.close()


@bare_only
def test_own_saves_raise_no_warning(server: Server, open_page: Any) -> None:
    seed_orders(server, 2)
    page = open_page("#list=/orders&open=/orders/001")
    expect(page.locator("#live-status")).to_have_text("● Live")
    for n in (2, 3, 4):
        field_control(page, "title").fill(f"Mine {n}")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator("#revision")).to_have_text(f"revision {n}")
    server.update("/orders/002", title="a later event, past those of the saves")
    expect(page.locator("#children tr[data-key='/orders/002']")).to_contain_text("a later event")
    expect(page.locator("#stale")).to_be_hidden()
    expect(page.locator("#children tr[data-key='/orders/001'] td.num")).to_have_text("4")


# -- screenshots -------------------------------------------------------------------------------


def test_screenshots_of_the_list_the_editor_the_conflict_and_the_history(
    server: Server, open_page: Any
) -> None:
    seed_orders(server, 12)
    page = open_page("#list=/orders")
    expect(page.locator("#children tbody tr")).to_have_count(12)
    shots = [save_screenshot(page, "list.png")]

    page.get_by_role("link", name="003").click()
    field_control(page, "title").fill("Order 003, gift wrapped")
    field_control(page, "parts", 1, "quantity").fill("6")
    expect(page.locator("#dirty")).to_be_visible()
    shots.append(save_screenshot(page, "editor.png"))

    server.update("/orders/003", title="Order 003 (phoned in)", score=99)
    page.get_by_label("Merge").check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#conflict-table tr.merge-conflict")).to_have_count(1)
    shots.append(save_screenshot(page, "conflict.png"))

    page.get_by_role("button", name="Save merge").click()
    expect(page.locator("#revision")).to_have_text("revision 3")
    page.get_by_role("tab", name="History").click()
    page.get_by_role("button", name="View revision 1").click()
    expect(page.locator("#history-view")).to_be_visible()
    shots.append(save_screenshot(page, "history.png"))

    for shot in shots:
        assert shot.stat().st_size > 10_000
        assert png_size(shot) == (LAPTOP["width"], LAPTOP["height"])


# -- login (static/login.js) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_auth_server(redis_server: EmbeddedRedis) -> Iterator[Server]:
    """The app with auth on, served like live_server (one JSON style: login is style-free);
    every key open to everyone (default_acl), so the tests seed without a token."""
    with serving(redis_server, {"auth": "on", "default_acl": OPEN_ACL}) as server:
        yield server


PASSWORD = "crème brûlée 42"  # not Latin-1 only: the form encodes UTF-8


@pytest.fixture
def auth_server(live_auth_server: Server) -> Server:
    live_auth_server.store.redis.flushdb()
    Credentials(live_auth_server.store.redis).add_user("hanako", PASSWORD, ["$admin"])
    return live_auth_server


def log_in(page: Page, password: str) -> None:
    page.get_by_label("Account").fill("hanako")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_logs_in_shows_who_and_logs_out_without_a_password_dialog(
    browser: Browser, auth_server: Server
) -> None:
    seed_orders(auth_server, 3)
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    challenges: list[str | None] = []
    page.on(
        "response",
        lambda r: r.status == 401 and challenges.append(r.headers.get("www-authenticate")),
    )
    page.on("dialog", lambda dialog: challenges.append(f"a {dialog.type} dialog"))
    page.goto(f"{auth_server.url}/#list=/orders")
    login = page.locator("#login")
    expect(login).to_be_visible()  # ?_whoami answered 401
    log_in(page, "wrong")
    expect(page.locator("#login-error")).to_have_text("Wrong account or password.")
    log_in(page, PASSWORD)
    expect(login).to_be_hidden()
    expect(page.locator("#whoami")).to_have_text("hanako (admin)")
    expect(page.locator("#children tbody tr")).to_have_count(3)
    assert page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly
    save_screenshot(page, "logged-in.png")

    auth_server.store.redis.delete(*auth_server.store.redis.keys("fs:sess:*"))  # it expired
    page.get_by_role("button", name="List children").click()
    expect(login).to_be_visible()
    expect(page.locator("#login-error")).to_have_text("Please log in.")
    log_in(page, PASSWORD)
    expect(login).to_be_hidden()
    expect(page.locator("#whoami")).to_have_text("hanako (admin)")

    page.get_by_role("button", name="Log out").click()
    expect(login).to_be_visible()
    expect(page.locator("#login-error")).to_have_text("Logged out.")
    expect(page.locator("#account")).to_be_hidden()
    assert not auth_server.store.redis.keys("fs:sess:*")
    save_screenshot(page, "login.png")
    context.close()
    assert challenges and set(challenges) == {'Bearer realm="feedstore"'}


def test_with_auth_the_change_feed_rides_the_session_cookie(
    browser: Browser, auth_server: Server
) -> None:
    seed_orders(auth_server, 1)
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.goto(f"{auth_server.url}/#list=/orders")
    expect(page.locator("#login")).to_be_visible()
    log_in(page, PASSWORD)
    expect(page.locator("#live-status")).to_have_text("● Live")
    # EventSource can send no Authorization: the stream is hanako's by the session cookie, so
    # it carries the event of an entry only admins may read, which anonymous streams skip.
    token, _ = Credentials(auth_server.store.redis).create_token("hanako")
    secret = {
        "link": [{"___href": "/orders/secret", "___rel": "self"}],
        "title": "For admins",
        "contributor": [{"uri": "urn:vte.cx:acl:/_group/$admin,CRUD"}],
    }
    headers = {**WRITE_HEADERS, **bearer(token)}
    assert request(auth_server.port, "POST", "/d/", {"feed": {"entry": [secret]}}, headers).status
    assert auth_server.call("GET", "/d/orders/secret?e").status == 401  # anonymous may not
    expect(page.locator("#children tr[data-key='/orders/secret']")).to_contain_text("For admins")

    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#live-status")).to_have_text("")  # logged out: no longer followed
    context.close()


def test_with_auth_off_the_page_shows_no_login(server: Server, open_page: Any) -> None:
    page = open_page()
    expect(page.locator("#account")).to_be_hidden()
    expect(page.locator("#login")).to_be_hidden()


def test_a_403_list_is_shown_in_place(server: Server, open_page: Any) -> None:
    page = open_page()
    # What authorization answers a caller who may not read /secret (its own tests pin the body).
    denied = {
        "feed": {"title": "Access denied."},
        "error": {"status": 403, "code": "access_denied", "key": "/secret", "entries": []},
    }
    page.route(
        "**/d/secret?f*",
        lambda route: route.fulfill(status=403, json=denied),
    )
    page.get_by_label("Key", exact=True).fill("/secret")
    page.get_by_role("button", name="List children").click()
    expect(page.locator("#list-empty")).to_have_text("Access denied. You may not list /secret.")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#login")).to_be_hidden()
