"""acl.py: parsing ACL URNs, and the rights function as one table (API.md §16)."""

from __future__ import annotations

import pytest

from feedstore import acl
from feedstore.errors import AccessDenied, InvalidAcl, Unauthorized
from feedstore.principal import ANONYMOUS, Principal

DEFAULT = acl.parse_setting("urn:vte.cx:acl:/_group/$admin,CRUD")
ALICE = Principal("7", "alice", frozenset({"/_group/sales"}))
BOB = Principal("8", "bob")
SERVICE = Principal("9", "robot", service=True)
ADMIN = Principal("1", "root", frozenset({"/_group/$admin"}))


def grants(*uris: str) -> acl.Acl:
    return tuple(g for g in (acl.parse_uri(uri) for uri in uris) if g is not None)


# (ACLs on the path by key, caller, key asked, layer?, expected rights, deciding key, source)
TABLE = [
    # nearest ACL wins, ancestors are not consulted
    ({"/a": grants("urn:vte.cx:acl:+,R")}, ALICE, "/a/b", False, "R", "/a"),
    (
        {"/a": grants("urn:vte.cx:acl:+,CRUD"), "/a/b": grants("urn:vte.cx:acl:8,R")},
        ALICE,
        "/a/b",
        False,
        "",
        "/a/b",
    ),
    (
        {"/a": grants("urn:vte.cx:acl:+,CRUD"), "/a/b": grants("urn:vte.cx:acl:8,R")},
        BOB,
        "/a/b/c",
        False,
        "R",
        "/a/b",
    ),
    # `.`: only on the key itself
    ({"/a": grants("urn:vte.cx:acl:+,RU.")}, ALICE, "/a", False, "RU", "/a"),
    ({"/a": grants("urn:vte.cx:acl:+,RU.")}, ALICE, "/a/b", False, "", "/a"),
    ({"/a": grants("urn:vte.cx:acl:+,RU.")}, ALICE, "/a", True, "", "/a"),
    # `/`: only on descendants
    ({"/a": grants("urn:vte.cx:acl:+,CR/")}, ALICE, "/a", False, "", "/a"),
    ({"/a": grants("urn:vte.cx:acl:+,CR/")}, ALICE, "/a/b", False, "CR", "/a"),
    ({"/a": grants("urn:vte.cx:acl:+,CR/")}, ALICE, "/a", True, "CR", "/a"),
    # groups, uid, account
    ({"/a": grants("urn:vte.cx:acl:/_group/sales,CRU")}, ALICE, "/a/1", False, "CRU", "/a"),
    ({"/a": grants("urn:vte.cx:acl:/_group/sales,CRU")}, BOB, "/a/1", False, "", "/a"),
    ({"/a": grants("urn:vte.cx:acl:7,D")}, ALICE, "/a", False, "D", "/a"),
    ({"/a": grants("urn:feedstore:acl:alice,U")}, ALICE, "/a", False, "U", "/a"),
    ({"/a": grants("urn:vte.cx:acl:alice,U", "urn:vte.cx:acl:+,R")}, ALICE, "/a", 0, "RU", "/a"),
    # `*` is everyone, anonymous included; `+` every authenticated caller
    ({"/a": grants("urn:vte.cx:acl:*,R")}, ANONYMOUS, "/a/1", False, "R", "/a"),
    ({"/a": grants("urn:vte.cx:acl:+,R")}, ANONYMOUS, "/a/1", False, "", "/a"),
    ({"/a": grants("urn:vte.cx:acl:anonymous,R")}, ANONYMOUS, "/a/1", False, "", "/a"),
    # admin: every right, whatever the ACL
    ({"/a": grants("urn:vte.cx:acl:8,R")}, ADMIN, "/a/1", False, "CRUDA", None),
    # no ACL on the path: the default ACL (admins only by default)
    ({}, ALICE, "/a/b", False, "", None),
    ({}, ANONYMOUS, "/a", False, "", None),
    # E: only a service principal
    ({"/a": grants("urn:vte.cx:acl:+,CRUDE")}, ALICE, "/a", False, "", "/a"),
    ({"/a": grants("urn:vte.cx:acl:+,CRUDE")}, SERVICE, "/a", False, "CRUD", "/a"),
    # A, the right to change an ACL, is granted as any other
    ({"/a": grants("urn:vte.cx:acl:+,RUA")}, BOB, "/a", False, "RUA", "/a"),
]


@pytest.mark.parametrize(("acls", "caller", "key", "layer", "expected", "deciding"), TABLE)
def test_rights(
    acls: dict[str, acl.Acl],
    caller: Principal,
    key: str,
    layer: bool,
    expected: str,
    deciding: str | None,
) -> None:
    decision = acl.Caller.of(caller, DEFAULT).decide(key, acls, layer)
    assert decision.letters == expected
    assert decision.key == deciding


def test_the_default_acl_decides_when_no_entry_has_one() -> None:
    opened = acl.parse_setting("urn:vte.cx:acl:+,CRUD")
    decision = acl.Caller.of(BOB, opened).decide("/x/y", {})
    assert (decision.letters, decision.key, decision.source) == ("CRUD", None, "default_acl")
    assert acl.Caller.of(ANONYMOUS, opened).decide("/x", {}).letters == ""


def test_the_deciding_urn_and_admin_are_named() -> None:
    acls = {"/a": grants("urn:vte.cx:acl:+,CRU", "urn:vte.cx:acl:8,D")}
    assert acl.Caller.of(ALICE, DEFAULT).decide("/a/1", acls).source == "urn:vte.cx:acl:+,CRU"
    assert acl.Caller.of(ADMIN, DEFAULT).decide("/a/1", acls).source == "admin"


def test_groups_read_in_a_transaction_replace_the_principals() -> None:
    acls = {"/a": grants("urn:vte.cx:acl:/_group/sales,R")}
    caller = acl.Caller(ALICE, DEFAULT, frozenset())
    assert caller.decide("/a", acls).letters == ""


@pytest.mark.parametrize(
    ("uri", "grant"),
    [
        ("urn:vte.cx:acl:+,CRUD", ("+", "CRUD")),
        ("urn:feedstore:acl:/_group/sales,R/", ("/_group/sales", "R/")),
        ("urn:vte.cx:acl:a,b@example.com,RE.", ("a,b@example.com", "RE.")),
        ("http://example.com/someone", None),
    ],
)
def test_parse_uri(uri: str, grant: acl.Grant | None) -> None:
    assert acl.parse_uri(uri) == grant


@pytest.mark.parametrize(
    "uri", ["urn:vte.cx:acl:+,CRUX", "urn:vte.cx:acl:+", "urn:vte.cx:acl:,R", "urn:vte.cx:acl:+,"]
)
def test_an_invalid_acl_names_the_entry_and_field(uri: str) -> None:
    document = {"contributor": [{"uri": "mailto:x@example.com"}, {"uri": uri}]}
    with pytest.raises(InvalidAcl) as caught:
        acl.of_document(document, "/a/1")
    assert caught.value.message == f"ACL is invalid: {uri}"
    assert (caught.value.key, caught.value.field) == ("/a/1", "contributor[1].uri")
    assert caught.value.status == 400 and caught.value.code == "invalid_acl"


def test_an_entry_without_acl_uris_has_no_acl() -> None:
    assert acl.of_document({"contributor": [{"name": "x"}, {"uri": "mailto:x"}]}) is None
    assert acl.of_document({"title": "t"}) is None
    assert acl.of_document(None) is None


def test_the_mirror_round_trips() -> None:
    found = acl.of_document({"contributor": [{"uri": "urn:vte.cx:acl:+,CRU"}]})
    assert found is not None
    assert acl.loads(acl.dumps(found)) == found
    assert acl.dumps(found) == b'[["+","CRU"]]'


def test_a_denial_is_401_for_anonymous_and_403_otherwise() -> None:
    assert isinstance(acl.Caller.of(ANONYMOUS, DEFAULT).denial("/a", "R"), Unauthorized)
    denied = acl.Caller.of(BOB, DEFAULT).denial("/a", "A")
    assert isinstance(denied, AccessDenied)
    assert denied.to_dict()["right"] == "A" and denied.status == 403


def test_path_lists_the_key_and_its_ancestors() -> None:
    assert acl.path("/a/b/c") == ["/a/b/c", "/a/b", "/a"]
    assert acl.path("/") == []


@pytest.mark.parametrize("text", ["", "urn:vte.cx:acl:+,Z", "+,CRUD"])
def test_a_bad_default_acl_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        acl.parse_setting(text)
