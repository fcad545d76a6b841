"""create_app's own pieces: the Flask subclass that keeps each hook's sync form."""

from __future__ import annotations

import functools

import pytest
from flask import Flask, request

from feedstore.app import FeedstoreFlask


def test_a_plain_function_is_checked_once_and_kept() -> None:
    app = FeedstoreFlask(__name__)

    def hook() -> None:
        return None

    assert app.ensure_sync(hook) is hook
    assert app.ensure_sync(hook) is hook
    assert app._sync_functions == {hook: hook}


def test_a_partial_or_bound_method_is_checked_each_time_and_not_kept() -> None:
    app = FeedstoreFlask(__name__)
    partial = functools.partial(print, "x")
    assert app.ensure_sync(partial) is partial
    assert app.ensure_sync(app.make_response) == app.make_response
    assert app._sync_functions == {}


def test_a_coroutine_function_is_still_flasks_to_wrap() -> None:
    app = FeedstoreFlask(__name__)

    async def view() -> str:
        return "x"

    # Flask without its `async` extra refuses it, as it refuses it on a plain Flask app.
    with pytest.raises(RuntimeError, match="async"):
        Flask(__name__).ensure_sync(view)
    with pytest.raises(RuntimeError, match="async"):
        app.ensure_sync(view)
    assert app._sync_functions == {}


def test_hooks_run_on_every_request() -> None:
    app = FeedstoreFlask(__name__)
    calls: list[str] = []
    app.before_request(lambda: calls.append("before"))
    app.add_url_rule("/", "index", lambda: "ok")
    client = app.test_client()
    assert client.get("/").get_data() == b"ok"
    assert client.get("/").get_data() == b"ok"
    assert calls == ["before", "before"]


def test_an_unhashable_callable_is_left_to_flask() -> None:
    class Handler:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> str:
            return "x"

    handler = Handler()
    assert FeedstoreFlask(__name__).ensure_sync(handler) is handler


def test_the_body_limit_is_the_settings_at_each_request() -> None:
    app = FeedstoreFlask(__name__)
    app.add_url_rule("/", "echo", lambda: request.get_data(), methods=["POST"])
    client = app.test_client()
    app.config["MAX_CONTENT_LENGTH"] = 10
    assert client.post("/", data=b"x" * 10).get_data() == b"x" * 10
    assert client.post("/", data=b"x" * 11).status_code == 413
    app.config["MAX_CONTENT_LENGTH"] = None
    assert client.post("/", data=b"x" * 11).status_code == 200
