"""What one wrk run sends: request templates with a revision slot, one plan per wrk thread."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Stands for the revision in a template's path, headers or body; wrk fills in the one it last read.
REVISION = "@@REVISION@@"


@dataclass(frozen=True)
class Request:
    """One concrete HTTP request: a template rendered for one revision."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class RequestTemplate:
    """One HTTP request, with REVISION wherever the current revision goes."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def has_revision(self) -> bool:
        return (
            REVISION in self.path
            or REVISION.encode() in self.body
            or any(REVISION in value for value in self.headers.values())
        )

    def path_pieces(self) -> list[str]:
        """The path cut at each REVISION, to be joined with the revision (Lua's table.concat)."""
        return self.path.split(REVISION)

    def body_pieces(self) -> list[bytes]:
        return self.body.split(REVISION.encode())

    def header_pieces(self) -> dict[str, list[str]]:
        """Each header value cut at each REVISION (one piece when it has none)."""
        return {name: value.split(REVISION) for name, value in self.headers.items()}

    def render(self, revision: int | None) -> Request:
        """The request sent for `revision`, exactly as the Lua script builds it."""
        text = "" if revision is None else str(revision)
        return Request(
            self.method,
            text.join(self.path_pieces()),
            {name: text.join(pieces) for name, pieces in self.header_pieces().items()},
            text.encode().join(self.body_pieces()),
        )


@dataclass(frozen=True)
class ConnectionPlan:
    """What one wrk thread sends: a request, the revision to start from, how to re-read it.

    After a 2xx the next revision is the response's ETag, or the last one + 1 when there is none
    (a multi-entry PUT). After any other status the thread sends `resync` once and takes the
    revision from its ETag, so one lost race costs one request instead of the rest of the run.
    """

    request: RequestTemplate
    revision: int | None = None
    resync: RequestTemplate | None = None


@dataclass(frozen=True)
class Load:
    """A whole wrk run: `plans[i % len(plans)]` is what thread i sends on its connections.

    `long_requests`: a request takes a good part of a round, so wrk's count, which drops the one
    each connection has in flight when it stops, would undercount by up to a request per
    connection; the rate is then `connections / mean latency` (Little's law: each connection
    sends its next request as soon as it has the answer), which has no such edge.
    """

    plans: tuple[ConnectionPlan, ...]
    threads: int
    connections: int
    entries_per_request: int = 1
    long_requests: bool = False
