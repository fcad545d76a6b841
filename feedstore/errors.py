"""The feedstore error family: everything below the API raises these, one handler renders them.

    FeedstoreError                      500 internal_error
    +-- BadRequest                      400 bad_request
    |   +-- InvalidBody             400 invalid_body        "Request format is invalid: ..."
    |   +-- InvalidKey              400 invalid_key         "Key must ... <key>"
    |   +-- InvalidId               400 invalid_id          "ID format is invalid. ..."
    |   +-- InvalidField            400 invalid_field       a field the server owns or can't read
    |   +-- UnknownField            400 unknown_field       "Unknown field: favorite.color"
    |   +-- InvalidPatch            400 invalid_patch       a patch that can't apply
    |   +-- InvalidSchema           400 invalid_schema      a schema document that isn't one
    |   +-- InvalidOption           400 invalid_option      a query parameter or header
    |   +-- EntryRequired           400 entry_required      "Entry is required."
    |   +-- KeyRequired             400 key_required        "Key is required."
    |   +-- TooManyEntries              400 too_many_entries
    |   +-- DuplicatedKeys          400 duplicated_keys     "Keys are duplicated. /k"
    |   +-- ParentRequired          400 parent_required     "Parent path is required. /p"
    |   +-- HasChildren                 400 has_children
    |   +-- TreeTooLarge                400 tree_too_large
    |   +-- CrossTreeWrite              400 cross_tree_write    entries in two partitions (cluster)
    |   +-- InvalidAcl              400 invalid_acl         "ACL is invalid: <uri>"
    |   +-- InvalidIdempotencyKey   400 invalid_idempotency_key "Idempotency-Key is invalid."
    |   +-- IdempotencyKeyRequired  400 idempotency_key_required "... is required. Key = /k"
    |   +-- IdempotencyKeyNotAccepted 400 idempotency_key_not_accepted  one transaction only
    +-- Unauthorized                401 authentication_required "Authentication error."
    |   +-- InvalidToken            401 invalid_token       (all four with WWW-Authenticate: Bearer)
    |   +-- TokenExpired            401 token_expired
    |   +-- SessionExpired          401 session_expired
    +-- Forbidden                       403 forbidden
    |   +-- MissingCsrfHeader       403 missing_csrf_header
    |   +-- CrossOrigin             403 cross_origin        "Cross-origin request refused."
    |   +-- AccessDenied            403 access_denied       "Access denied." (`right`)
    +-- NotFound                    404 not_found           "No entry. Key = /k"
    +-- RevisionNotFound            404 revision_not_found  "No revision. Key = /k, revision = 9"
    +-- MethodNotAllowed            405 method_not_allowed
    +-- Conflict                        409 conflict
    |   +-- RevisionConflict        409 revision_conflict   "Optimistic locking failed. Key = /k"
    |   +-- DuplicatedKey           409 duplicated_key      "Duplicated key. /k"
    |   +-- PatchTestFailed         409 patch_test_failed   a JSON Patch `test` that failed
    |   +-- MergeConflict           409 merge_conflict      "Merge conflict. Key = /k"
    |   +-- MergeBaseGone           409 merge_base_gone     "Merge base is no longer kept. ..."
    |   +-- IdempotencyInProgress   409 idempotency_in_progress (with Retry-After)
    +-- RevisionGone                410 revision_gone       "Revision is no longer kept. ..."
    +-- ChangesExpired              410 changes_expired     "Changes since <seq> are no longer ..."
    +-- RequestTimeout              408 request_timeout     "Request timeout."
    +-- PreconditionFailed          412 precondition_failed "Precondition failed. Key = /k"
    +-- PayloadTooLarge             413 payload_too_large   "Payload too large."
    +-- UnsupportedMediaType        415 unsupported_media_type
    +-- IdempotencyKeyReused        422 idempotency_key_reused "Idempotency-Key was used with ..."
    +-- PreconditionRequired        428 precondition_required
    +-- LoginThrottled              429 login_throttled     (with Retry-After)
    +-- ServiceUnavailable          503 service_unavailable (with Retry-After)
    |   +-- NotReplicated           503 not_replicated      written, but too few replicas confirmed
    +-- EntryErrors                     the failures of a multi-entry request, all of them
        +-- BulkErrors                  the failing chunks of a bulk, and what the others wrote

Every member carries the context a client needs (`key`, `field`, `revision`, `current`) and
`to_dict()` gives the machine-readable `error` object of API.md §7.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class FeedstoreError(Exception):
    """Base of every error feedstore answers with; `status` is the HTTP status."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        field: str | None = None,
        revision: int | None = None,
        current: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.field = field
        self.revision = revision
        self.current = current
        self.headers: dict[str, str] = dict(headers or {})

    def entry_summary(self) -> dict[str, Any]:
        """The short form listed in `error.entries`."""
        summary: dict[str, Any] = {"key": self.key, "code": self.code, "message": self.message}
        if self.field is not None:
            summary["field"] = self.field
        return summary

    def to_dict(self) -> dict[str, Any]:
        """The `error` member of the response body (API.md §7)."""
        body: dict[str, Any] = {"status": self.status, "code": self.code}
        for name in ("key", "field", "revision", "current"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        body["entries"] = [self.entry_summary()] if self.key is not None else []
        return body


class BadRequest(FeedstoreError):
    status = 400
    code = "bad_request"


class InvalidBody(BadRequest):
    code = "invalid_body"

    def __init__(self, detail: str, **context: Any) -> None:
        super().__init__(f"Request format is invalid: {detail}", **context)


class InvalidKey(BadRequest):
    code = "invalid_key"


class InvalidId(BadRequest):
    code = "invalid_id"

    def __init__(self, detail: str, **context: Any) -> None:
        super().__init__(f"ID format is invalid. {detail}", **context)


class InvalidField(BadRequest):
    code = "invalid_field"


class UnknownField(BadRequest):
    code = "unknown_field"

    def __init__(self, path: str, note: str = "", **context: Any) -> None:
        super().__init__(f"Unknown field: {path}{note}", field=path, **context)


class InvalidPatch(BadRequest):
    code = "invalid_patch"


class InvalidSchema(BadRequest):
    code = "invalid_schema"


class InvalidOption(BadRequest):
    code = "invalid_option"


class EntryRequired(BadRequest):
    code = "entry_required"

    def __init__(self) -> None:
        super().__init__("Entry is required.")


class KeyRequired(BadRequest):
    code = "key_required"

    def __init__(self, **context: Any) -> None:
        super().__init__("Key is required.", **context)


class TooManyEntries(BadRequest):
    code = "too_many_entries"

    def __init__(self, limit: int) -> None:
        super().__init__(f"Too many entries. Please keep less than {limit} entries.")


class DuplicatedKeys(BadRequest):
    code = "duplicated_keys"

    def __init__(self, key: str) -> None:
        super().__init__(f"Keys are duplicated. {key}", key=key)


class ParentRequired(BadRequest):
    code = "parent_required"

    def __init__(self, key: str, parent: str) -> None:
        super().__init__(f"Parent path is required. {parent}", key=key)


class HasChildren(BadRequest):
    code = "has_children"

    def __init__(self, key: str) -> None:
        super().__init__(f"Can't delete for the child entries exist. {key}", key=key)


class TreeTooLarge(BadRequest):
    code = "tree_too_large"

    def __init__(self, key: str, count: int, limit: int) -> None:
        super().__init__(
            f"Too many entries to delete. {key} has {count} entries, more than {limit}.", key=key
        )


class CrossTreeWrite(BadRequest):
    """On Redis Cluster a transaction stays in one slot: one request writes one partition."""

    code = "cross_tree_write"

    def __init__(self, trees: Sequence[str]) -> None:
        super().__init__(
            "Entries of one request must be in one tree on Redis Cluster. " + ", ".join(trees)
        )
        self.trees = list(trees)


class InvalidAcl(BadRequest):
    code = "invalid_acl"

    def __init__(self, uri: str, *, key: str | None = None, field: str | None = None) -> None:
        super().__init__(f"ACL is invalid: {uri}", key=key, field=field)


class InvalidIdempotencyKey(BadRequest):
    """An Idempotency-Key that is not 1 to 255 visible ASCII characters (idempotency.py)."""

    code = "invalid_idempotency_key"

    def __init__(self) -> None:
        super().__init__("Idempotency-Key is invalid.")


class IdempotencyKeyRequired(BadRequest):
    """A write under a `require_idempotency` prefix without an Idempotency-Key."""

    code = "idempotency_key_required"

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key is required. Key = {key}", key=key)


class IdempotencyKeyNotAccepted(BadRequest):
    """An Idempotency-Key on a request that isn't one transaction (a bulk of several chunks),
    so its answer can't be committed with its data."""

    code = "idempotency_key_not_accepted"

    def __init__(self, reason: str) -> None:
        super().__init__(f"Idempotency-Key can't be kept for this request: {reason}")


class Unauthorized(FeedstoreError):
    """No credential where one is needed, or one that authenticates no one.

    Always `WWW-Authenticate: Bearer`, never `Basic`: a browser shows its password dialog for
    Basic, and the page has a login form of its own.
    """

    status = 401
    code = "authentication_required"

    def __init__(self) -> None:
        super().__init__(
            "Authentication error.", headers={"WWW-Authenticate": 'Bearer realm="feedstore"'}
        )


class InvalidToken(Unauthorized):
    """A token that is malformed, unknown or revoked (disabling a user revokes its tokens)."""

    code = "invalid_token"


class TokenExpired(Unauthorized):
    code = "token_expired"


class SessionExpired(Unauthorized):
    """A session cookie whose session is gone: idle too long, past its maximum age, or ended."""

    code = "session_expired"


class Forbidden(FeedstoreError):
    status = 403
    code = "forbidden"


class MissingCsrfHeader(Forbidden):
    code = "missing_csrf_header"

    def __init__(self) -> None:
        super().__init__("Missing X-Requested-With header.")


class CrossOrigin(Forbidden):
    """A cookie-authenticated write sent by a page of another origin (API.md §6)."""

    code = "cross_origin"

    def __init__(self) -> None:
        super().__init__("Cross-origin request refused.")


class AccessDenied(Forbidden):
    """The caller lacks `right` on `key` (API.md §16.3); names no other entry of the request."""

    code = "access_denied"

    def __init__(self, key: str | None, right: str) -> None:
        super().__init__("Access denied.", key=key)
        self.right = right

    def entry_summary(self) -> dict[str, Any]:
        return {**super().entry_summary(), "right": self.right}

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["right"] = self.right
        return body


class NotFound(FeedstoreError):
    status = 404
    code = "not_found"

    def __init__(self, key: str) -> None:
        super().__init__(f"No entry. Key = {key}", key=key)


class RevisionNotFound(FeedstoreError):
    """`?r=` names a revision the entry never had (past its last one)."""

    status = 404
    code = "revision_not_found"

    def __init__(self, key: str, revision: int) -> None:
        super().__init__(
            f"No revision. Key = {key}, revision = {revision}", key=key, revision=revision
        )


class MethodNotAllowed(FeedstoreError):
    status = 405
    code = "method_not_allowed"


class Conflict(FeedstoreError):
    status = 409
    code = "conflict"


class RevisionConflict(Conflict):
    code = "revision_conflict"

    def __init__(self, key: str, revision: int, current: Mapping[str, Any] | None) -> None:
        super().__init__(
            f"Optimistic locking failed. Key = {key}", key=key, revision=revision, current=current
        )


class DuplicatedKey(Conflict):
    code = "duplicated_key"

    def __init__(self, key: str, current: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"Duplicated key. {key}", key=key, current=current)


class PatchTestFailed(Conflict):
    code = "patch_test_failed"


class MergeConflict(Conflict):
    """A stale write asked to be merged (`?_merge`) changed what the current revision changed
    too: `conflicts` lists each such field with its base, current and sent value."""

    code = "merge_conflict"

    def __init__(self, key: str, conflicts: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(f"Merge conflict. Key = {key}", key=key)
        self.conflicts = list(conflicts)

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["conflicts"] = self.conflicts
        return body


class MergeBaseGone(Conflict):
    """A merge's base revision is not kept in the entry's history (history.py)."""

    code = "merge_base_gone"

    def __init__(self, key: str, revision: int, current: Mapping[str, Any] | None = None) -> None:
        super().__init__(
            f"Merge base is no longer kept. Key = {key}, revision = {revision}",
            key=key,
            revision=revision,
            current=current,
        )


class IdempotencyInProgress(Conflict):
    """The first request with this Idempotency-Key still holds its lease."""

    code = "idempotency_in_progress"

    def __init__(self) -> None:
        super().__init__(
            "A request with this Idempotency-Key is in progress.", headers={"Retry-After": "1"}
        )


class RevisionGone(FeedstoreError):
    """A revision the entry had, but its history no longer keeps (or never kept)."""

    status = 410
    code = "revision_gone"

    def __init__(self, key: str, revision: int) -> None:
        super().__init__(
            f"Revision is no longer kept. Key = {key}, revision = {revision}",
            key=key,
            revision=revision,
        )


class ChangesExpired(FeedstoreError):
    """A change feed read from a sequence below the stream's horizon: events after it were
    trimmed, so the client must list again (API.md §18); `oldest` is the first event kept."""

    status = 410
    code = "changes_expired"

    def __init__(self, key: str, since: str, oldest: str | None) -> None:
        super().__init__(
            f"Changes since {since} are no longer kept. Key = {key}",
            key=key,
            headers={"Link": f'</d{key}?f>; rel="describedby"'},
        )
        self.oldest = oldest

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["oldest"] = self.oldest
        return body


class RequestTimeout(FeedstoreError):
    """The client stopped sending its body for longer than the body timeout."""

    status = 408
    code = "request_timeout"

    def __init__(self) -> None:
        super().__init__("Request timeout.")


class PreconditionFailed(FeedstoreError):
    status = 412
    code = "precondition_failed"

    def __init__(self, key: str, current: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"Precondition failed. Key = {key}", key=key, current=current)


class PayloadTooLarge(FeedstoreError):
    status = 413
    code = "payload_too_large"

    def __init__(self) -> None:
        super().__init__("Payload too large.")


class UnsupportedMediaType(FeedstoreError):
    status = 415
    code = "unsupported_media_type"


class IdempotencyKeyReused(FeedstoreError):
    """An Idempotency-Key sent again with another request (method, URL, headers or body)."""

    status = 422
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__("Idempotency-Key was used with another request.")


class PreconditionRequired(FeedstoreError):
    status = 428
    code = "precondition_required"

    def __init__(self, key: str) -> None:
        super().__init__(f"Precondition required. Key = {key}", key=key)


class LoginThrottled(FeedstoreError):
    """Too many failed logins of one account: the next one is refused for `retry_after` s."""

    status = 429
    code = "login_throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "Too many failed logins. Please retry later.",
            headers={"Retry-After": str(retry_after)},
        )


class ServiceUnavailable(FeedstoreError):
    status = 503
    code = "service_unavailable"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class NotReplicated(ServiceUnavailable):
    """A write the primary made but too few replicas confirmed in time (`wait_replicas`)."""

    code = "not_replicated"

    def __init__(self, confirmed: int, wanted: int) -> None:
        super().__init__(
            f"Not replicated: {confirmed} of {wanted} replicas confirmed the write in time. "
            "It may have been made, and may be lost if the primary fails: read it before "
            "retrying."
        )
        self.confirmed = confirmed
        self.wanted = wanted


class EntryErrors(FeedstoreError):
    """Every failing entry of one request; status, message and code are the first failure's."""

    def __init__(self, errors: Sequence[FeedstoreError]) -> None:
        first = errors[0]
        super().__init__(
            first.message,
            key=first.key,
            field=first.field,
            revision=first.revision,
            current=first.current,
            headers=first.headers,
        )
        self.errors = list(errors)
        self.status = first.status  # type: ignore[misc]
        self.code = first.code  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        if isinstance(self.errors[0], AccessDenied):
            body["right"] = self.errors[0].right
        body["entries"] = [error.entry_summary() for error in self.errors]
        return body


class BulkErrors(EntryErrors):
    """The chunks of a bulk PUT that failed, after the others committed (API.md §5.6).

    Status, message, code and context are the first failing chunk's, in request order; `entries`
    lists the failing entries of every failing chunk; `written` is the keys the committed chunks
    wrote, in request order (empty when none did).
    """

    def __init__(self, errors: Sequence[FeedstoreError], written: Sequence[str]) -> None:
        super().__init__(errors)
        self.written = list(written)

    def to_dict(self) -> dict[str, Any]:
        body = self.errors[0].to_dict()
        body["entries"] = [entry for error in self.errors for entry in error.to_dict()["entries"]]
        body["written"] = list(self.written)
        return body


def collect(errors: Sequence[FeedstoreError]) -> None:
    """Raise the one error, or all of them as EntryErrors; do nothing when there are none."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise EntryErrors(errors)
