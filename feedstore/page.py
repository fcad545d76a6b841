"""The browser page: index.html at `/`, and jQuery from the xstatic-jquery wheel.

The page's own files (app.js, style.css) are the app's static folder; jQuery is served from the
installed package rather than copied into the repository, so the page needs no network but this
server.
"""

from __future__ import annotations

import xstatic.pkg.jquery
from flask import Blueprint, Response, current_app, send_from_directory

bp = Blueprint("page", __name__)
JQUERY_DIR = xstatic.pkg.jquery.BASE_DIR
JQUERY_VERSION: str = xstatic.pkg.jquery.VERSION


@bp.get("/")
def index() -> Response:
    """The entry browser and editor."""
    static_folder = current_app.static_folder
    assert static_folder is not None, "create_app sets the static folder"
    response = send_from_directory(static_folder, "index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/static/vendor/<path:filename>")
def vendor(filename: str) -> Response:
    """jQuery's files (jquery.min.js and its source map) from the xstatic-jquery package."""
    return send_from_directory(JQUERY_DIR, filename)
