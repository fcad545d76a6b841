"""The scenarios of issue 13's speed target: GET and PUT with auth on, against the same with it off.

The caller is an ordinary user with a Bearer token, not an administrator (who would skip every
ACL), writing and reading entries whose ACL is two levels up: `/benchauth` grants the user CRUD,
`/benchauth/x` has none, the entries are `/benchauth/x/<name>`. So each request authenticates
(one Redis round trip before its own) and walks the key's path to the ACL that decides.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping

import redis

from feedstore.bench import client
from feedstore.bench.load import REVISION, ConnectionPlan, Load, RequestTemplate
from feedstore.credentials import CredentialError, Credentials

USER, ADMIN = "benchuser", "benchadmin"
TOP, FOLDER = "/benchauth", "/benchauth/x"
JSON = {"X-Requested-With": "XMLHttpRequest", "Content-Type": "application/json"}


def tokens(redis_url: str) -> tuple[str, str]:
    """A token of the bench's user and of its administrator, each user made once."""
    credentials = Credentials(redis.Redis.from_url(redis_url))
    for account, groups in ((USER, ()), (ADMIN, ("$admin",))):
        with contextlib.suppress(CredentialError):  # made by an earlier run
            credentials.add_user(account, None, groups)
    return credentials.create_token(USER)[0], credentials.create_token(ADMIN)[0]


def prepare(port: int, redis_url: str) -> dict[str, str]:
    """The user's headers, once the folders exist with the ACL two levels up."""
    user, admin = tokens(redis_url)
    as_admin = {**JSON, "Authorization": f"Bearer {admin}"}
    acl = [{"uri": f"urn:vte.cx:acl:{USER},CRUD"}]
    for key, fields in ((TOP, {"contributor": acl}), (FOLDER, {})):
        body = json.dumps({"link": [{"___href": key, "___rel": "self"}], **fields}).encode()
        client.expect(client.send(port, "PUT", f"/d{key}", body, as_admin), 200, doing=key)
    return {**JSON, "Authorization": f"Bearer {user}"}


def read_load(
    port: int, redis_url: str, entry: Mapping[str, object], readers: int, connections: int
) -> Load:
    """GET one entry of the folder, as the user."""
    headers = prepare(port, redis_url)
    key = f"{FOLDER}/read"
    body = json.dumps({"feed": {"entry": [entry]}}).encode()
    client.expect(client.send(port, "PUT", "/d/", body, headers), 200, doing=key)
    auth = {"Authorization": headers["Authorization"]}
    plan = ConnectionPlan(RequestTemplate("GET", f"/d{key}?e", auth))
    return Load((plan,), readers, connections)


def write_load(
    port: int,
    redis_url: str,
    entries: Mapping[str, Mapping[str, object]],
    revisioned: Mapping[str, Mapping[str, object]],
) -> Load:
    """One key per writer, as the user: seeded by a forced PUT, then PUT with its id."""
    headers = prepare(port, redis_url)
    auth = {"Authorization": headers["Authorization"]}
    plans = []
    for key, forced in entries.items():
        body = json.dumps({"feed": {"entry": [forced]}}).encode()
        seeded = client.expect(client.send(port, "PUT", "/d/", body, headers), 200, doing=key)
        if seeded.revision is None:
            raise client.RequestFailed(f"{key}: no ETag in the answer")
        conditional = json.dumps({"feed": {"entry": [revisioned[key]]}}).encode()
        assert REVISION.encode() in conditional
        plans.append(
            ConnectionPlan(
                RequestTemplate("PUT", "/d/", headers, conditional),
                seeded.revision,
                RequestTemplate("GET", f"/d{key}?e", auth),
            )
        )
    return Load(tuple(plans), len(plans), len(plans))
