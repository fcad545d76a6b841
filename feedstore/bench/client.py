"""A tiny HTTP client for 127.0.0.1: seeding data and checking a request before wrk repeats it."""

from __future__ import annotations

import http.client
import re
from collections.abc import Mapping
from dataclasses import dataclass

HOST = "127.0.0.1"
_DIGITS = re.compile(r"\d+")


class RequestFailed(Exception):
    """A bench request got an answer the bench did not expect."""


@dataclass(frozen=True)
class Reply:
    """An HTTP answer read whole; header names lower-cased."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def revision(self) -> int | None:
        """The revision in the ETag header, if any."""
        match = _DIGITS.search(self.headers.get("etag", ""))
        return int(match.group()) if match else None


def send(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """Send one request on a fresh connection to 127.0.0.1:port."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, body=body or None, headers=dict(headers or {}))
        answer = connection.getresponse()
        content = answer.read()
        return Reply(answer.status, {k.lower(): v for k, v in answer.getheaders()}, content)
    finally:
        connection.close()


def expect(reply: Reply, *statuses: int, doing: str) -> Reply:
    """Return `reply` if its status is one of `statuses`, else raise RequestFailed."""
    if reply.status not in statuses:
        raise RequestFailed(f"{doing}: HTTP {reply.status} {reply.body[:300]!r}")
    return reply
