"""Who each request acts as, and the account options of /d/ (`?_login`, `?_logout`, `?_uid`,
`?_whoami`); API.md §9.

With auth on, a hook authenticates every /d/ request before its view, from the first
credential it carries: `Authorization: Bearer|Token fst_…`, `Authorization: Basic
<account:fst_…>` (a token in the password slot), the `SID` session cookie; none is anonymous.
A credential that authenticates no one is 401 even where anonymous may read, so a client
notices an expired token. Views read the outcome with `current_principal()`. With auth off
nothing is read from Redis and every request is ANONYMOUS.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Flask, Response, g, request

from feedstore import codec_json, codec_xml, negotiation, options
from feedstore.context import current_flask, current_request, request_globals
from feedstore.credentials import TOKEN_TAG, Clock, Credentials, DeferredToken, parse_token
from feedstore.errors import CrossOrigin, FeedstoreError, InvalidOption, Unauthorized
from feedstore.principal import ANONYMOUS, Principal
from feedstore.sessions import Sessions
from feedstore.settings import Settings

EXTENSION = "feedstore.authentication"
SESSION_COOKIE = "SID"
# How the session cookie is set and dropped: for the whole site, out of scripts' reach, never
# sent by another site's page (the third CSRF layer).
COOKIE: dict[str, Any] = {"path": "/", "httponly": True, "samesite": "Strict"}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Requests that are never authenticated: the load balancer's health check.
PUBLIC_ENDPOINTS = frozenset({"api.health"})


@dataclass(frozen=True)
class Authenticator:
    """The credentials and sessions of one app, and its auth settings."""

    credentials: Credentials
    sessions: Sessions
    on: bool
    cookie_secure: bool

    @classmethod
    def of(
        cls, client: redis.Redis | redis.RedisCluster, settings: Settings, clock: Clock = time.time
    ) -> Authenticator:
        credentials = Credentials(client, clock)
        sessions = Sessions(credentials, settings.session_idle, settings.session_max, clock)
        return cls(credentials, sessions, settings.auth_on, settings.cookie_secure)

    def authenticate(self, authorization: str | None, sid: str | None) -> tuple[Principal, bool]:
        """The principal of a request's credentials, and whether it came from the cookie;
        Unauthorized (or a subclass) for a credential that authenticates no one."""
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            scheme, value = scheme.lower(), value.strip()
            if scheme in ("bearer", "token"):
                return self.credentials.principal_of_token(value), False
            if scheme == "basic":
                account, password = basic_credentials(value)
                if password.startswith(TOKEN_TAG):
                    return self.credentials.principal_of_token(password, account), False
            # A password is checked only by ?_login, never per request (auth.md §1.4).
            raise Unauthorized()
        if sid is not None:
            return self.sessions.principal(sid), True
        return ANONYMOUS, False


def basic_credentials(value: str) -> tuple[str, str]:
    """(account, password) of a Basic credential; Unauthorized when it is not one."""
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise Unauthorized() from e
    account, colon, password = decoded.partition(":")
    if not colon:
        raise Unauthorized()
    return account, password


def unauthorized_or(principal: Principal, forbidden: FeedstoreError) -> FeedstoreError:
    """What a denied request answers: 401 for anonymous (log in and retry), `forbidden` (403)
    for an authenticated caller."""
    return Unauthorized() if principal.anonymous else forbidden


# -- the Flask side -------------------------------------------------------------------------


def init_app(app: Flask, client: redis.Redis | redis.RedisCluster, settings: Settings) -> None:
    """Keep the app's Authenticator and authenticate each request before its view."""
    app.extensions[EXTENSION] = Authenticator.of(client, settings)
    app.before_request(authenticate_request)


def get_authenticator() -> Authenticator:
    authenticator: Authenticator = current_flask().extensions[EXTENSION]
    return authenticator


def current_principal() -> Principal:
    """Who the current request acts as: ANONYMOUS with auth off or without a credential. A
    write's token left to its transaction (deferred_token) is authenticated now, in a round
    trip of its own, for a view that needs the principal before it writes."""
    found = request_globals()
    principal: Principal | None = found.get("principal")
    if principal is not None:
        return principal
    token: DeferredToken | None = found.pop("deferred_token", None)
    if token is None:
        return ANONYMOUS
    principal = found.principal = token.credentials.principal_of_token(token.token)
    return principal


def authenticate_request() -> Response | None:
    """Before any /d/ view: answer an account option, or authenticate (with auth on)."""
    current = current_request()
    args, authenticator = current.args, get_authenticator()
    if not args and not authenticator.on:
        return None  # no account option to answer, no one to authenticate (most requests)
    if current.blueprint != "api" or current.endpoint in PUBLIC_ENDPOINTS:
        return None
    if args and any(name in args for name in ACCOUNT_VIEWS):
        return answer_account_option()
    if authenticator.on:
        token = entry_read_token(authenticator)
        if token is not None:
            g.pending_token = token  # the view reads its record with the entry (api.py)
            return None
        deferred = write_token(authenticator)
        if deferred is not None:
            g.deferred_token = deferred  # the write's transaction authenticates it (api.py)
            return None
        principal, by_cookie = authenticator.authenticate(
            header("Authorization"), request.cookies.get(SESSION_COOKIE)
        )
        g.principal = principal
        if by_cookie and request.method in WRITE_METHODS:
            check_same_origin()
    return None


# An entry read (`GET /d/<key>?e`, JSON or Atom) with a Bearer or Token credential reads the
# token's record in the same round trip as the entry and its ACLs (a Redis pipeline): the view,
# api.read_entry, authenticates with it before it answers anything (settle). Any other request,
# and any read on a Redis Cluster (whose token record is in another slot), authenticates here.
ENTRY_READ_ARGS = frozenset({"e", "x", "j"})


def entry_read_token(authenticator: Authenticator) -> str | None:
    """The token of a request whose authentication the entry read does, else None."""
    args = request.args
    if request.method not in ("GET", "HEAD") or "e" not in args:
        return None
    if not ENTRY_READ_ARGS.issuperset(args) or isinstance(
        authenticator.credentials.redis, redis.RedisCluster
    ):
        return None
    scheme, _, value = (header("Authorization") or "").strip().partition(" ")
    return value.strip() if scheme.lower() in ("bearer", "token") else None


# A write (POST, PUT, PATCH, DELETE) with a Bearer or Token credential, on a single Redis, is
# authenticated by its transaction: the token's record is WATCHed and read in the same round
# trip as the entries and their ACLs (credentials.DeferredToken, transaction.py). A view that
# needs the principal before (current_principal) authenticates it then, and any error answered
# before the transaction decided gives way to the token's 401 (outranking).


def write_token(authenticator: Authenticator) -> DeferredToken | None:
    """The token of a write whose transaction authenticates it, else None."""
    if request.method not in WRITE_METHODS or isinstance(
        authenticator.credentials.redis, redis.RedisCluster
    ):
        return None
    scheme, _, value = (header("Authorization") or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() not in ("bearer", "token") or parse_token(value) is None:
        return None  # not a token: authenticated (401) at once
    return DeferredToken(authenticator.credentials, value)


def deferred_token() -> DeferredToken | None:
    """The token the current write's transaction must authenticate, if any."""
    token: DeferredToken | None = request_globals().get("deferred_token")
    return token


def settle_write(token: DeferredToken) -> None:
    """After a write that was given `token`: its principal is the request's, if the
    transaction got as far as authenticating it; its `last_used` is written if due."""
    if token.principal is not None:
        g.principal = token.principal
    if token.principal is not None or token.failed:
        g.pop("deferred_token", None)
    token.finish()


def outranking(error: FeedstoreError) -> FeedstoreError:
    """What a request answers for `error`: a bad credential's 401 outranks every other error,
    so a token whose authentication was left to the view (an entry read's, a write's) and not
    yet done is authenticated now; a Redis failure meanwhile leaves `error` as it is."""
    if isinstance(error, Unauthorized) or error.status >= 500:
        return error
    token: str | None = g.get("pending_token")
    try:
        if token is not None:
            settle(get_authenticator().credentials.principal_of_token(token))
        elif g.get("deferred_token") is not None:
            current_principal()
    except Unauthorized as e:
        return e
    except redis.RedisError:
        pass
    return error


def pending_token() -> str | None:
    """The token an entry read must authenticate with (see entry_read_token), if any."""
    token: str | None = g.get("pending_token")
    return token


def settle(principal: Principal) -> None:
    """The principal an entry read authenticated, from the record it read with the entry."""
    g.principal = principal
    g.pop("pending_token", None)


def check_same_origin() -> None:
    """CrossOrigin for a request a page of another origin sent (API.md §6): the browser says
    so in `Sec-Fetch-Site`, or names the page in `Origin`."""
    if header("Sec-Fetch-Site") == "cross-site":
        raise CrossOrigin()
    origin = header("Origin")
    if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
        raise CrossOrigin()


def answer_account_option() -> Response:
    """`?_login`, `?_logout`, `?_uid` or `?_whoami`: at /d/ only, one at a time, auth on."""
    names = [name for name in ACCOUNT_VIEWS if name in request.args]
    if len(names) > 1:
        raise InvalidOption(f"{names[0]} and {names[1]} can't be combined.")
    options.check(request.method, request.args.keys())
    if request.path not in ("/d", "/d/"):
        raise InvalidOption(f"{names[0]} applies to /d/ only.")
    authenticator = get_authenticator()
    if not authenticator.on:
        raise InvalidOption(f"Authentication is off: {names[0]}")
    if request.method in WRITE_METHODS:
        if header("X-Requested-With") is None:
            negotiation.check_csrf(request.headers.keys(), request.mimetype)
        check_same_origin()
    return ACCOUNT_VIEWS[names[0]](authenticator)


def login(authenticator: Authenticator) -> Response:
    """`?_login` with `Authorization: Basic <account:password>`: a session cookie."""
    authorization = (header("Authorization") or "").strip()
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized()
    sid, _ = authenticator.sessions.login(*basic_credentials(value.strip()))
    response = message("Logged in.")
    response.set_cookie(SESSION_COOKIE, sid, secure=authenticator.cookie_secure, **COOKIE)
    return response


def logout(authenticator: Authenticator) -> Response:
    """`?_logout`: end the cookie's session, if any, and drop the cookie."""
    sid = request.cookies.get(SESSION_COOKIE)
    if sid is not None:
        authenticator.sessions.logout(sid)
    response = message("Logged out.")
    response.delete_cookie(SESSION_COOKIE, secure=authenticator.cookie_secure, **COOKIE)
    return response


def authenticated(authenticator: Authenticator) -> Principal:
    principal, _ = authenticator.authenticate(
        header("Authorization"), request.cookies.get(SESSION_COOKIE)
    )
    if principal.anonymous:
        raise Unauthorized()
    return principal


def uid(authenticator: Authenticator) -> Response:
    """`?_uid`: the caller's uid as the title (vte.cx)."""
    return message(str(authenticated(authenticator).uid))


def whoami(authenticator: Authenticator) -> Response:
    """`?_whoami`: one entry, the uid as title, the account as subtitle, groups as categories."""
    principal = authenticated(authenticator)
    entry: dict[str, Any] = {"title": principal.uid, "subtitle": principal.account}
    if principal.groups:
        entry["category"] = [{"___term": group} for group in sorted(principal.groups)]
    codec: Any = answer_codec()
    return Response(codec.dumps([entry]), 200, content_type=codec.CONTENT_TYPE)


ACCOUNT_VIEWS: dict[str, Callable[[Authenticator], Response]] = {
    "_login": login,
    "_logout": logout,
    "_uid": uid,
    "_whoami": whoami,
}


def answer_codec() -> Any:
    chosen = negotiation.answer_format(request.args, header("Accept") or "")
    return codec_xml if chosen is negotiation.Format.XML else codec_json


def message(title: str) -> Response:
    codec = answer_codec()
    return Response(codec.dumps_message(title), 200, content_type=codec.CONTENT_TYPE)


def header(name: str) -> str | None:
    value: str | None = request.environ.get("HTTP_" + name.upper().replace("-", "_"))
    return value
