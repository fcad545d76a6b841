"""ACLs in vte.cx's form, and the rights they give: pure functions, no Redis (API.md §16).

An entry's ACL is the `urn:vte.cx:acl:<principal>,<rights>` URIs of its `contributor` list
(`urn:feedstore:acl:` is a synonym; URIs are stored as sent). Rights are letters: `C R U D`
(create, read, update, delete), `A` (change an entry's ACL), and three modifiers: `E` (the URN
grants only to service principals), `.` (only on the entry itself), `/` (only on its
descendants). The nearest key on a path that has an ACL decides (`rights`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from feedstore.errors import AccessDenied, FeedstoreError, InvalidAcl, Unauthorized
from feedstore.principal import ADMIN_GROUP, Principal

PREFIXES = ("urn:vte.cx:acl:", "urn:feedstore:acl:")
RIGHTS = "CRUDA"  # the rights, in the order `?_access` writes them
LETTERS = frozenset(RIGHTS + "E./")
ALL = frozenset(RIGHTS)

Grant = tuple[str, str]  # (principal, rights letters)
Acl = tuple[Grant, ...]


@dataclass(frozen=True)
class Decision:
    """What a principal may do on a key, and why: the key whose ACL decided and the URN that
    granted (`source` is "admin" or "default_acl" when no entry's ACL did)."""

    rights: frozenset[str]
    key: str | None = None
    source: str = ""

    def allows(self, right: str) -> bool:
        return right in self.rights

    @property
    def letters(self) -> str:
        return "".join(letter for letter in RIGHTS if letter in self.rights)


def parse_uri(uri: str, key: str | None = None, field: str | None = None) -> Grant | None:
    """The grant an ACL URI names, None when `uri` is no ACL URI; 400 `invalid_acl` when it is
    one that is malformed (no principal, no rights, or a letter outside `CRUDAE./`)."""
    for prefix in PREFIXES:
        if uri.startswith(prefix):
            break
    else:
        return None
    principal, comma, rights = uri[len(prefix) :].rpartition(",")
    if not comma or not principal or not rights or not set(rights) <= LETTERS:
        raise InvalidAcl(uri, key=key, field=field)
    return principal, rights


def of_document(document: Mapping[str, Any] | None, key: str | None = None) -> Acl | None:
    """The ACL of an entry's fields (its `contributor` ACL URIs), None when it has none."""
    if not document:
        return None
    contributors = document.get("contributor")
    if not contributors:
        return None
    grants: list[Grant] = []
    for position, contributor in enumerate(
        contributors if isinstance(contributors, list) else [contributors]
    ):
        uri = contributor.get("uri") if isinstance(contributor, dict) else None
        if isinstance(uri, str):
            grant = parse_uri(uri, key, f"contributor[{position}].uri")
            if grant is not None:
                grants.append(grant)
    return tuple(grants) or None


def parse_setting(text: str) -> Acl:
    """The `default_acl` setting: ACL URIs separated by spaces; ValueError when it isn't."""
    grants = []
    for uri in text.split():
        try:
            grant = parse_uri(uri)
        except InvalidAcl as e:
            raise ValueError(e.message) from e
        if grant is None:
            raise ValueError(f"not an ACL URI: {uri}")
        grants.append(grant)
    if not grants:
        raise ValueError("no ACL URI")
    return tuple(grants)


def dumps(acl: Acl) -> bytes:
    """The mirror of an ACL in Redis (`fs:{P}:acl:<key>`): JSON [[principal, rights], ...]."""
    return orjson.dumps([list(grant) for grant in acl])


def loads(raw: bytes | None) -> Acl | None:
    """An ACL mirror read back (written by `dumps`, so trusted)."""
    if raw is None:
        return None
    return tuple((str(principal), str(rights)) for principal, rights in orjson.loads(raw))


def groups_of(raw: bytes | None) -> frozenset[str]:
    """A uid's groups as `fs:ug:<uid>` holds them: a JSON array of `/_group/<name>` keys."""
    if raw is None:
        return frozenset()
    found = orjson.loads(raw)
    return frozenset(str(group) for group in found) if isinstance(found, list) else frozenset()


def urn(grant: Grant) -> str:
    return f"{PREFIXES[0]}{grant[0]},{grant[1]}"


def matches(principal: str, uid: str | None, account: str | None, groups: Iterable[str]) -> bool:
    """Whether an ACL principal (`*`, `+`, `/_group/<g>`, a uid, an account) names a caller;
    `uid` None is anonymous, matched only by `*`."""
    if principal == "*":
        return True
    if uid is None:
        return False
    if principal == "+":
        return True
    if principal.startswith("/_group/"):
        return principal in groups
    return principal in (uid, account)


def rights(
    chain: Sequence[tuple[str, Acl | None]],
    uid: str | None,
    account: str | None,
    groups: Iterable[str],
    service: bool,
    default: Acl,
) -> Decision:
    """The rights of a caller on the first key of `chain` (the key, then its ancestors up to
    the root, each with its own ACL or None), per API.md §16.2:

    1. a member of `/_group/$admin` has every right;
    2. the first key of the chain with an ACL decides: its URNs that name the caller grant
       their letters (`.` URNs only on the key itself, `/` URNs only on its ancestors); when
       none does, the answer is no right, whatever the ancestors say;
    3. with no ACL on the chain, `default` decides (its `.` and `/` are ignored);
    4. a URN with `E` grants only to a service caller.
    """
    groups = frozenset(groups)
    if ADMIN_GROUP in groups:
        return Decision(ALL, None, "admin")
    for depth, (key, acl) in enumerate(chain):
        if acl is None:
            continue
        granted: set[str] = set()
        sources = []
        for grant in acl:
            principal, letters = grant
            if ("." in letters and depth > 0) or ("/" in letters and depth == 0):
                continue
            if "E" in letters and not service:
                continue
            if matches(principal, uid, account, groups):
                granted.update(letters)
                sources.append(urn(grant))
        return Decision(frozenset(granted) & ALL, key, " ".join(sources))
    granted = set()
    for principal, letters in default:
        if ("E" not in letters or service) and matches(principal, uid, account, groups):
            granted.update(letters)
    return Decision(frozenset(granted) & ALL, None, "default_acl")


def path(key: str) -> list[str]:
    """`key` and its ancestors, nearest first (`/a/b` -> /a/b, /a); the root has no entry, so
    no ACL, and isn't in it."""
    keys = []
    while key != "/" and key:
        keys.append(key)
        key = key[: key.rfind("/")]
    return keys


@dataclass(frozen=True)
class Caller:
    """A principal as authorization sees it: its groups (re-read by a write in its
    transaction) and the `default_acl` in force."""

    principal: Principal
    default: Acl
    groups: frozenset[str] = frozenset()

    @classmethod
    def of(cls, principal: Principal, default: Acl) -> Caller:
        return cls(principal, default, principal.groups)

    def decide(self, key: str, acls: Mapping[str, Acl | None], layer: bool = False) -> Decision:
        """The caller's rights on `key`, from the ACLs of its path (`acls`, by key); `layer`:
        on the children of `key` that have no ACL of their own (feeds: `.` URNs of `key`
        don't count, `/` URNs do)."""
        chain = [(k, acls.get(k)) for k in path(key)]
        if layer:
            chain.insert(0, ("", None))
        principal = self.principal
        return rights(
            chain, principal.uid, principal.account, self.groups, principal.service, self.default
        )

    def denial(self, key: str | None, right: str) -> FeedstoreError:
        """401 for an anonymous caller (it may have the right once authenticated), else 403."""
        if self.principal.anonymous:
            return Unauthorized()
        return AccessDenied(key, right)
