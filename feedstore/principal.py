"""Who a request acts as: the one value authentication hands to authorization.

Authentication (a token, a session cookie, or nothing) makes a Principal once per request;
every read and write is then authorized for it. With auth off, every request is ANONYMOUS, which
is what the server has always recorded as the author of writes.
"""

from __future__ import annotations

from dataclasses import dataclass

ADMIN_GROUP = "/_group/$admin"
ANONYMOUS_NAME = "anonymous"


@dataclass(frozen=True)
class Principal:
    """An authenticated user (a uid and its account), or anonymous (uid None).

    `groups` are group keys (`/_group/<name>`) as authentication read them; a write re-reads
    them inside its transaction. `service`: authenticated by a `--service` token, the only kind
    an ACL URN carrying `E` grants to (vte.cx's "server-side code only").
    """

    uid: str | None
    account: str
    groups: frozenset[str] = frozenset()
    service: bool = False

    @property
    def anonymous(self) -> bool:
        return self.uid is None

    @property
    def admin(self) -> bool:
        """Members of `/_group/$admin` have every right on every key."""
        return ADMIN_GROUP in self.groups

    @property
    def name(self) -> str:
        """What a write records in its author URIs: the uid, or `anonymous`."""
        return self.uid if self.uid is not None else ANONYMOUS_NAME


ANONYMOUS = Principal(None, ANONYMOUS_NAME)
