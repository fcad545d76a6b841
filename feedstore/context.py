"""The request, the app and the request's globals themselves, not werkzeug's proxies of them.

Each attribute read through a proxy (`flask.request.args`, `current_app.extensions`,
`g.get`) finds the object again, and on Python 3.11 it first fails an ordinary lookup on the
proxy, formatting an AttributeError message, before werkzeug's __getattr__ answers: ~10k
instructions a read. A small write read them ~25 times, a sixth of its own work; the code on
every request's path reads the object once through these and uses it.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, current_app, g, request

# A request's whole body as the gateway read it before the app ran (gateway.py), in the environ:
# the app takes it as it is, without a stream over it. Absent under another WSGI server (the
# test client's), where the body is read from wsgi.input.
BODY = "feedstore.body"


def current_request() -> Request:
    """The request being handled."""
    found: Request = request._get_current_object()  # type: ignore[attr-defined]
    return found


def current_flask() -> Flask:
    """The app handling the request."""
    found: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return found


def request_globals() -> Any:
    """The request's `g` (flask.ctx._AppCtxGlobals)."""
    return g._get_current_object()
