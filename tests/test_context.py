"""context.py: the request, app and globals themselves, the objects Flask's proxies stand for."""

from __future__ import annotations

import flask
import pytest

from feedstore.context import current_flask, current_request, request_globals


def test_each_is_the_object_its_proxy_stands_for() -> None:
    app = flask.Flask(__name__)
    with app.test_request_context("/d/a?e", headers={"If-Match": '"3"'}):
        flask.g.principal = "alice"
        found = current_request()
        assert type(found) is flask.Request and found is flask.request._get_current_object()
        assert found.args.get("e") == "" and found.environ["HTTP_IF_MATCH"] == '"3"'
        assert current_flask() is app
        assert request_globals().get("principal") == "alice"


def test_outside_a_request_they_say_so() -> None:
    with pytest.raises(RuntimeError, match="request context"):
        current_request()
    with pytest.raises(RuntimeError, match="application context"):
        current_flask()
