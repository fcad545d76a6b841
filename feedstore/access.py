"""Authorization of reads, with auth on (API.md §16.4): `?e`, feeds, counts, `?_access`.

Writes are authorized inside their transaction (transaction.py); a read is authorized by the
ACL mirrors of its key's path, read in one MGET before it, with the groups authentication
found for the request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from feedstore import acl, codec_json
from feedstore.principal import Principal
from feedstore.store import Store


def entry_key(raw: bytes, key: str) -> str:
    """The key of the entry a stored document read at `key` is: another one when `key` is an
    alias of it (its id names its own key)."""
    if raw.startswith(b'{"id":"' + key.encode() + b","):
        return key  # every document starts with its id: no decoding for the usual case
    entry_id = str(codec_json.loads_stored(raw).get("id", ""))
    return entry_id.rpartition(",")[0] or key


class Access:
    """The ACLs of one store, as one principal's reads see them."""

    def __init__(self, store: Store, default: acl.Acl, principal: Principal) -> None:
        self.store = store
        self.caller = acl.Caller.of(principal, default)

    def decide(self, key: str, layer: bool = False) -> acl.Decision:
        """The caller's rights on `key` (`layer`: on its children without an ACL)."""
        if self.caller.principal.admin:
            return self.caller.decide(key, {}, layer)  # every right: nothing to read
        return self.caller.decide(key, self._acls_on_path(key), layer)

    def read_entry(self, key: str) -> tuple[int, bytes] | None:
        """`Store.get(key)` for a caller with R on it (read with the ACLs in one MGET); through
        an alias, R on the entry it names too."""
        store = self.store
        if self.caller.principal.admin:
            return store.get(key)
        on_path = acl.path(key)
        found, mirrors = store.get_guarded(key, on_path)
        return self.checked(key, found, mirrors)

    def checked(
        self, key: str, found: tuple[int, bytes] | None, mirrors: Sequence[acl.Acl | None]
    ) -> tuple[int, bytes] | None:
        """What read_entry read, answered only to a caller with R on it (`mirrors`: the ACL
        mirrors of `acl.path(key)`, read with it)."""
        if self.caller.principal.admin:
            return found
        on_path = acl.path(key)
        if not self.caller.decide(key, dict(zip(on_path, mirrors, strict=True))).allows("R"):
            raise self.caller.denial(key, "R")
        if found is not None and (target := entry_key(found[1], key)) != key:
            self.require(target, "R")
        return found

    def readable(self, keys: set[str]) -> set[str]:
        """Which of `keys` the caller may read (R), their paths' ACLs read in one MGET; a
        deleted key's own ACL is gone with it, so its path above decides (the change feed)."""
        if self.caller.principal.admin or not keys:
            return set(keys)
        paths = {key: acl.path(key) for key in keys}
        names = sorted({k for path in paths.values() for k in path})
        acls = dict(zip(names, self.store.acls(names), strict=True))
        return {
            key
            for key, path in paths.items()
            if self.caller.decide(key, {k: acls[k] for k in path}).allows("R")
        }

    def require(self, key: str, right: str, layer: bool = False) -> None:
        """401 or 403 unless the caller has `right` on `key` (on its children: `layer`)."""
        if not self.decide(key, layer).allows(right):
            raise self.caller.denial(key, right)

    def children(self, parent: str) -> ChildFilter | None:
        """After `require(parent, "R", layer=True)`: which children of `parent` the caller
        can't read; None when it can read them all (an admin)."""
        if self.caller.principal.admin:
            return None
        return ChildFilter(self, parent, self._acls_on_path(parent))

    def _acls_on_path(self, key: str) -> dict[str, acl.Acl | None]:
        on_path = acl.path(key)
        return dict(zip(on_path, self.store.acls(on_path), strict=True))


class ChildFilter:
    """The children of one parent hidden from one caller: those whose own ACL denies R."""

    def __init__(self, access: Access, parent: str, acls: dict[str, acl.Acl | None]) -> None:
        self.access = access
        self.parent = parent
        self.acls = acls

    def hidden(self, keys: Sequence[str], aliases: Mapping[str, str] | None = None) -> set[str]:
        """Which of `keys` (children of the parent) the caller can't read: one MGET. An alias
        among them (`aliases`: alias -> the key of its entry) is readable where its entry is."""
        found: set[str] = set()
        caller = self.access.caller
        for key, own in zip(keys, self.access.store.acls(keys), strict=True):
            if own is not None and not caller.decide(key, {**self.acls, key: own}).allows("R"):
                found.add(key)
        for name, target in (aliases or {}).items():
            if not self.access.decide(target).allows("R"):
                found.add(name)
        return found

    def hidden_count(self) -> int:
        """How many children are hidden: those of the parent's set of children with an ACL
        (and aliases) that deny R (O(children with an ACL))."""
        store = self.access.store
        members = store.acl_children(self.parent)
        return len(self.hidden(members, store.alias_targets(members)))
