"""create_app: settings, the Redis client, the Store, the /d/ blueprint, errors, the page."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import FunctionType
from typing import Any

import redis
from flask import Flask, Response, current_app, g, request
from flask.ctx import RequestContext
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from feedstore import access_log, api, authentication, connection, migration, negotiation, page
from feedstore.change_hub import ChangeHub
from feedstore.context import current_request, request_globals
from feedstore.errors import (
    AccessDenied,
    FeedstoreError,
    MethodNotAllowed,
    PayloadTooLarge,
    Unauthorized,
)
from feedstore.metrics import CONTENT_TYPE, Metrics
from feedstore.principal import ANONYMOUS, Principal
from feedstore.replication import Replication
from feedstore.settings import Settings
from feedstore.store import Store

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# A body the server could not read whole (gateway.py): the request is answered with this error.
BODY_ERROR = "feedstore.body_error"
# How many views and hooks FeedstoreFlask keeps the sync form of: all of them, with room.
SYNC_FUNCTIONS_KEPT = 1024


def create_app(
    config: Mapping[str, Any] | None = None, redis_client: redis.Redis | None = None
) -> Flask:
    """Build a feedstore app; `redis_client` defaults to one for the `redis_url` setting."""
    settings = Settings.load(config)
    replication = Replication.of(settings.wait_replicas, settings.wait_timeout_ms)
    client = redis_client or connection.connect(
        settings.redis_url, settings.redis_timeout, replication=replication
    )
    check_key_scheme(client, settings)
    metrics = Metrics()
    app = FeedstoreFlask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body
    app.url_map.merge_slashes = False
    app.url_map.converters["entry_path"] = api.EntryPath
    app.extensions["feedstore"] = api.Feedstore(
        Store(
            client,
            keys=settings.keys,
            retries=settings.write_retries,
            max_subtree=settings.max_entries,
            default_acl=settings.default_grants if settings.auth_on else None,
            on_retry=metrics.write_retried,
            on_redis_error=metrics.redis_failed,
            history=settings.history_rules,
            changes=settings.changes_on,
        ),
        settings,
    )
    app.extensions["feedstore_metrics"] = metrics
    store = app.extensions["feedstore"].store
    app.extensions["feedstore_change_hub"] = ChangeHub(
        store.redis, store.cluster, settings.changes_waiters_max, metrics.waiters
    )
    app.register_blueprint(api.bp)
    app.register_blueprint(page.bp)
    if settings.metrics == "on":
        app.add_url_rule("/metrics", "metrics", serve_metrics, methods=["GET"])
    app.register_error_handler(FeedstoreError, api.error_response)
    app.register_error_handler(HTTPException, render_http_exception)
    app.register_error_handler(Exception, render_unexpected)
    app.before_request(refuse_an_unread_body)
    authentication.init_app(app, client, settings)
    app.after_request(drop_type_of_empty_answers)
    app.after_request(note_for_the_access_log)
    app.wsgi_app = access_log.AccessLog(  # type: ignore[method-assign]
        MethodOverride(app.wsgi_app), observers=[metrics.observe]
    )
    return app


class FeedstoreFlask(Flask):
    """Flask, deciding once per function whether a view or hook is a coroutine function.

    Flask asks inspect.iscoroutinefunction of every before/after-request hook and of the view
    on each request (about 60 interpreted steps each, a tenth of a small write's own work);
    the answer for a function never changes, so it is kept. Only plain functions are kept (the
    views and hooks, a fixed set): a bound method or partial is made anew each time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_functions: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if type(func) is not FunctionType:
            return super().ensure_sync(func)
        sync = self._sync_functions.get(func)
        if sync is None:
            sync = super().ensure_sync(func)
            if len(self._sync_functions) < SYNC_FUNCTIONS_KEPT:
                self._sync_functions[func] = sync
        return sync

    def request_context(self, environ: dict[str, Any]) -> RequestContext:
        """Flask's, with the request's body limit set from MAX_CONTENT_LENGTH at once: Flask's
        Request reads that setting from current_app at each use otherwise, twice per body read,
        and each read through that proxy costs ~10k instructions (context.py)."""
        context = super().request_context(environ)
        context.request.max_content_length = self.config["MAX_CONTENT_LENGTH"]
        return context


def check_key_scheme(client: Any, settings: Settings) -> None:
    """Refuse (NeedsMigration) to serve keys of another scheme than the settings' (the CLI says
    so first, kindly); a Redis unreachable now is the requests' 503 to report, not this."""
    try:
        migration.check(client, settings.keys)
    except (redis.ConnectionError, redis.TimeoutError):
        log.warning("Redis is unreachable: the key scheme is not checked")


def refuse_an_unread_body() -> None:
    """Before any view: a body cut short, too large or too slow is never executed."""
    error: FeedstoreError | None = current_request().environ.get(BODY_ERROR)
    if error is not None:
        raise error


def drop_type_of_empty_answers(response: Response) -> Response:
    """A 204 or 304 has no body, so it names no type (Flask would say text/html)."""
    if response.status_code in (204, 304):
        response.headers.remove("Content-Type")
    return response


def note_for_the_access_log(response: Response) -> Response:
    """What only the app knows of a request, for its access-log line and metrics: the route
    it matched and who made it (the error code is noted where errors are rendered)."""
    current = current_request()
    environ, rule = current.environ, current.url_rule
    access_log.note(environ, access_log.ROUTE, rule.rule if rule is not None else None)
    principal: Principal = request_globals().get("principal", ANONYMOUS)
    access_log.note(environ, access_log.PRINCIPAL, principal.account)
    return response


def serve_metrics() -> Response:
    """GET /metrics: every counter, in the Prometheus text format (metrics.py); with auth on,
    for administrators only (401 without a credential, 403 for anyone else)."""
    settings: Settings = current_app.extensions["feedstore"].settings
    if settings.auth_on:
        # Outside /d/, so authenticated here, as every /d/ request is before its view.
        principal, _ = authentication.get_authenticator().authenticate(
            request.headers.get("Authorization"),
            request.cookies.get(authentication.SESSION_COOKIE),
        )
        g.principal = principal
        if principal.anonymous:
            raise Unauthorized()
        if not principal.admin:
            raise AccessDenied(None, "R")
    metrics: Metrics = current_app.extensions["feedstore_metrics"]
    return Response(metrics.render(), 200, content_type=CONTENT_TYPE)


def render_http_exception(error: HTTPException) -> Response:
    """werkzeug's own errors (unknown URL, wrong method, body too large) in feedstore's shape."""
    if isinstance(error, RequestEntityTooLarge):
        return api.error_response(PayloadTooLarge())
    if error.code == 405:
        allowed = getattr(error, "valid_methods", None) or []
        return api.error_response(
            MethodNotAllowed("Method not allowed.", headers={"Allow": ", ".join(allowed)})
        )
    wrapped = FeedstoreError(error.description or error.name)
    wrapped.status = error.code or 500  # type: ignore[misc]
    wrapped.code = error.name.lower().replace(" ", "_")  # type: ignore[misc]
    return api.error_response(wrapped)


def render_unexpected(error: Exception) -> Response:
    """A bug: log it with its traceback, answer 500 without one."""
    log.exception("unexpected error", exc_info=error)
    return api.error_response(FeedstoreError("Internal server error."))


class MethodOverride:
    """Treat POST with `X-HTTP-Method-Override: PATCH|PUT|DELETE` as that method, before routing.

    Overrides it can't apply are left to the API, which refuses them (negotiation.method_override).
    """

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST":
            value = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE") or environ.get(
                "HTTP_X_METHOD_OVERRIDE"
            )
            if value and value.strip().upper() in negotiation.OVERRIDABLE:
                environ[negotiation.SENT_METHOD] = "POST"
                environ["REQUEST_METHOD"] = value.strip().upper()
        return self.app(environ, start_response)
